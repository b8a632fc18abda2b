"""The dashboard's JSON API and /metrics on a real indexed run: every endpoint's answer validates against its
OpenAPI schema, the numbers are the run's (and agree with the index's own queries), bad input gets a helpful
404/422 (JSON for the API, a page for people) and never a 500."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from ledger.chain.scores import REJECT
from ledger.content import cid_to_digest, digest_to_cid
from ledger.index.queries import Queries
from ledger.reasons import Reason
from tests.support import REPO
from tests.support.dashboard import MALICIOUS, DemoRun, demo_score

jsonschema = pytest.importorskip("jsonschema", reason="the API contract tests need jsonschema (dev extra)")

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def client(dashboard_url: str) -> Any:
    with httpx.Client(base_url=dashboard_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def openapi(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def validate(openapi: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """Validate against a schema of the OpenAPI document (its $refs resolve into the document's components)."""
    root = {**schema, "components": openapi["components"]}
    jsonschema.Draft202012Validator(root).validate(instance)


def ok_schema(openapi: dict[str, Any], path: str) -> dict[str, Any]:
    return dict(openapi["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"])


def error_schema(openapi: dict[str, Any], path: str, status: int) -> dict[str, Any]:
    return dict(
        openapi["paths"][path]["get"]["responses"][str(status)]["content"]["application/json"]["schema"]
    )


# ─── the contract ───────────────────────────────────────────────────────────────────────────────────────────


def concrete_requests(run: DemoRun) -> dict[str, list[str]]:
    """For every API path of the schema, requests that exercise it on the run."""
    aggregate = digest_to_cid(run.rounds[1].aggregate)
    return {
        "/api/status": ["/api/status"],
        "/api/overview": ["/api/overview", f"/api/overview?task={run.task_id}"],
        "/api/tasks": ["/api/tasks"],
        "/api/tasks/{task}/rounds": [f"/api/tasks/{run.task_id}/rounds"],
        "/api/tasks/{task}/rounds/{round}": [
            f"/api/tasks/{run.task_id}/rounds/{n}" for n in (1, 2, 3, run.open_round)
        ],
        "/api/contributors": [
            "/api/contributors",
            "/api/contributors?role=validator&sort=scores",
            "/api/contributors?role=all&sort=address&limit=3&offset=2",
            f"/api/contributors?task={run.task_id}&sort=rejected",
        ],
        "/api/contributors/{address}": [
            f"/api/contributors/{run.malicious}",
            f"/api/contributors/{run.validators[0].lower()}",
            f"/api/contributors/{run.aggregator}",
        ],
        "/api/lineage/{cid}": [
            f"/api/lineage/{aggregate}",
            f"/api/lineage/{run.cids[(2, MALICIOUS)]}",  # a rejected update
            f"/api/lineage/{digest_to_cid(run.rounds[0].base)}",  # the genesis model
            "/api/lineage/0x" + run.rounds[0].aggregate.hex(),
        ],
    }


def test_every_endpoint_answers_what_its_schema_says(
    client: httpx.Client, openapi: dict[str, Any], demo_run: DemoRun
) -> None:
    requests = concrete_requests(demo_run)
    api_paths = {p for p in openapi["paths"] if p.startswith("/api/")}
    assert api_paths == set(requests), "every API endpoint needs a contract test"
    for path, urls in requests.items():
        for url in urls:
            response = client.get(url)
            assert response.status_code == 200, (url, response.text)
            assert response.headers["content-type"] == "application/json"
            validate(openapi, ok_schema(openapi, path), response.json())


def test_errors_answer_the_error_schema(client: httpx.Client, openapi: dict[str, Any]) -> None:
    path = "/api/contributors/{address}"
    for url, status in (
        ("/api/contributors/0xnot-an-address", 422),
        ("/api/contributors/0x" + "ab" * 20, 404),
    ):
        response = client.get(url)
        assert response.status_code == status
        validate(openapi, error_schema(openapi, path, status), response.json())


def test_health_and_metrics_endpoints_are_documented(client: httpx.Client, openapi: dict[str, Any]) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    validate(openapi, ok_schema(openapi, "/healthz"), health.json())
    assert health.json()["status"] == "ok"
    assert "/metrics" in openapi["paths"]
    assert "/docs" not in openapi["paths"]  # no CDN-backed Swagger UI


# ─── the numbers are the run's ──────────────────────────────────────────────────────────────────────────────


def test_overview_shows_the_rounds_and_the_open_round(client: httpx.Client, demo_run: DemoRun) -> None:
    data = client.get("/api/overview").json()
    assert data["task"]["task_id"] == demo_run.task_id
    assert data["task"]["finalized"] == 3
    assert data["task"]["latest_model_cid"] == digest_to_cid(demo_run.rounds[2].aggregate)
    assert [r["round"] for r in data["rounds"]] == [1, 2, 3, 4]
    assert [r["accepted"] for r in data["rounds"]] == [5, 4, 4, None]
    assert [r["rejected"] for r in data["rounds"]] == [0, 1, 1, None]
    assert all(r["duration_s"] >= 240 for r in data["rounds"][:3])
    current = data["current_round"]
    assert (current["round"], current["state"], current["submissions"], current["contributors"]) == (
        4,
        "submissions",
        3,
        5,
    )
    assert (current["scores_revealed"], current["scores_expected"]) == (0, 9)
    assert current["submission_deadline"] < current["commit_deadline"] < current["reveal_deadline"]
    totals = data["totals"]
    assert (totals["updates"], totals["accepted"], totals["rejected"], totals["pending"]) == (18, 13, 2, 3)
    # What the chain accrued (a round pays at most its budget of 1 MESH: validators that do not beat the public
    # record are not paid, R5).
    assert totals["rewards_accrued_mesh"] == pytest.approx(demo_run.accrued_total / 10**18, abs=1e-9)
    assert 2.0 < totals["rewards_accrued_mesh"] <= 3.0
    assert [r["carried_over"] for r in data["rounds"]] == [False] * 4
    by_reason = {r["reason"]: r["count"] for r in data["verdicts"]}
    assert by_reason == {"accepted": 39, "non-finite": 3, "loss-regression": 1, "norm-outlier": 2}


def test_leaderboard_agrees_with_the_index_queries(client: httpx.Client, demo_run: DemoRun) -> None:
    board = client.get("/api/contributors?role=all&limit=1000").json()
    db = demo_run.db()
    try:
        expected = {s.address: s for s in Queries(db).leaderboard()}
    finally:
        db.dispose()
    rows = {r["address"]: r for r in board["rows"]}
    assert set(rows) >= set(expected)
    for address, s in expected.items():
        r = rows[address]
        assert int(r["rewards"]) == s.total_rewards
        assert r["contributor_reputation"] == s.contributor_reputation
        assert r["validator_reputation"] == s.validator_reputation
        assert (r["submissions"], r["accepted"], r["scores"]) == (s.submissions, s.accepted, s.scores)
    claimer = rows[demo_run.contributors[0]]
    assert int(claimer["claimed"]) == demo_run.claimed > 0
    assert all(r["claimed"] == "0" for a, r in rows.items() if a != demo_run.contributors[0])
    contributors = client.get("/api/contributors").json()
    assert contributors["total"] == 5
    bottom = contributors["rows"][-1]
    assert bottom["address"] == demo_run.malicious  # the fewest tokens: two rounds unrewarded
    assert (bottom["accepted"], bottom["rejected"], bottom["pending"]) == (1, 2, 0)
    by_rejected = client.get("/api/contributors?sort=rejected&limit=1").json()["rows"]
    assert by_rejected[0]["address"] == demo_run.malicious
    validators = client.get("/api/contributors?role=validator").json()
    assert {r["address"] for r in validators["rows"]} == set(demo_run.validators)
    assert all(r["scores"] == 15 for r in validators["rows"])


def test_a_contributors_history_agrees_with_the_index_queries(
    client: httpx.Client, demo_run: DemoRun
) -> None:
    data = client.get(f"/api/contributors/{demo_run.malicious.lower()}").json()
    db = demo_run.db()
    try:
        history = Queries(db).account(demo_run.malicious)
    finally:
        db.dispose()
    assert data["address"] == demo_run.malicious
    assert data["roles"] == ["contributor"]
    assert int(data["rewards"]) == history.total_rewards
    assert [p["reputation"] for p in data["reputation"]] == [c.reputation for c in history.reputation]
    assert [p["delta"] for p in data["reputation"]] == [c.delta for c in history.reputation]
    assert all(p["timestamp"] for p in data["reputation"])
    assert (data["accepted"], data["rejected"]) == (history.accepted_count, history.rejected_count) == (1, 2)
    by_round = {s["round"]: s for s in data["submissions"]}
    assert by_round[2]["verdict"] == "rejected"
    assert by_round[2]["reasons"] == ["non-finite"]
    assert (by_round[3]["positive_scores"], by_round[3]["other_scores"], by_round[3]["reasons"]) == (
        1,
        2,
        ["norm-outlier"],
    )
    assert by_round[3]["consensus"] == by_round[2]["consensus"] == REJECT
    assert by_round[1]["consensus"] == demo_run.rounds[0].consensus[MALICIOUS] > 0
    assert [p["score"] for p in data["reputation"][1:]] == [r.consensus[MALICIOUS] for r in demo_run.rounds]
    assert by_round[2]["cid"] == demo_run.cids[(2, MALICIOUS)]
    assert data["reputation"][-1]["reputation"] < data["reputation"][0]["reputation"]  # punished twice
    assert data["scores"] is None
    # Never claimed: everything accrued is unclaimed.
    assert (data["claimed"], data["unclaimed"], data["claims"]) == ("0", data["rewards"], [])
    validator = client.get(f"/api/contributors/{demo_run.validators[0]}").json()
    reasons = {r["reason"]: r["count"] for r in validator["scores"]["by_reason"]}
    assert reasons == {"accepted": 12, "non-finite": 1, "loss-regression": 1, "norm-outlier": 1}
    assert (validator["scores"]["rounds"], validator["scores"]["rejects"]) == (3, 3)
    assert all(p["distance"] >= 0 and not p["absent"] for p in validator["reputation"])
    claimer = client.get(f"/api/contributors/{demo_run.contributors[0]}").json()
    (claim,) = claimer["claims"]
    assert int(claim["amount"]) == int(claimer["claimed"]) == int(claimer["rewards"]) == demo_run.claimed
    assert claimer["unclaimed"] == "0"
    assert claimer["role_changes_scheduled"] == []
    scheduled = client.get(f"/api/contributors/{demo_run.contributors[3]}").json()["role_changes_scheduled"]
    assert [(s["role"], s["grant"], s["cancelled"], s["execute_after"]) for s in scheduled] == [
        ("validator", True, False, demo_run.role_change_after)
    ]


def test_a_round_has_every_score_the_consensus_the_distances_and_the_update_sizes(
    client: httpx.Client, demo_run: DemoRun
) -> None:
    data = client.get(f"/api/tasks/{demo_run.task_id}/rounds/2").json()
    assert data["state"] == "finalized"
    assert data["aggregate_cid"] == digest_to_cid(demo_run.rounds[1].aggregate)
    assert data["base_cid"] == digest_to_cid(demo_run.rounds[0].aggregate)
    assert (data["previous_round"], data["next_round"]) == (1, 3)
    bad = data["updates"][MALICIOUS]
    assert bad["contributor"] == demo_run.malicious
    assert bad["verdict"] == "rejected"
    assert [(v["score"], v["reason"]) for v in bad["scores"]] == [(REJECT, "non-finite")] * 3
    assert bad["scores"][0]["reason_help"] == Reason.NON_FINITE.help
    assert bad["consensus"] == REJECT
    split = data["updates"][2]
    assert (split["verdict"], split["positive_scores"], split["other_scores"]) == ("accepted", 2, 1)
    assert [r["reason"] for r in split["reasons"]] == ["loss-regression"]
    r2 = demo_run.rounds[1]
    assert [u["consensus"] for u in data["updates"]] == r2.consensus
    # The lower median of (-10000, v1, v2) is validator 1's score; each score's distance is |s - c| capped.
    assert split["consensus"] == demo_score(1, 2, 2)
    assert [v["distance"] for v in split["scores"]] == [
        min(abs(r2.sheets[v["validator"]].scores[2] - split["consensus"]), 10_000) for v in split["scores"]
    ]
    assert [v["score_value"] for v in split["scores"]] == [v["score"] / 10_000 for v in split["scores"]]
    validators = data["validators"]
    assert [m["validator"] for m in validators] == r2.validators
    assert [m["weight"] for m in validators] == r2.weights
    assert all(m["committed"] and m["revealed"] and m["absent"] is False for m in validators)
    settled = [s for s in data["settlements"] if s["role"] == "validator"]
    assert [m["distance"] for m in validators] == [s["distance"] for s in settled]
    assert validators[0]["distance"] == max(m["distance"] for m in validators)  # it rejected update 2
    assert [u["size_bytes"] for u in data["updates"]] == [
        demo_run.sizes[demo_run.cids[(2, i)]] for i in range(5)
    ]
    assert data["update_bytes"] == sum(demo_run.sizes[demo_run.cids[(2, i)]] for i in range(5))
    rewards = {s["account"]: s for s in data["settlements"] if s["role"] == "contributor"}
    assert rewards[demo_run.malicious]["delta"] < 0
    assert rewards[demo_run.malicious]["reward"] == "0"
    open_round = client.get(f"/api/tasks/{demo_run.task_id}/rounds/{demo_run.open_round}").json()
    assert open_round["state"] == "submissions"
    assert open_round["aggregate_cid"] is None
    assert [u["verdict"] for u in open_round["updates"]] == ["pending"] * 3
    assert [u["consensus"] for u in open_round["updates"]] == [None] * 3
    assert all(not m["committed"] and m["distance"] is None for m in open_round["validators"])
    assert open_round["next_round"] is None


def test_lineage_goes_back_to_genesis(client: httpx.Client, demo_run: DemoRun) -> None:
    round2 = digest_to_cid(demo_run.rounds[1].aggregate)
    data = client.get(f"/api/lineage/{digest_to_cid(demo_run.rounds[2].aggregate)}").json()
    (view,) = data["lineages"]
    assert view["role"] == "aggregate"
    assert view["verified"] is True
    assert [r["round"] for r in view["rounds"]] == [3, 2, 1]
    assert view["rounds"][1]["aggregate_cid"] == round2
    assert view["genesis_cid"] == digest_to_cid(demo_run.rounds[0].base)
    update = client.get(f"/api/lineage/{demo_run.cids[(3, MALICIOUS)]}").json()["lineages"][0]
    assert update["role"] == "update"
    assert update["update"]["verdict"] == "rejected"
    assert update["update"]["reasons"] == ["norm-outlier"]
    assert update["used_in_round"] is None
    # CIDv1 and 0x digests name the same model.
    v1 = digest_to_cid(cid_to_digest(round2), v1=True)
    assert client.get(f"/api/lineage/{v1}").json()["cid"] == round2


# ─── bad input ──────────────────────────────────────────────────────────────────────────────────────────────

UNKNOWN_CID = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"


def bad_inputs(run: DemoRun) -> list[tuple[str, int, str]]:
    t = run.task_id
    return [
        ("/contributors/0x" + "12" * 20, 404, "has no record in the index"),
        ("/contributors/0xZZZ", 422, "is not an Ethereum address"),
        ("/contributors/" + run.malicious[:-1], 422, "is not an Ethereum address"),
        (f"/lineage/{UNKNOWN_CID}", 404, "is not anchored"),
        ("/lineage/QmNotACid", 422, "invalid CID"),
        ("/lineage/0x1234", 422, "invalid CID"),
        (f"/tasks/{t}/rounds/99", 404, "has no round 99"),
        ("/tasks/77/rounds/1", 404, "task 77 is not in the index"),
        (f"/tasks/{t}/rounds/0", 422, "round"),
        (f"/tasks/{t}/rounds/two", 422, "valid integer"),
        (f"/tasks/{t}/rounds/{2**80}", 422, "less than or equal"),
        ("/contributors?sort=charm", 422, "sort"),
        ("/contributors?limit=0", 422, "limit"),
        ("/no/such/page", 404, "there is no page"),
    ]


def test_bad_input_gets_a_helpful_page(client: httpx.Client, demo_run: DemoRun) -> None:
    for url, status, text in bad_inputs(demo_run):
        response = client.get(url, headers={"accept": "text/html"})
        assert response.status_code == status, (url, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert text in response.text, url
        assert f'<p class="status">{status}</p>' in response.text
        assert 'href="/contributors"' in response.text  # somewhere to go next


def test_bad_input_gets_a_json_error_from_the_api(client: httpx.Client, demo_run: DemoRun) -> None:
    for url, status, text in bad_inputs(demo_run):
        api_url = "/api" + url
        response = client.get(api_url)
        assert response.status_code == status, (api_url, response.text)
        error = response.json()["error"]
        assert error["status"] == status
        assert error["code"] == {404: "not-found", 422: "invalid-input"}[status]
        assert text in error["message"], api_url


def test_unknown_task_filters_are_404_not_500(client: httpx.Client) -> None:
    for url in ("/api/overview?task=999", "/api/contributors?task=999", "/?task=999", "/lineage?task=999"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "task 999 is not in the index" in response.text


# ─── metrics ────────────────────────────────────────────────────────────────────────────────────────────────


def metrics(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_report_the_run(client: httpx.Client, demo_run: DemoRun) -> None:
    m = metrics(client)
    t = (("task", str(demo_run.task_id)),)
    assert m[("meshprov_index_up", ())] == 1
    assert m[("meshprov_current_round", t)] == 4
    assert m[("meshprov_rounds_finalized_total", t)] == 3
    assert m[("meshprov_rewards_accrued_tokens_total", t)] == pytest.approx(
        demo_run.accrued_total / 10**18, abs=1e-9
    )
    assert m[("meshprov_round_duration_seconds_count", t)] == 3
    assert m[("meshprov_round_duration_seconds_sum", t)] >= 3 * 240
    assert m[("meshprov_round_duration_seconds_bucket", (("le", "+Inf"), *t))] == 3
    assert m[("meshprov_federation_latency_seconds_count", t)] == 15  # updates of finalized rounds
    assert m[("meshprov_federation_latency_seconds_bucket", (("le", "10"), *t))] == 0
    assert m[("meshprov_scores_total", (("reason", "non-finite"), *t))] == 3
    assert m[("meshprov_scores_total", (("reason", "norm-outlier"), *t))] == 2
    assert m[("meshprov_scores_total", (("reason", "accepted"), *t))] == 39
    assert m[("meshprov_updates_total", (*t, ("verdict", "rejected")))] == 2
    assert m[("meshprov_updates_total", (*t, ("verdict", "pending")))] == 3
    assert m[("meshprov_participation_ratio", t)] == 1.0
    bad = (("address", demo_run.malicious),)
    good = (("address", demo_run.contributors[0]),)
    assert (
        m[("meshprov_reputation", (*bad, ("role", "contributor")))]
        < m[("meshprov_reputation", (*good, ("role", "contributor")))]
    )
    assert m[("meshprov_rewards_tokens_total", bad)] < m[("meshprov_rewards_tokens_total", good)]
    assert m[("meshprov_contributor_updates_total", (*bad, ("verdict", "rejected")))] == 2
    for round_ in (1, 2, 3):
        size = sum(demo_run.sizes[demo_run.cids[(round_, i)]] for i in range(5))
        assert m[("meshprov_round_update_bytes", (("round", str(round_)), *t))] == size
        assert m[("meshprov_round_update_bytes_unknown", (("round", str(round_)), *t))] == 0
    open_size = sum(demo_run.sizes[c] for c in demo_run.open_cids)
    assert m[("meshprov_round_update_bytes", (("round", "4"), *t))] == open_size
    # The dashboard's own request metrics are there too.
    assert any(name == "meshprov_dashboard_requests_total" for name, _ in m)


def test_the_grafana_dashboard_queries_only_metrics_we_export(client: httpx.Client) -> None:
    repo = REPO
    dashboard = json.loads((repo / "deploy" / "grafana" / "dashboards" / "meshprov.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    wanted = set(re.findall(r"\bmeshprov_[a-z_]+", exprs))
    client.get("/api/status")  # the request metrics exist once a request was served (the test may run alone)
    exported = {name for name, _ in metrics(client)}
    only_when_following = {"meshprov_index_behind_blocks"}
    assert wanted - exported - only_when_following == set()
    assert len(wanted) >= 15
    datasource = (repo / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert "uid: meshprov-prometheus" in datasource
    assert {p["datasource"]["uid"] for p in panels} == {"meshprov-prometheus"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
