"""Byzantine members against every pipeline (issue 9): final accuracy, rounds to 90 %, rewards and reputation of
the malicious members, for each attack, fraction of malicious members and pipeline, over seeds.

Baselines, measured in the same run: the honest-only run (f = 0) of each pipeline, FedAvg without checks (no
defence), and the f members simply absent (what losing their data costs, with no attack).

    python benchmarks/byzantine.py [--seeds 3] [--jobs 2] [--out docs/robustness] [--results runs.json] [--json]
    python benchmarks/byzantine.py --e2e [--attack sign-flip] [--rounds 10]   # the real chain and workers agree

The sweep is ``meshprov experiment byzantine`` (every option of it is accepted here). ``--e2e`` runs one
configuration (30 % malicious, the default pipeline) through anvil, redis-server and real validator and
aggregator processes (lab/meshnet.py) and compares every round with the pure pipeline: the same update
CIDs, verdicts, accepted sets, aggregate CIDs, settlements and accuracy.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [
    str(HERE),
    str(HERE.parent),
]  # this directory's modules, and the repo (not a site `benchmarks`)


def main(argv: list[str]) -> int:
    if "--e2e" in argv:
        from byzantine_e2e import main as e2e

        return e2e([a for a in argv if a != "--e2e"])
    from ledger.cli.app import main as meshprov

    json_flag = ["--json"] if "--json" in argv else []
    rest = [a for a in argv if a != "--json"]
    return meshprov([*json_flag, "experiment", "byzantine", *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
