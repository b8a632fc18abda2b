"""The demo's round report (lab.demo_report.print_round): a member that sent nothing is named, not left out."""

from __future__ import annotations

from rich.console import Console

from lab.demo_report import Member, RoundResult, UpdateRow, print_round

MEMBERS = {
    f"0x{i:040x}": Member(node=i, address=f"0x{i:040x}", behaviour="honest", shard_size=64)
    for i in (1, 2, 10)
}


def _update(index: int, node: int) -> UpdateRow:
    return UpdateRow(
        index=index, node=node, address=f"0x{node:040x}", cid="Qm", behaviour="honest", num_samples=64,
        relayed=False, accepted=True, consensus=5000, scores=[], reasons=[], reward=1, reputation=5200,
    )  # fmt: skip


def _printed(nodes: list[int]) -> str:
    result = RoundResult(
        round=1, base="Qm", aggregate="Qm", accepted=list(range(len(nodes))),
        updates=[_update(i, n) for i, n in enumerate(nodes)], validator_rewards={}, validators=[],
        carried_over=False, rewards_minted=0, finalized_block=1, seconds=1.0,
    )  # fmt: skip
    console = Console(record=True, width=200)
    print_round(console, result, MEMBERS)
    return console.export_text()


def test_members_whose_update_the_round_closed_without_are_named() -> None:
    text = _printed([2])
    assert "no update from node-1, node-10 this round: the submission window closed first" in text
    assert "no update from" not in _printed([1, 2, 10])


def test_an_honest_update_rejected_as_a_copy_is_explained() -> None:
    """IID shards of an easy task: two honest updates at cosine 0.97 in a round of two, one rejected as a
    duplicate. The report says why, where before the member was only marked rejected."""
    rows = [_update(0, 1), _update(1, 2)]
    rows[1].accepted, rows[1].reasons = False, ["duplicate"]
    result = RoundResult(
        round=2, base="Qm", aggregate="Qm", accepted=[0], updates=rows, validator_rewards={}, validators=[],
        carried_over=False, rewards_minted=0, finalized_block=1, seconds=1.0,
    )  # fmt: skip
    console = Console(record=True, width=200)
    print_round(console, result, MEMBERS)
    text = console.export_text()
    assert "honest node-2 rejected as a copy: members with alike data" in text
    assert "honest node-1" not in text
