"""The round's base model: fetched from the store by the digest the chain records, verified, loaded as weights.

A base is a genesis file or a previous round's aggregate: full weights in a safetensors file whose CID is the
chain's digest. Downloads land in a cache directory of the node (``<cid>.safetensors``) through
:func:`ledger.content.fetch_to_file`, renamed into place only once the bytes are proven to have that CID; a cached
file is re-hashed before use, so a file changed on disk is fetched again rather than trained on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ledger.content import ContentStore, cid_of_file, fetch_to_file
from ledger.content.errors import ContentError
from ledger.errors import MeshprovError, ServiceUnavailable
from node.faults import BaseMismatch, BaseUnavailable

StateDict = dict[str, np.ndarray]
Sleep = Callable[[float], None]


def fetch_base(
    store: ContentStore,
    cid: str,
    cache_dir: Path,
    *,
    round_: int,
    max_bytes: int,
    attempts: int = 6,
    backoff_s: float = 0.5,
    max_backoff_s: float = 8.0,
    sleep: Sleep = time.sleep,
    progress: Callable[[int], None] | None = None,
    on_retry: Callable[[int, str], None] | None = None,
) -> Path:
    """The verified base file in ``cache_dir``; retried with exponential backoff, then :class:`BaseUnavailable`."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{cid}.safetensors"
    if path.is_file():
        if cid_of_file(path) == cid:
            return path
        path.unlink()  # changed on disk: never train on it
    delay = backoff_s
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            fetch_to_file(store, cid, path, max_bytes=max_bytes, progress=progress)  # proves the Kubo CID
            return path
        except (ContentError, ServiceUnavailable, OSError) as exc:
            last = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if attempt < attempts:
            if on_retry is not None:
                on_retry(attempt, last)
            sleep(delay)
            delay = min(delay * 2, max_backoff_s)
    raise BaseUnavailable(cid, round_, attempts, last)


def load_weights(path: Path, cid: str) -> StateDict:
    """Full weights of a genesis or aggregate file (copied out of the memory map)."""
    from ledger.updatefile import FileRejected, UpdateFile

    try:
        with UpdateFile.open(path) as model:
            if model.metadata.kind == "update":
                raise BaseMismatch(cid, "?", "it is an update (a delta), not a model")
            return {key: np.array(model.tensor(key)) for key in model}
    except FileRejected as exc:
        raise BaseMismatch(cid, "?", f"not a readable model file ({exc.detail})") from None


@cache
def _layouts() -> tuple[tuple[str, dict[str, tuple[int, ...]]], ...]:
    from node.models import genesis_state, model_names

    return tuple(
        (name, {k: tuple(v.shape) for k, v in genesis_state(name).items()}) for name in model_names()
    )


def infer_model(state: Mapping[str, Any]) -> str | None:
    """The registered architecture whose state_dict has exactly these keys and shapes, if any."""
    shapes = {k: tuple(np.shape(v)) for k, v in state.items()}
    for name, layout in _layouts():
        if layout == shapes:
            return name
    return None


def check_architecture(state: Mapping[str, Any], model: str, cid: str) -> None:
    """Raise :class:`BaseMismatch` unless ``state`` has exactly ``model``'s keys, shapes and dtypes."""
    from node.models import build_model, check_state

    try:
        check_state(model, build_model(model), state)
    except MeshprovError as exc:
        raise BaseMismatch(cid, model, exc.message) from None


def remove_partial(cache_dir: Path) -> None:
    """Delete temporary files of downloads interrupted by a crash."""
    for stale in cache_dir.glob(".*.part"):
        with contextlib.suppress(OSError):
            stale.unlink()
