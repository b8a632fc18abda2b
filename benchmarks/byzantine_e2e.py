"""The pure pipeline against the real system: one Byzantine configuration per attack (30 % malicious, the default
pipeline) through anvil, redis-server and real validator and aggregator processes, compared round by round with
``lab.experiment.run_experiment`` on the same inputs.

Agreement means, in every round: the same members submitted in the same order, every validator's on-chain reason
codes equal the pure verdicts, the accepted set (the contract's quorum outcome) is the same, the aggregate has the
same CID (so the same bytes), every contributor's reward and reputation in ``RoundFinalized`` equals the mirror's,
and the model's test accuracy is the same.

    python benchmarks/byzantine.py --e2e [--attack scale,sign-flip] [--rounds 10] [--seed 0] [--json]
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

from lab.experiment import (  # noqa: E402
    ATTACKS,
    DEFAULT_PIPELINE,
    ExperimentConfig,
    ExperimentResult,
    RoundResult,
    dev_roles,
    publish_round,
    read_weights,
    run_experiment,
    write_genesis_file,
)
from lab.meshnet import MeshNet  # noqa: E402


def validator_args(config: ExperimentConfig) -> list[str]:
    """The demo's validator options: the held-out loss check (``node.heldout``, seed 0's split)."""
    if config.loss_delta is None:
        return []
    if config.seed != 0:
        raise SystemExit("node.heldout:loss holds seed 0's split: run the end-to-end check with --seed 0")
    return ["--evaluator", "node.heldout:loss", "--loss-delta", f"{config.loss_delta:g}"]


def run_on_mesh(
    config: ExperimentConfig, root: Path, log: Any = print
) -> tuple[ExperimentResult, dict[str, Any]]:
    """Run ``config`` through real processes; returns the result in the pure pipeline's terms, and per-validator
    reason codes."""
    from ledger.chain.types import Role, bits
    from ledger.content import digest_to_cid
    from ledger.updatefile import UpdateMeta, write_update
    from node.data import make_federation
    from node.training import evaluate

    started = time.perf_counter()
    roles = dev_roles(config.validators, config.num_nodes)
    genesis_path = root / "genesis.safetensors"
    genesis_cid = write_genesis_file(genesis_path, config.model, config.seed)
    net = MeshNet(
        root / "net",
        validators=config.validators,
        contributors=config.num_nodes,
        quorum=config.quorum,
        aggregation=config.spec,
        budget=config.budget,
    )
    validator_reasons: dict[str, list[list[int]]] = {}
    with net:
        net.start(genesis_path)
        assert net.task_id == config.task_id
        assert [net.contributor(i)[0] for i in range(config.num_nodes)] == list(roles.contributors)
        net.start_all(validator_args(config))
        federation = make_federation(config.num_nodes, config.alpha, config.seed)
        malicious = config.malicious_set
        base = read_weights(genesis_path)
        base_cid = genesis_cid
        initial = evaluate(config.model, base, federation.test, threads=1).accuracy
        reader = net.client()
        rounds = []
        for r in range(1, config.rounds + 1):
            round_started = time.perf_counter()
            published = publish_round(config, federation, base, r, malicious)
            for k, p in enumerate(published):
                meta = UpdateMeta(
                    task=config.task_id,
                    round=r,
                    base=base_cid,
                    contributor=roles.contributors[p.node],
                    num_samples=p.num_samples,
                )
                path = root / f"update-{r}-{p.node}.safetensors"
                write_update(path, p.delta, meta)
                sub = net.submit(p.node, path, p.num_samples, r)
                path.unlink()
                if sub.index != k:
                    raise RuntimeError(f"round {r}: member {p.node} got index {sub.index}, expected {k}")
            final = net.wait_finalized(r)
            votes = net.events("VotesCast", r)
            per_validator: dict[str, list[int]] = {}
            for v in votes:
                codes = per_validator.setdefault(v.args["validator"], [0] * len(published))
                for position, i in enumerate(bits(v.args["indexes"])):
                    codes[i] = v.args["reasons"][position]
            for address, codes in per_validator.items():
                validator_reasons.setdefault(address, []).append(codes)
            accepted = bits(final.args["acceptedBitmap"])
            aggregate_cid = digest_to_cid(final.args["aggregateDigest"])
            if accepted:
                base = read_weights(net.fetch(aggregate_cid, root / f"aggregate-{r}.safetensors"))
            base_cid = aggregate_cid
            evaluation = evaluate(config.model, base, federation.test, threads=1)
            index_of = {a.lower(): i for i, a in enumerate(roles.contributors)}
            rewards = {
                index_of[s["account"].lower()]: int(s["reward"])
                for s in final.args["settlements"]
                if s["role"] == Role.CONTRIBUTOR
            }
            reputations = {i: int(reader.reputation(a).contributor) for i, a in enumerate(roles.contributors)}
            first = per_validator.get(roles.validators[0], [])
            rounds.append(
                RoundResult(
                    round=r,
                    accuracy=evaluation.accuracy,
                    loss=evaluation.loss,
                    submitted=[p.node for p in published],
                    reasons=first,
                    accepted=sorted(published[i].node for i in accepted),
                    rewards=rewards,
                    reputations=reputations,
                    validator_rewards=sum(
                        int(s["reward"]) for s in final.args["settlements"] if s["role"] == Role.VALIDATOR
                    ),
                    aggregate_cid=aggregate_cid,
                    seconds=time.perf_counter() - round_started,
                )
            )
            log(
                f"  round {r}: accepted {len(accepted)}/{len(published)}, accuracy {evaluation.accuracy:.3f}, "
                f"{time.perf_counter() - round_started:.1f} s"
            )
    result = ExperimentResult(
        config, malicious, initial, genesis_cid, rounds, seconds=time.perf_counter() - started
    )
    return result, {"validator_reasons": validator_reasons}


def compare(pure: ExperimentResult, real: ExperimentResult, extra: dict[str, Any]) -> dict[str, Any]:
    """Round by round: which fields agree."""
    fields = ("submitted", "reasons", "accepted", "aggregate_cid", "rewards", "reputations", "accuracy")
    mismatches: list[str] = []
    for a, b in zip(pure.rounds, real.rounds, strict=True):
        for name in fields:
            if getattr(a, name) != getattr(b, name):
                mismatches.append(
                    f"round {a.round} {name}: pure {getattr(a, name)!r} real {getattr(b, name)!r}"
                )
    for address, per_round in extra["validator_reasons"].items():
        for r, codes in enumerate(per_round, start=1):
            if codes != pure.rounds[r - 1].reasons:
                mismatches.append(f"round {r} validator {address}: {codes} != {pure.rounds[r - 1].reasons}")
    return {
        "attack": pure.config.attack,
        "f": pure.config.num_malicious,
        "rounds": len(pure.rounds),
        "agree": not mismatches and pure.genesis_cid == real.genesis_cid,
        "mismatches": mismatches,
        "final_accuracy": {"pure": pure.final_accuracy, "real": real.final_accuracy},
        "malicious_reward_share": {"pure": pure.malicious_reward_share, "real": real.malicious_reward_share},
        "malicious_rejected": sum(
            1
            for r in real.rounds
            for node, code in zip(r.submitted, r.reasons, strict=True)
            if node in set(real.malicious) and code
        ),
        "seconds": {"pure": pure.seconds, "real": real.seconds},
        "aggregates": [r.aggregate_cid for r in real.rounds],
    }


def compare_demo(summary_path: Path) -> dict[str, Any]:
    """A `meshprov demo --json` run (its demo-summary.json) against the pure pipeline on the same members.

    The demo's member k trains shard k - 1 of ``make_federation(nodes, alpha, seed)`` with
    ``round_seed(seed, round, k - 1)``, its last ``malicious`` members misbehave, and its accounts are laid out as
    ``dev_roles``: so the pure pipeline, told which members are malicious and the demo's budget, must produce
    the same update CIDs, verdicts, aggregates, rewards and reputations. Only the submission order differs (the
    demo's members submit as they finish), which no result here depends on: aggregation sorts by digest and
    a settlement is per update."""
    demo = json.loads(summary_path.read_text())
    d = demo["demo"]
    if d["rule"] != "fedavg" or d["validators"] != 2 or d["quorum"] != 2 or d.get("relay"):
        raise SystemExit("compare a demo run with the default rule, 2 validators, quorum 2 and no relay")
    minted = int(demo["rounds"][0]["rewards_minted"])
    validators = sum(int(v) for v in demo["rounds"][0]["validator_rewards"].values())
    budget = validators * 10  # the validators' share is exactly 10 % of the budget
    nodes, f = int(d["nodes"]), int(d["malicious"])
    config = ExperimentConfig(
        d["behaviour"] if f else "honest",
        f,
        DEFAULT_PIPELINE,
        int(d["seed"]),
        num_nodes=nodes,
        alpha=float(d["alpha"]),
        rounds=len(demo["rounds"]),
        model=d["model"],
        budget=budget,
        loss_delta=float(d["loss_delta"]),
        malicious=tuple(range(nodes - f, nodes)),
    )
    pure = run_experiment(config)
    mismatches: list[str] = []
    for mine, theirs in zip(pure.rounds, demo["rounds"], strict=True):
        r = mine.round
        updates = {u["node"] - 1: u for u in theirs["updates"]}
        if set(updates) != set(mine.submitted):
            mismatches.append(f"round {r}: members {sorted(updates)} != {sorted(mine.submitted)}")
            continue
        for k, node in enumerate(mine.submitted):
            u = updates[node]
            codes = {v["reason"] for v in u["votes"]}
            checks = [
                ("cid", u["cid"], mine.cids[k]),
                ("verdict", codes, {mine.reasons[k]}),
                ("accepted", u["accepted"], node in mine.accepted),
                ("reward", int(u["reward"]), mine.rewards[node]),
                ("reputation", u["reputation"], mine.reputations[node]),
            ]
            mismatches += [
                f"round {r} member {node + 1} {n}: demo {a!r} pure {b!r}" for n, a, b in checks if a != b
            ]
        if theirs["aggregate"] != mine.aggregate_cid:
            mismatches.append(f"round {r}: aggregate {theirs['aggregate']} != {mine.aggregate_cid}")
        if abs(theirs["accuracy"] - mine.accuracy) > 1e-12:
            mismatches.append(f"round {r}: accuracy {theirs['accuracy']} != {mine.accuracy}")
    bad = {node for node in range(nodes - f, nodes)}
    demo_paid = {m["node"] - 1: int(m["reward"]) for m in demo["members"]}
    share = sum(v for k, v in demo_paid.items() if k in bad) / max(1, sum(demo_paid.values()))
    return {
        "config": config.label,
        "agree": not mismatches,
        "mismatches": mismatches,
        "rounds": len(pure.rounds),
        "final_accuracy": {"pure": pure.final_accuracy, "demo": demo["rounds"][-1]["accuracy"]},
        "malicious_reward_share": {"pure": pure.malicious_reward_share, "demo": share},
        "minted_round_1": minted,
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["--demo-summary"]:
        row = compare_demo(Path(argv[1]))
        print(json.dumps(row, indent=1))
        return 0 if row["agree"] else 1
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attack", default=",".join(ATTACKS))
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-loss-check", action="store_true", help="Validators without held-out data.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", type=Path, help="Keep the data directories (logs, chain state) here.")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    rows = []
    for attack in [a.strip() for a in args.attack.split(",") if a.strip()]:
        config = ExperimentConfig(
            attack, round(args.fraction * 10), DEFAULT_PIPELINE, args.seed, rounds=args.rounds
        )
        print(f"{config.label}: pure pipeline…", file=sys.stderr)
        pure = run_experiment(config)
        print(f"{config.label}: anvil + redis + 2 validators + aggregator…", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="meshprov-e2e-") as tmp:
            root = args.keep / attack if args.keep else Path(tmp)
            root.mkdir(parents=True, exist_ok=True)
            real, extra = run_on_mesh(config, root, log=lambda m: print(m, file=sys.stderr))
        row = compare(pure, real, extra)
        rows.append(row)
        print(
            f"  agree: {row['agree']}" + "".join(f"\n    {m}" for m in row["mismatches"][:10]),
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(
            "| attack | f | rounds | pure = real | final acc % pure / real | malicious reward % pure / real "
            "| malicious rejected | seconds pure / real |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for row in rows:
            acc, share, sec = row["final_accuracy"], row["malicious_reward_share"], row["seconds"]
            print(
                f"| {row['attack']} | {row['f']} | {row['rounds']} | {'yes' if row['agree'] else '**no**'} "
                f"| {100 * acc['pure']:.1f} / {100 * acc['real']:.1f} "
                f"| {100 * share['pure']:.1f} / {100 * share['real']:.1f} | {row['malicious_rejected']} "
                f"| {sec['pure']:.0f} / {sec['real']:.0f} |"
            )
    return 0 if all(r["agree"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
