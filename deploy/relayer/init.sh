#!/bin/sh
# First start of the HTTP relayer (`meshprov worker relay`): a private CA and the relayer's TLS certificate,
# generated here, once, into two directories (compose: two volumes) and kept on later starts (idempotent), the way
# deploy/redis/init.sh does it for Redis. Nothing secret is committed.
#
#   init.sh TLS_DIR CA_DIR [HOSTNAME...]
#
# TLS_DIR (mounted by the relayer only): server.crt, server.key, ca.crt
# CA_DIR (mounted read-only by the member nodes; hand its ca.crt to members of other organisations, who pass it
#   to `meshprov node run --relay-ca`): ca.crt
# HOSTNAME: names members use to reach the relayer, put in the certificate (default: relayer localhost;
#   127.0.0.1 is always in it). RELAYER_NAMES (environment, comma or space separated) adds more: the public DNS
#   names or IP addresses of the host that publishes the relayer's port.
# Environment: TLS_OWNER (user[:group]) chowns both directories' files when set.
# Bring your own certificate (e.g. from a public CA): put server.crt/server.key/ca.crt into TLS_DIR before the
# first start; they are kept. New names: empty both directories and re-run (a new CA: give members the new ca.crt).
set -eu
tls=${1:?usage: init.sh TLS_DIR CA_DIR [HOSTNAME...]}
public=${2:?usage: init.sh TLS_DIR CA_DIR [HOSTNAME...]}
shift 2
[ "$#" -gt 0 ] || set -- relayer localhost
if ! command -v openssl >/dev/null 2>&1; then
    apk add --no-cache openssl >/dev/null  # the alpine image has the libraries, not the command
fi
umask 077
mkdir -p "$tls" "$public"

if [ ! -s "$tls/server.crt" ]; then
    san="IP:127.0.0.1"
    for name in "$@" $(printf '%s' "${RELAYER_NAMES:-}" | tr ',' ' '); do
        case "$name" in
            *[!0-9.]* ) case "$name" in *:*) san="$san,IP:$name" ;; *) san="$san,DNS:$name" ;; esac ;;
            *) san="$san,IP:$name" ;;
        esac
    done
    tmp=$(mktemp -d)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=meshprov relayer CA" -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' "$san" >"$tmp/ext"
    openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial \
        -days 825 -extfile "$tmp/ext" -out "$tmp/server.crt" 2>/dev/null
    mv "$tmp/server.key" "$tmp/ca.crt" "$tls/"
    mv "$tmp/server.crt" "$tls/server.crt"  # last: its presence means the set is complete
    rm -rf "$tmp"  # the CA key is not kept: a new certificate means a new CA (re-run with empty directories)
fi
cp "$tls/ca.crt" "$public/ca.crt.new"
mv -f "$public/ca.crt.new" "$public/ca.crt"

chmod 0444 "$tls/ca.crt" "$tls/server.crt" "$public/ca.crt"
chmod 0400 "$tls/server.key"
if [ -n "${TLS_OWNER:-}" ]; then chown -R "$TLS_OWNER" "$tls" "$public"; fi
echo "relayer TLS ready in $tls (members' CA: $public/ca.crt)"
