"""`meshprov demo` end to end: wall time, accuracy against the central baseline, and what happens to the malicious
member — each measured by running the real command (`meshprov demo --json`) in a fresh directory.

Runs:
  default       5 members (1 scaling its update ×10), 5 rounds, fedavg      target: ≤ 180 s wall time; the
                malicious member's updates all rejected with a norm or held-out-loss reason code, reward 0
  honest-10     5 honest non-IID members (α = 0.5), 10 rounds              target: ≥ 95 % test accuracy within
                10 rounds; baseline: the same model trained centrally with the same budget, in the same run
  --behaviours  optionally, one default-sized run per malicious behaviour (what each is rejected for)

    python benchmarks/demo.py [--json] [--behaviours] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 180.0
TARGET_ACCURACY = 0.95
SCALE_REASONS = {"norm-too-large", "norm-outlier", "loss-regression"}
BEHAVIOURS = ("scale", "sign-flip", "noise", "free-rider", "copycat", "little-is-enough")


def run_demo(data_dir: Path, *args: str) -> tuple[dict[str, Any], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHPROV_")}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ledger.cli.app", "demo", "--json", "--data-dir", str(data_dir), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"meshprov demo {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), seconds


def malicious_outcome(summary: dict[str, Any]) -> dict[str, Any]:
    bad = [m for m in summary["members"] if m["malicious"]]
    return {
        "members": [m["name"] for m in bad],
        "accepted": sum(m["accepted"] for m in bad),
        "rejected": sum(m["rejected"] for m in bad),
        "reasons": sorted({r for m in bad for r in m["reasons"]}),
        "reward": str(sum(int(m["reward"]) for m in bad)),
    }


def run(root: Path, behaviours: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    summary, seconds = run_demo(root / "default")
    bad = malicious_outcome(summary)
    out["default"] = {
        "wall_seconds": round(seconds, 1),
        "timings": summary["timings"],
        "accuracy_per_round": [r["accuracy"] for r in summary["rounds"]],
        "final_accuracy": summary["final"]["accuracy"],
        "central_baseline": summary["baseline"]["accuracy"],
        "malicious": bad,
        "lineage_verified": summary["final"]["lineage"]["verified"],
        "verify_exit_code": summary["final"]["verify"]["exit_code"],
        "within_target": seconds <= TARGET_SECONDS,
        "malicious_caught": bad["accepted"] == 0
        and bad["reward"] == "0"
        and set(bad["reasons"]) <= SCALE_REASONS,
    }
    summary, seconds = run_demo(root / "honest-10", "--malicious", "0", "--rounds", "10")
    out["honest_10"] = {
        "wall_seconds": round(seconds, 1),
        "accuracy_per_round": [r["accuracy"] for r in summary["rounds"]],
        "rounds_to_95": summary["rounds_to_95"],
        "final_accuracy": summary["final"]["accuracy"],
        "central_baseline": summary["baseline"]["accuracy"],
        "central_epochs": summary["baseline"]["epochs"],
        "reaches_target": summary["rounds_to_95"] is not None,
    }
    if behaviours:
        out["behaviours"] = {}
        for behaviour in BEHAVIOURS:
            summary, seconds = run_demo(root / behaviour, "--behaviour", behaviour)
            out["behaviours"][behaviour] = {
                "wall_seconds": round(seconds, 1),
                "final_accuracy": summary["final"]["accuracy"],
                **malicious_outcome(summary),
            }
    return out


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def print_table(result: dict[str, Any]) -> None:
    d, h = result["default"], result["honest_10"]
    bad = d["malicious"]
    print("meshprov demo, measured end to end (real processes)")
    print(f"{'run':<28} {'measure':<34} {'value':>22}  target")
    rows = [
        (
            "default (5 members, 1×scale)",
            "wall time",
            f"{d['wall_seconds']:.1f} s",
            f"≤ {TARGET_SECONDS:.0f} s",
        ),
        ("", "  startup / rounds", f"{d['timings']['startup']:.1f} / {d['timings']['rounds']:.1f} s", ""),
        ("", "malicious updates accepted", f"{bad['accepted']} of {bad['accepted'] + bad['rejected']}", "0"),
        ("", "their reason codes", ", ".join(bad["reasons"]), "norm / loss"),
        ("", "malicious reward", bad["reward"], "0"),
        ("", "final accuracy (baseline)", f"{_pct(d['final_accuracy'])} ({_pct(d['central_baseline'])})", ""),
        (
            "",
            "lineage verified / verify exit",
            f"{d['lineage_verified']} / {d['verify_exit_code']}",
            "True / 0",
        ),
        ("honest-10 (5 honest, α=0.5)", "rounds to 95 %", str(h["rounds_to_95"]), "≤ 10"),
        ("", "final accuracy", _pct(h["final_accuracy"]), "≥ 95 %"),
        ("", "central baseline, same budget", _pct(h["central_baseline"]), "(same run)"),
        ("", "wall time", f"{h['wall_seconds']:.1f} s", ""),
    ]
    for row in rows:
        print(f"{row[0]:<28} {row[1]:<34} {row[2]:>22}  {row[3]}")
    print("accuracy per round (honest-10):", " ".join(f"{100 * a:.1f}" for a in h["accuracy_per_round"]))
    for behaviour, b in result.get("behaviours", {}).items():
        print(
            f"{behaviour:<18} accepted {b['accepted']}/{b['accepted'] + b['rejected']}  reasons "
            f"{', '.join(b['reasons']) or '—'}  reward {b['reward']}  final {_pct(b['final_accuracy'])}  "
            f"{b['wall_seconds']:.0f} s"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--behaviours", action="store_true", help="also one run per malicious behaviour")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep the demos' data")
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(args.keep, args.behaviours)
    else:
        with tempfile.TemporaryDirectory(prefix="meshprov-bench-demo-") as tmp:
            result = run(Path(tmp), args.behaviours)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    ok = result["default"]["within_target"] and result["default"]["malicious_caught"]
    return 0 if ok and result["honest_10"]["reaches_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
