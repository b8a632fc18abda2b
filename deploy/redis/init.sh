#!/bin/sh
# First start of the operator's Redis: a private CA and a server certificate for TLS, a random password, the ACL
# file and the client settings the operator's workers read. Nothing secret is committed: everything is generated
# here, once, into two directories (compose: two volumes) and kept on later starts (idempotent).
#
#   init.sh SERVER_DIR CLIENT_DIR [HOSTNAME...]
#
# SERVER_DIR (mounted by redis only): tls/ca.crt, tls/server.crt, tls/server.key, users.acl
# CLIENT_DIR (mounted by the operator's validators and aggregator): ca.crt, meshprov.toml (redis_url with the
#   password, rediss://), password
# HOSTNAME: names in the server certificate (default: redis localhost; 127.0.0.1 is always in it).
# Environment: REDIS_OWNER / CLIENT_OWNER (user[:group]) chown the two directories' files when set;
#   REDIS_HOST / REDIS_PORT: the address written into redis_url (default: the first HOSTNAME, 6379).
set -eu
server=${1:?usage: init.sh SERVER_DIR CLIENT_DIR [HOSTNAME...]}
client=${2:?usage: init.sh SERVER_DIR CLIENT_DIR [HOSTNAME...]}
shift 2
[ "$#" -gt 0 ] || set -- redis localhost
host=${REDIS_HOST:-$1}
port=${REDIS_PORT:-6379}
if ! command -v openssl >/dev/null 2>&1; then
    apk add --no-cache openssl >/dev/null  # the redis alpine image has the libraries, not the command
fi
umask 077
mkdir -p "$server/tls" "$client"

if [ ! -s "$client/password" ]; then
    openssl rand -hex 32 >"$client/password.new"
    mv "$client/password.new" "$client/password"
fi
password=$(cat "$client/password")

if [ ! -s "$server/tls/server.crt" ]; then
    san="IP:127.0.0.1"
    for name in "$@"; do san="$san,DNS:$name"; done
    tmp=$(mktemp -d)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=meshprov redis CA" -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" >"$tmp/ext"
    openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial \
        -days 3650 -extfile "$tmp/ext" -out "$tmp/server.crt" 2>/dev/null
    mv "$tmp/server.key" "$tmp/ca.crt" "$server/tls/"
    mv "$tmp/server.crt" "$server/tls/server.crt"  # last: its presence means the set is complete
    rm -rf "$tmp"  # the CA key is not kept: a new certificate means a new CA (re-run with empty directories)
fi
cp "$server/tls/ca.crt" "$client/ca.crt"

# The ACL: no anonymous access (the default user is off); one user for the operator's workers with every
# data command but none of the administrative ones (CONFIG, DEBUG, SHUTDOWN, MONITOR, ACL SETUSER, ...) and no
# wiping of the database; `healthcheck` (any password) may run PING and nothing else, no key, no channel.
cat >"$server/users.acl.new" <<ACL
user default off
user healthcheck on nopass resetchannels -@all +ping
user meshprov on >$password ~* &* +@all -@admin -flushall -flushdb -swapdb
ACL
mv "$server/users.acl.new" "$server/users.acl"

cat >"$client/meshprov.toml.new" <<TOML
# Written by deploy/redis/init.sh: the operator's broker, TLS with the generated CA, the generated password.
redis_url = "rediss://meshprov:$password@$host:$port/0?ssl_cert_reqs=required&ssl_ca_certs=$client/ca.crt"
TOML
mv "$client/meshprov.toml.new" "$client/meshprov.toml"

chmod 0444 "$server/tls/ca.crt" "$server/tls/server.crt" "$client/ca.crt"
if [ -n "${REDIS_OWNER:-}" ]; then chown -R "$REDIS_OWNER" "$server"; fi
if [ -n "${CLIENT_OWNER:-}" ]; then chown -R "$CLIENT_OWNER" "$client"; fi
echo "redis secrets ready in $server and $client"
