"""The JSON API: every page's data, described by the response models in models.py (OpenAPI at /openapi.json)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request

from ledger.dashboard.models import (
    Contributor,
    ErrorBody,
    IndexInfo,
    Leaderboard,
    Lineage,
    Overview,
    RoundDetail,
    RoundPoint,
    TaskSummary,
)
from ledger.dashboard.readmodel import ReadModel

MAX_TASK = 2**63 - 1  # the index stores task ids in BIGINT columns
MAX_ROUND = 2**32 - 1  # uint32 on chain

TaskId = Annotated[int, Path(ge=1, le=MAX_TASK, description="Task id.")]
RoundNo = Annotated[int, Path(ge=1, le=MAX_ROUND, description="Round number (from 1).")]
TaskFilter = Annotated[
    int | None,
    Query(ge=1, le=MAX_TASK, description="Only this task (default: all, or the newest for the overview)."),
]
RoleQuery = Annotated[Literal["contributor", "validator", "all"], Query(description="Which members to rank.")]
SortQuery = Annotated[
    Literal["rewards", "reputation", "accepted", "rejected", "submissions", "scores", "address"],
    Query(description="Rank by this, largest first (address: alphabetical)."),
]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=1000)]

ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody, "description": "Unknown task, round, address or CID (or an empty index)."},
    422: {"model": ErrorBody, "description": "Malformed input: address, CID, number or parameter."},
    503: {"model": ErrorBody, "description": "The index database cannot be reached."},
}

router = APIRouter(prefix="/api", tags=["api"], responses=ERRORS)


def model_of(request: Request) -> ReadModel:
    model: ReadModel = request.app.state.model
    return model


@router.get("/status", response_model=IndexInfo, summary="Where the index stands")
def status(request: Request) -> IndexInfo:
    return model_of(request).require_status()


@router.get(
    "/overview", response_model=Overview, summary="Tasks, the current round, rounds over time, totals"
)
def overview(request: Request, task: TaskFilter = None) -> Overview:
    return model_of(request).overview(task)


@router.get("/tasks", response_model=list[TaskSummary], summary="Every task")
def tasks(request: Request) -> list[TaskSummary]:
    model = model_of(request)
    model.require_status()
    return model.tasks()


@router.get("/tasks/{task}/rounds", response_model=list[RoundPoint], summary="A task's rounds, oldest first")
def rounds(request: Request, task: TaskId) -> list[RoundPoint]:
    return model_of(request).overview(task).rounds


@router.get(
    "/tasks/{task}/rounds/{round}",
    response_model=RoundDetail,
    summary="A round: its validator set, every score with its reason, each update's consensus and each "
    "validator's distance to it, the aggregate, settlements",
)
def round_detail(request: Request, task: TaskId, round: RoundNo) -> RoundDetail:
    return model_of(request).round(task, round)


@router.get("/contributors", response_model=Leaderboard, summary="The leaderboard")
def contributors(
    request: Request,
    *,
    task: TaskFilter = None,
    role: RoleQuery = "contributor",
    sort: SortQuery = "rewards",
    offset: Offset = 0,
    limit: Limit = 100,
) -> Leaderboard:
    return model_of(request).leaderboard(task_id=task, role=role, sort=sort, offset=offset, limit=limit)


@router.get(
    "/contributors/{address}",
    response_model=Contributor,
    summary="A member: submissions with consensus and verdicts, reputation over time, rewards accrued and "
    "claimed, scores revealed",
)
def contributor(request: Request, address: str) -> Contributor:
    return model_of(request).contributor(address)


@router.get(
    "/lineage/{cid}", response_model=Lineage, summary="A model's (or update's) lineage back to genesis"
)
def lineage(request: Request, cid: str) -> Lineage:
    return model_of(request).lineage(cid)
