"""Byzantine members and validators against every pipeline (issues 9 and 13): final accuracy, rounds to 90 %,
rewards and reputation of the malicious members, for each attack, fraction of malicious members and pipeline,
over seeds; with ``--byzantine-validators K``, the same with K Byzantine validators per validator attack.

Baselines, measured in the same run: the f members simply absent (the goal's reference: what losing their data
costs, with no attack), the honest-only run (f = 0) of each pipeline, FedAvg without checks (no defence), and for
Byzantine validators the same cells with honest validators only.

    python benchmarks/byzantine.py [--seeds 3] [--jobs 2] [--out docs/robustness] [--results runs.json] [--json]
    python benchmarks/byzantine.py --byzantine-validators 1 [--validator-attack collude,lazy] --fraction 0,0.3
    python benchmarks/byzantine.py --e2e [--attack sign-flip] [--rounds 10]   # the real chain and workers agree

The sweep is ``meshprov experiment byzantine`` (every option of it is accepted here). ``--e2e`` runs one
configuration (30 % malicious, the default pipeline) through anvil, redis-server and real validator and
aggregator processes (lab/meshnet.py) and compares every round with the pure pipeline: the same update
CIDs, scores, consensus, accepted sets, aggregate CIDs, settlements and accuracy.
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
