"""A validator's slice of the held-out data, ``HELDOUT_SLICE=v/V``: parsed in one light module (no torch, no data),
so that a validator's start-up does not load the digits task to read two integers."""

from __future__ import annotations

import os

from ledger.errors import ConfigError


def validator_slice(raw: str | None = None) -> tuple[int, int]:
    """(v, V) from ``raw`` or else the ``HELDOUT_SLICE`` environment variable (``"v/V"``); (0, 1) when unset."""
    text = (os.environ.get("HELDOUT_SLICE", "") if raw is None else raw).strip()
    if not text:
        return 0, 1
    try:
        v, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(
            f"HELDOUT_SLICE={text!r} is not v/V", hint="e.g. 0/3 for the first of three validators"
        ) from None
    if not 0 <= v < n:
        raise ConfigError(f"HELDOUT_SLICE={text!r}: v must be in 0..V-1")
    return v, n
