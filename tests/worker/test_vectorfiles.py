"""Validators keep update vectors as memory-mapped files: same values as in memory, resident memory that does not
grow with the number of updates compared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ledger.aggregation.source import ArraySource, describe_source
from ledger.checks.copies import find_copies
from ledger.checks.vectors import dot, flatten, norm
from ledger.updatefile import UpdateFile
from ledger.updatefile.dtypes import float32_to_bf16
from worker.vectorfiles import running_sum, vector_dtype, vector_file


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _mixed_state(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "a.weight": rng.standard_normal((64, 33)).astype(np.float32),
        "b.half": rng.standard_normal(257).astype(np.float16),
        "c.bf16": float32_to_bf16(rng.standard_normal(100).astype(np.float32)),
        "bn.running_mean": rng.standard_normal(8).astype(np.float32),
        "bn.num_batches_tracked": np.array(7, np.int64),
    }


def test_vector_file_holds_exactly_the_in_memory_vector(tmp_path: Path) -> None:
    source = ArraySource(_mixed_state(1))
    layout = describe_source(source)
    assert vector_dtype(layout) == np.float32  # f32, f16 and bf16 parameters fit float32 exactly
    mapped = vector_file(source, layout, tmp_path / "v.npy")
    in_memory = flatten(source, layout)
    assert isinstance(mapped, np.memmap)
    assert np.array_equal(mapped.astype(np.float64), in_memory)
    other = ArraySource(_mixed_state(2))
    other_mapped = vector_file(other, layout, tmp_path / "w.npy")
    assert dot(mapped, other_mapped) == dot(in_memory, flatten(other, layout))  # same bits
    assert not list(tmp_path.glob("*.tmp"))


def test_a_float64_parameter_keeps_float64_files(tmp_path: Path) -> None:
    state = {"w": np.array([1 + 2**-40, -3.0], np.float64)}
    source = ArraySource(state)
    layout = describe_source(source)
    assert vector_dtype(layout) == np.float64
    mapped = vector_file(source, layout, tmp_path / "v.npy")
    assert mapped[0] == 1 + 2**-40  # float32 would have rounded it


def test_running_sum_has_the_bits_of_the_stacked_sum(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    sources = [ArraySource({"w": rng.standard_normal(3001).astype(np.float32)}) for _ in range(5)]
    layout = describe_source(sources[0])
    mapped = [vector_file(s, layout, tmp_path / f"{i}.npy") for i, s in enumerate(sources)]
    stacked = np.sum([flatten(s, layout) for s in sources], axis=0)
    assert np.array_equal(running_sum(mapped), stacked)


def test_comparing_many_mapped_vectors_keeps_resident_memory_flat(tmp_path: Path) -> None:
    n, size = 6, 12 * 1024 * 1024  # 6 vectors of 48 MiB: 288 MiB if every mapped page stayed resident
    layout = describe_source(ArraySource({"w": np.zeros(size, np.float32)}))
    vectors = []
    for i in range(n):
        source = ArraySource({"w": np.full(size, float(i + 1), np.float32)})
        vectors.append(vector_file(source, layout, tmp_path / f"{i}.npy"))
        del source
    before = _rss_bytes()
    norms = [norm(v) for v in vectors]
    copies = find_copies(vectors, [f"0x{i:040x}" for i in range(n)])
    grown = _rss_bytes() - before
    assert norms[0] == pytest.approx(np.sqrt(size))
    # every vector points the same way: all but the first are duplicates of an earlier one
    assert copies[0] is None
    assert all(c is not None for c in copies[1:])
    assert grown < 64 * 1024 * 1024, (
        f"resident memory grew by {grown / 2**20:.0f} MiB reading {n} mapped vectors"
    )


_EVAL_MEMORY = """
import json, sys
from pathlib import Path
import numpy as np
from ledger.aggregation.source import describe_source
from ledger.checks import CheckLimits, check_loss
from ledger.updatefile import UpdateFile
from worker.vectorfiles import VectorSource, load_vector

def kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

root = Path(sys.argv[1])
with UpdateFile.open(root / "base.safetensors") as base:
    layout = describe_source(base)
    source = VectorSource(load_vector(root / "v.npy"), layout, {})
    before = kib("VmRSS")
    check_loss(source, base, lambda weights: 1.0, CheckLimits(loss_delta=1.0), base_loss=1.0)
print(json.dumps({"grew_kib": kib("VmHWM") - before}))
"""


def test_evaluating_from_a_vector_file_holds_the_weights_not_also_the_vector(tmp_path: Path) -> None:
    """The loss check builds base + update (one model) from the update's vector file: the vector's pages are
    handed back tensor by tensor, so the peak grows by about one model (64 MB here), not two."""
    import json
    import subprocess
    import sys

    from ledger.updatefile import GenesisMeta, write_aggregate
    from tests.support import REPO
    from worker.vectorfiles import vector_file

    rng = np.random.default_rng(0)
    state = {f"layer{i:02d}.weight": rng.standard_normal((512, 1024), dtype=np.float32) for i in range(32)}
    write_aggregate(tmp_path / "base.safetensors", state, GenesisMeta(model="m"))
    with UpdateFile.open(tmp_path / "base.safetensors") as base:
        vector_file(base, describe_source(base), tmp_path / "v.npy")  # any 64 MB of deltas will do
    del state
    done = subprocess.run(
        [sys.executable, "-c", _EVAL_MEMORY, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    grew = json.loads(done.stdout.strip().splitlines()[-1])["grew_kib"]
    assert grew < 100 * 1024, (
        grew
    )  # the weights (64 MB) and a tensor or two; the whole vector too would be 128 MB
