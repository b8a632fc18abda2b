"""Byzantine members and validators against every pipeline (issues 9 and 13): final accuracy, rounds to 90 %,
rewards and reputation of the malicious members, for each attack, fraction of malicious members and pipeline,
over seeds; with ``--byzantine-validators K``, the same with K Byzantine validators per validator attack.

Baselines, measured in the same run: the f members simply absent (the goal's reference: what losing their data
costs, with no attack), the honest-only run (f = 0) of each pipeline, FedAvg without checks (no defence), and for
Byzantine validators the same cells with honest validators only.

    python benchmarks/byzantine.py [--seeds 3] [--jobs 2] [--out docs/robustness] [--results runs.json] [--json]
    python benchmarks/byzantine.py --byzantine-validators 1 [--validator-attack collude,lazy] --fraction 0,0.3
    python benchmarks/byzantine.py --e2e [--attack front-run,noisy-copy] [--nodes 10] [--malicious 3] [--rounds 3]

The sweep is ``meshprov experiment byzantine`` (every option of it is accepted here). ``--e2e`` runs each attack
(the default pipeline, honest validators) through anvil, redis-server and real validator and aggregator processes
(``lab.meshnet``; the validators as the demo starts them: ``--evaluator node.heldout:loss --loss-delta 5
--reference-trainer node.heldout:reference`` with ``HELDOUT_SLICE=v/V``) and compares every round with the pure
pipeline: the same update CIDs in the same order, every validator's revealed scores and reasons, the consensus,
the accepted set, the aggregate's CID, every contributor's reward and reputation, every validator's distance and
reward, and the accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [
    str(HERE),
    str(HERE.parent),
]  # this directory's modules, and the repo (not a site `benchmarks`)

MESH_MAX_SAMPLES = 1_000_000
"""The ``maxSamples`` of the task ``lab.meshnet`` deploys (``lab.consortium.task_table``'s default): what a sample
inflater claims on the mesh, so the pure run must claim it too."""

COMPARED = (
    "submitted",
    "cids",
    "scores",
    "revealed_reasons",
    "consensus",
    "accepted",
    "aggregate_cid",
    "rewards",
    "reputations",
    "distances",
    "validator_pay",
    "accuracy",
)


def run_on_mesh(config: Any, root: Path, log: Any = print) -> Any:
    """Run ``config`` through real processes; the result in the pure pipeline's terms (``ExperimentResult``)."""
    from lab.experiment import (
        ExperimentResult,
        Published,
        RoundResult,
        dev_roles,
        publish_round,
        read_weights,
        write_genesis_file,
        write_round,
    )
    from lab.meshnet import MeshNet, Proc
    from ledger.chain.types import Role, bits
    from ledger.content import digest_to_cid
    from node.data import make_federation
    from node.training import evaluate

    if config.seed != 0 or config.byzantine_validators or not config.pipeline.checked:
        raise SystemExit(
            "the end-to-end run takes seed 0 (node.heldout's split), honest validators and checks"
        )
    started = time.perf_counter()
    roles = dev_roles(config.validators, config.num_nodes)
    genesis_path = root / "genesis.safetensors"
    genesis_cid = write_genesis_file(genesis_path, config.model, config.seed)
    net = MeshNet.for_experiment(root / "net", config)
    with net:
        net.start(genesis_path)
        checks = ["--loss-delta", f"{config.loss_delta:g}"] if config.loss_delta is not None else []
        for v in range(config.validators):
            # As the demo starts them: its own slice of the held-out data, the reference trained on it.
            env = {**net.env(net.validator(v)[1]), "HELDOUT_SLICE": f"{v}/{config.validators}"}
            argv = [sys.executable, "-m", "ledger.cli.app", "worker", "run", "--role", "validator"]
            argv += [*net.worker_args, "--reference-trainer", "node.heldout:reference"]
            argv += ["--evaluator", "node.heldout:loss", *checks] if checks else []
            proc = Proc(f"validator-{v}", argv, env, net.root / f"validator-{v}.log")
            net.procs[proc.name] = proc.start()
        net.start_aggregator()
        net.start_follower()
        net.wait_ready()
        client = net.client()
        task_max = client.task(net.task_id).params.max_samples
        if task_max != config.max_samples:
            raise SystemExit(
                f"the mesh's task allows {task_max} samples, the pure run {config.max_samples}: "
                "build the config with max_samples equal to the task's"
            )
        members = {a.lower(): i for i, a in enumerate(roles.contributors)}
        federation = make_federation(config.num_nodes, config.alpha, config.seed)
        malicious = config.malicious_set
        base = read_weights(genesis_path)
        base_cid = genesis_cid
        initial = evaluate(config.model, base, federation.test, threads=1).accuracy
        previous: list[Published] = []
        rounds = []
        for r in range(1, config.rounds + 1):
            round_started = time.perf_counter()
            where = root / f"round-{r}"
            where.mkdir()
            published = publish_round(config, federation, base, r, malicious, previous=previous)
            files = write_round(config, roles, published=published, base_cid=base_cid, round_=r, where=where)
            for k, (p, path) in enumerate(zip(published, files.paths, strict=True)):
                sub = net.submit(p.node, path, p.num_samples, r, publish=False)
                if sub.index != k:
                    raise RuntimeError(f"round {r}: member {p.node} got index {sub.index}, expected {k}")
            net.wait_submissions_closed(r)
            for path in dict.fromkeys(files.paths):
                net.publish(path)
            net.wait_finalized(r)
            (final,) = client.finalizations(net.task_id, r)
            n = len(published)
            contributors, validators = final.settlements[:n], final.settlements[n:]
            order = {a.lower(): v for v, a in enumerate(roles.validators)}
            scores: list[list[int]] = [[] for _ in roles.validators]
            reasons: list[list[int]] = [[] for _ in roles.validators]
            for reveal in client.reveals(net.task_id, r):
                scores[order[reveal.validator.lower()]] = list(reveal.scores)
                reasons[order[reveal.validator.lower()]] = list(reveal.reasons)
            aggregate_cid = digest_to_cid(final.aggregate_digest)
            chosen = bits(final.accepted_bitmap)
            if chosen:
                base = read_weights(net.fetch(aggregate_cid, where / "aggregate.safetensors"))
            base_cid = aggregate_cid
            evaluation = evaluate(config.model, base, federation.test, threads=1)
            rounds.append(
                RoundResult(
                    round=r,
                    accuracy=evaluation.accuracy,
                    loss=evaluation.loss,
                    submitted=[members[s.account.lower()] for s in contributors],
                    reasons=[],
                    accepted=sorted(published[i].node for i in chosen),
                    rewards={members[s.account.lower()]: s.reward for s in contributors},
                    reputations={
                        i: client.reputation(a).contributor for i, a in enumerate(roles.contributors)
                    },
                    validator_rewards=sum(s.reward for s in validators),
                    aggregate_cid=aggregate_cid,
                    seconds=time.perf_counter() - round_started,
                    cids=list(files.cids),
                    consensus=[s.score for s in contributors],
                    scores=scores,
                    revealed_reasons=reasons,
                    distances=[s.distance for s in validators if s.role is Role.VALIDATOR],
                    validator_pay=[s.reward for s in validators],
                )
            )
            previous = [published[i] for i in chosen]
            log(f"  round {r}: accepted {len(chosen)}/{n}, accuracy {evaluation.accuracy:.3f}")
    return ExperimentResult(config, malicious, initial, genesis_cid, rounds, time.perf_counter() - started)


def compare(pure: Any, real: Any) -> dict[str, Any]:
    """Round by round: the fields of :data:`COMPARED` that differ (none: the pure pipeline is the system)."""
    mismatches = [
        f"round {a.round} {name}: pure {getattr(a, name)!r} real {getattr(b, name)!r}"
        for a, b in zip(pure.rounds, real.rounds, strict=True)
        for name in COMPARED
        if getattr(a, name) != getattr(b, name)
    ]
    return {
        "attack": pure.config.attack,
        "f": pure.config.num_malicious,
        "rounds": len(pure.rounds),
        "agree": not mismatches and pure.genesis_cid == real.genesis_cid,
        "mismatches": mismatches,
        "final_accuracy": {"pure": pure.final_accuracy, "real": real.final_accuracy},
        "malicious_reward_share": {"pure": pure.malicious_reward_share, "real": real.malicious_reward_share},
        "seconds": {"pure": pure.seconds, "real": real.seconds},
    }


def e2e(argv: list[str]) -> int:
    from lab.experiment import ATTACKS, DEFAULT_PIPELINE, ExperimentConfig, run_experiment

    parser = argparse.ArgumentParser(prog="benchmarks/byzantine.py --e2e")
    parser.add_argument("--attack", default=",".join(ATTACKS))
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--malicious", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep the run's files here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    reports = []
    for attack in [a.strip() for a in args.attack.split(",") if a.strip()]:
        config = ExperimentConfig(
            attack,
            args.malicious,
            DEFAULT_PIPELINE,
            0,
            num_nodes=args.nodes,
            rounds=args.rounds,
            tolerated=max(1, args.malicious),
            max_samples=MESH_MAX_SAMPLES,
        )
        print(f"{config.label}: pure pipeline…", file=sys.stderr)
        pure = run_experiment(config)
        print(f"{config.label}: real processes…", file=sys.stderr)
        root = args.keep / attack if args.keep else Path(tempfile.mkdtemp(prefix="meshprov-e2e-"))
        root.mkdir(parents=True, exist_ok=True)
        real = run_on_mesh(config, root, log=lambda line: print(line, file=sys.stderr))
        report = compare(pure, real)
        reports.append(report)
        verdict = "agree" if report["agree"] else "DIFFER:\n    " + "\n    ".join(report["mismatches"])
        print(f"{config.label}: {verdict}", file=sys.stderr)
    if args.json:
        print(json.dumps(reports, indent=1))
    return 0 if all(r["agree"] for r in reports) else 1


def main(argv: list[str]) -> int:
    if "--e2e" in argv:
        return e2e([a for a in argv if a != "--e2e"])
    from ledger.cli.app import main as meshprov

    json_flag = ["--json"] if "--json" in argv else []
    rest = [a for a in argv if a != "--json"]
    return meshprov([*json_flag, "experiment", "byzantine", *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
