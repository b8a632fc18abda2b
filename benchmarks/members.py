"""Rounds with many members on one machine: a 100-member round of the default model, time beyond local training
per stage, against the goal (issue 15: ≤ 60 s beyond local training) and against a 5-member round of the same run.

Each size runs the real command (`meshprov demo --json --nodes N --rounds R --malicious 0`) in a fresh directory.
Members share processes (`lab.members`: one process per core, each hosting N / cores members with their own keys,
chain connections, journals and logs, training one at a time with torch on one thread); validators (3) and the
aggregator are their own `meshprov worker run` processes, as always.

For each round the demo records, in chain time (block timestamps, whole seconds), how long each stage took:
``submit`` (the round's opening to its last submission), ``commit`` (to the last validator's commitment),
``reveal`` (to the last reveal) and ``finalize`` (to the aggregate's finalization). *Local training* is the
members' own work: each member logs the seconds its training took; the members of one process train one after
another, so the machine's local training is the longest per-process sum (the critical path). *Beyond local
training* is the round's time minus that.

Round 1 includes the member processes' start (torch, the recipe, every member's data), which a member pays once,
not per round; round 2 and later are the steady state. Both are shown.

    nice -n 10 python benchmarks/members.py [--nodes 100] [--rounds 2] [--baseline-nodes 5] [--json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GOAL_BEYOND_TRAINING_S = 60.0
_TRAINED = re.compile(r"round (\d+): trained on \d+ samples in ([0-9.]+) s")


def run_demo(data_dir: Path, nodes: int, rounds: int) -> tuple[dict[str, Any], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHPROV_")}
    args = ["--nodes", str(nodes), "--rounds", str(rounds), "--malicious", "0"]
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


def training_seconds(data_dir: Path, summary: dict[str, Any]) -> dict[int, dict[str, float]]:
    """Per round: the longest per-process sum of the members' training seconds (``critical``), the sum over all
    members (``total``) and the longest single training (``longest``), from the members' logs."""
    nodes = int(summary["demo"]["nodes"])
    index = {f"node-{i + 1}": i for i in range(nodes)}
    hosts = [[index[name] for name in group] for group in summary["processes"]["members"]]
    per_member: dict[int, dict[int, float]] = {}
    for i in range(nodes):
        log = data_dir / "logs" / f"node-{i + 1}.log"
        for line in log.read_text(errors="replace").splitlines():
            m = _TRAINED.search(line)
            if m:
                per_member.setdefault(int(m.group(1)), {})[i] = float(m.group(2))
    out = {}
    for round_, seconds in per_member.items():
        out[round_] = {
            "critical": max(sum(seconds.get(i, 0.0) for i in group) for group in hosts),
            "total": sum(seconds.values()),
            "longest": max(seconds.values()),
            "members": float(len(seconds)),
        }
    return out


def measure(nodes: int, rounds: int, keep: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"members-{nodes}-") as tmp:
        data_dir = (keep / f"demo-{nodes}") if keep else Path(tmp) / "demo"
        summary, wall = run_demo(data_dir, nodes, rounds)
        training = training_seconds(data_dir, summary)
    rows = []
    for r in summary["rounds"]:
        trained = training.get(r["round"], {})
        updates = r["updates"]
        rows.append(
            {
                "round": r["round"],
                "updates": len(updates),
                "members_with_update": len({u["address"] for u in updates}),
                "accepted": sum(1 for u in updates if u["accepted"]),
                "judged_by_all": all(len(u["scores"]) == len(r["validators"]) for u in updates),
                "aggregated": not r["carried_over"],
                "round_s": r["seconds"],
                "stages_s": r["stages"],
                "training_critical_s": round(trained.get("critical", 0.0), 2),
                "training_total_s": round(trained.get("total", 0.0), 2),
                "training_longest_s": round(trained.get("longest", 0.0), 2),
                "beyond_training_s": round(r["seconds"] - trained.get("critical", 0.0), 1),
            }
        )
    return {
        "nodes": nodes,
        "rounds": rounds,
        "member_processes": len(summary["processes"]["members"]),
        "wall_s": round(wall, 1),
        "timings": summary["timings"],
        "windows_s": summary["demo"]["windows_s"],
        "accuracy": summary["final"]["accuracy"],
        "rows": rows,
    }


def print_table(results: list[dict[str, Any]]) -> None:
    head = (
        f"{'members':>7} {'round':>5} {'updates':>7} {'accepted':>8} {'judged':>6} {'submit':>6} {'commit':>6} {'reveal':>6} "
        f"{'final':>5} {'round s':>7} {'train s':>7} {'beyond':>6}  vs goal {GOAL_BEYOND_TRAINING_S:.0f} s"
    )
    print(head)
    print("-" * len(head))
    for res in results:
        for row in res["rows"]:
            st = row["stages_s"]
            beyond = row["beyond_training_s"]
            verdict = "met" if beyond <= GOAL_BEYOND_TRAINING_S else "NOT met"
            print(
                f"{res['nodes']:>7} {row['round']:>5} {row['updates']:>7} {row['accepted']:>8} "
                f"{'all' if row['judged_by_all'] else 'NOT':>6} "
                f"{st.get('submit', 0):>6.0f} {st.get('commit', 0):>6.0f} {st.get('reveal', 0):>6.0f} "
                f"{st.get('finalize', 0):>5.0f} {row['round_s']:>7.0f} {row['training_critical_s']:>7.1f} "
                f"{beyond:>6.1f}  {verdict}"
            )
    for res in results:
        print(
            f"{res['nodes']} members in {res['member_processes']} processes: wall {res['wall_s']} s (startup {res['timings'].get('startup')} s: services "
            f"and the deployment of every role), windows {res['windows_s']}, final accuracy {res['accuracy']:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--baseline-nodes", type=int, default=5, help="the small round of the same run (0: none)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the demo directories here")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    sizes = ([args.baseline_nodes] if args.baseline_nodes else []) + [args.nodes]
    results = [measure(n, args.rounds, args.keep) for n in sizes]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)


if __name__ == "__main__":
    main()
