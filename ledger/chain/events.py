"""Decoding the ledger's logs into :class:`LedgerEvent` values, and reading logs in bounded block ranges.

The decoder is built from the ABI (topic 0 -> event) and uses eth-abi directly: indexing ten thousand events must
not spend its time in web3.py's per-log formatters. Arguments keep their Solidity names; addresses come out
checksummed, ``bytes32`` as ``bytes``, structs as dicts by component name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.crypto import keccak

from ledger.chain.types import checksum

log = logging.getLogger(__name__)

# Phrases nodes use when a getLogs range holds too many results or spans too many blocks.
_RANGE_ERRORS = ("too many", "range", "limit", "exceed", "response size", "timeout", "query returned more")


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """One decoded log of the ledger."""

    name: str
    args: dict[str, Any]
    block_number: int
    block_hash: str
    log_index: int
    tx_hash: str
    tx_index: int
    address: str

    @property
    def key(self) -> tuple[str, int]:
        """What identifies a log across re-reads: (block hash, log index)."""
        return (self.block_hash, self.log_index)


@dataclass(frozen=True)
class _Param:
    name: str
    type: str
    components: tuple[_Param, ...] = ()


@dataclass(frozen=True)
class EventSpec:
    name: str
    signature: str
    indexed: tuple[_Param, ...]
    data: tuple[_Param, ...]

    @property
    def topic0(self) -> bytes:
        return keccak(text=self.signature)


def _param(item: Mapping[str, Any]) -> _Param:
    return _Param(
        str(item.get("name") or ""),
        str(item["type"]),
        tuple(_param(c) for c in item.get("components", ())),
    )


def _abi_type(p: _Param) -> str:
    if p.type.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in p.components) + ")" + p.type[5:]
    return p.type


def _normalise(p: _Param, value: Any) -> Any:
    if p.type == "address":
        return checksum(value)
    if p.type == "tuple":
        return {c.name: _normalise(c, v) for c, v in zip(p.components, value, strict=True)}
    if p.type.endswith("]"):
        inner = _Param(p.name, p.type[: p.type.rindex("[")], p.components)
        return [_normalise(inner, v) for v in value]
    return value


def event_specs(abi: Sequence[Mapping[str, Any]]) -> list[EventSpec]:
    out = []
    for item in abi:
        if item.get("type") != "event" or item.get("anonymous"):
            continue
        inputs = item.get("inputs", [])
        params = [(bool(i.get("indexed")), _param(i)) for i in inputs]
        signature = f"{item['name']}({','.join(_abi_type(p) for _, p in params)})"
        out.append(
            EventSpec(
                str(item["name"]),
                signature,
                tuple(p for idx, p in params if idx),
                tuple(p for idx, p in params if not idx),
            )
        )
    return out


def _hex(value: Any) -> str:
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else "0x" + value.lower()
    return "0x" + bytes(value).hex()


def _bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith("0x") else value)
    return bytes(value)


def _int(value: Any) -> int:
    if isinstance(value, str):
        return int(value, 16)
    return int(value)


class EventDecoder:
    """Topic-0 table over one ABI; :meth:`decode` turns a raw or web3-formatted log into a LedgerEvent."""

    def __init__(self, abi: Sequence[Mapping[str, Any]]) -> None:
        self.by_topic: dict[bytes, EventSpec] = {s.topic0: s for s in event_specs(abi)}
        self.by_name: dict[str, EventSpec] = {s.name: s for s in self.by_topic.values()}
        self._data_types = {t: [_abi_type(p) for p in s.data] for t, s in self.by_topic.items()}

    def topic(self, name: str) -> bytes:
        return self.by_name[name].topic0

    def topics(self, name: str, **indexed: Any) -> list[str | None]:
        """The ``eth_getLogs`` topics that select event ``name`` with the given indexed arguments (by their
        Solidity names; an argument left out matches any value)."""
        from eth_abi.abi import encode as abi_encode

        spec = self.by_name[name]
        unknown = set(indexed) - {p.name for p in spec.indexed}
        if unknown:
            raise ValueError(f"{name} has no indexed argument {', '.join(sorted(unknown))}")
        out: list[str | None] = [_hex(spec.topic0)]
        for p in spec.indexed:
            value = indexed.get(p.name)
            out.append(None if value is None else _hex(abi_encode([_abi_type(p)], [value])))
        while out[-1] is None:
            out.pop()
        return out

    def decode(self, entry: Mapping[str, Any]) -> LedgerEvent | None:
        """The event a log holds, or None for a log no event of the ABI describes (or one that does not decode)."""
        topics = [_bytes(t) for t in entry["topics"]]
        if not topics:
            return None
        spec = self.by_topic.get(topics[0])
        if spec is None or len(topics) != 1 + len(spec.indexed):
            return None
        try:
            args: dict[str, Any] = {}
            for p, topic in zip(spec.indexed, topics[1:], strict=True):
                (value,) = abi_decode([_abi_type(p)], topic)
                args[p.name] = _normalise(p, value)
            values = abi_decode(self._data_types[topics[0]], _bytes(entry["data"]))
            for p, value in zip(spec.data, values, strict=True):
                args[p.name] = _normalise(p, value)
        except Exception as exc:  # a log from an untrusted node that does not decode: skip it, loudly
            log.warning(
                "log %s/%s does not decode as %s: %s",
                entry.get("blockNumber"),
                entry.get("logIndex"),
                spec.name,
                exc,
            )
            return None
        return LedgerEvent(
            name=spec.name,
            args=args,
            block_number=_int(entry["blockNumber"]),
            block_hash=_hex(entry["blockHash"]),
            log_index=_int(entry["logIndex"]),
            tx_hash=_hex(entry["transactionHash"]),
            tx_index=_int(entry["transactionIndex"]),
            address=checksum(_hex(entry["address"])),
        )

    def decode_all(self, entries: Sequence[Mapping[str, Any]]) -> list[LedgerEvent]:
        out = []
        for entry in entries:
            if entry.get("removed"):
                continue
            event = self.decode(entry)
            if event is not None:
                out.append(event)
        return out


def get_logs_raw(
    w3: Any, address: str, from_block: int, to_block: int, *, topics: Sequence[str | None] | None = None
) -> list[dict[str, Any]]:
    """``eth_getLogs`` for one contract over [from_block, to_block], as the node's raw JSON (no web3 formatting);
    ``topics`` narrows it to one event (:meth:`EventDecoder.topics`)."""
    from web3.exceptions import Web3RPCError

    query: dict[str, Any] = {"address": address, "fromBlock": hex(from_block), "toBlock": hex(to_block)}
    if topics:
        query["topics"] = list(topics)
    reply = w3.provider.make_request("eth_getLogs", [query])
    if "error" in reply:
        error = reply["error"]
        raise Web3RPCError(str(error.get("message") if isinstance(error, Mapping) else error))
    result = reply.get("result")
    if not isinstance(result, list):
        raise Web3RPCError(f"eth_getLogs answered {type(result).__name__}, not a list")
    return result


def iter_log_ranges(
    w3: Any,
    address: str,
    from_block: int,
    to_block: int,
    *,
    max_range: int = 2000,
    min_range: int = 1,
    topics: Sequence[str | None] | None = None,
) -> Iterator[tuple[int, int, list[dict[str, Any]]]]:
    """``(start, end, logs)`` for consecutive ranges covering [from_block, to_block], at most ``max_range`` blocks
    each; a range the node refuses (too many results) is halved and retried."""
    from web3.exceptions import Web3RPCError

    start = from_block
    span = max(1, max_range)
    while start <= to_block:
        end = min(to_block, start + span - 1)
        try:
            logs = get_logs_raw(w3, address, start, end, topics=topics)
        except Web3RPCError as exc:
            text = str(exc).lower()
            if span > min_range and any(marker in text for marker in _RANGE_ERRORS):
                span = max(min_range, span // 2)
                log.info("getLogs %d..%d refused (%s); retrying with %d blocks", start, end, exc, span)
                continue
            raise
        yield start, end, logs
        start = end + 1
