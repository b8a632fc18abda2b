"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) on a real indexed run: each page
shows the run's data, the charts are drawn, the links lead where they say, a phone-size screen has no
horizontal overflow. Screenshots go to test-artifacts/dashboard/ (git-ignored)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO
from tests.support.dashboard import MALICIOUS, DemoRun

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts" / "dashboard"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.anvil,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make setup installs it)"
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, dashboard_url: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=dashboard_url)
    # The pages work offline: any request that leaves the dashboard fails the test.
    outside: list[str] = []

    def refuse(route: Any) -> None:
        outside.append(route.request.url)
        route.abort()

    context.route(re.compile(r"^(?!" + re.escape(dashboard_url) + ").*"), refuse)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert outside == []
    assert errors == []


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def line_points(page: Any, selector: str) -> int:
    """Vertices of the first line drawn in the chart (its path's M and L commands)."""
    d = page.locator(selector).first.get_attribute("d")
    assert d, f"no line in {selector}"
    return len(re.findall(r"[ML]", d))


def test_overview_shows_the_open_round_and_charts(page: Any, demo_run: DemoRun) -> None:
    page.goto("/")
    assert page.title() == "Overview · meshprov"
    current = page.locator("#current-round")
    assert "Round 4" in current.inner_text()
    assert "collecting updates" in current.inner_text()
    assert "3 of 5 contributors" in current.inner_text()
    assert "0 of 9" in current.inner_text()  # scores revealed of 3 validators x 3 updates
    assert "Reveals close" in current.inner_text()
    body = page.locator("main").inner_text()
    assert "13 accepted" in body
    assert "2 rejected" in body
    assert "non-finite" in body
    assert "norm-outlier" in body
    assert "loss-regression" in body
    # Updates per round: a bar per round and status (round 4's pending bar included).
    assert page.locator("svg.chart rect.bar.s1").count() == 3
    assert page.locator("svg.chart rect.bar.s2").count() == 2
    assert page.locator("svg.chart rect.bar.s3").count() == 1
    assert line_points(page, "svg.chart path.line.s4") == 3  # three finalized rounds' durations
    assert page.locator("svg.chart circle.pt.s4").count() == 3
    shot(page, "overview")


def test_click_through_overview_round_lineage_contributor(page: Any, demo_run: DemoRun) -> None:
    page.goto("/")
    page.get_by_role("link", name="Round 2", exact=True).click()
    page.wait_for_url(f"**/tasks/{demo_run.task_id}/rounds/2")
    assert page.locator("h1").inner_text().startswith("Round 2")
    bad_row = page.locator(f"#update-{MALICIOUS}")
    assert "rejected" in bad_row.inner_text()
    assert bad_row.inner_text().count("non-finite") == 3  # every validator's reason
    assert bad_row.locator(".addr").first.get_attribute("title") == demo_run.malicious
    assert (
        bad_row.locator(".addr").first.inner_text() == f"{demo_run.malicious[:6]}…{demo_run.malicious[-4:]}"
    )
    assert bad_row.locator("td.consensus").inner_text() == "-1.0000"
    r2 = demo_run.rounds[1]
    split = page.locator("#update-2")
    assert "loss-regression" in split.inner_text()
    assert split.locator("td.consensus").inner_text() == f"{r2.consensus[2] / 10_000:+.4f}"
    # Under each score its distance to the consensus: validator 0's hard reject is a full 10,000 away at most.
    distances = split.locator("td.score .distance").all_inner_texts()
    assert distances == [
        f"Δ {min(abs(r2.sheets[v].scores[2] - r2.consensus[2]), 10_000)}" for v in r2.validators
    ]
    validators = page.locator("table.validators tbody tr")
    assert validators.count() == 3
    api = page.request.get(f"/api/tasks/{demo_run.task_id}/rounds/2").json()
    assert [validators.nth(k).locator("td.distance").inner_text() for k in range(3)] == [
        str(m["distance"]) for m in api["validators"]
    ]
    sizes = page.locator("table.updates td.num").all_inner_texts()
    assert any("KiB" in s for s in sizes)
    assert "What the reasons mean" in page.locator("main").inner_text()
    shot(page, "round")

    page.locator("#aggregate").click()
    page.wait_for_url("**/lineage/Qm*")
    assert "The model of task" in page.locator("h2").first.inner_text()
    assert "verified: 2 rounds back to genesis" in page.locator("main").inner_text()
    graph = page.locator("svg.lineage-graph")
    assert graph.locator("a.node.model").count() == 3  # genesis, round 1, round 2
    assert graph.locator("a.node.update.rejected").count() == 1
    assert graph.locator("a.node.update.accepted").count() == 9
    assert graph.locator("path.edge.aggregated").count() == 9
    shot(page, "lineage")

    page.locator("details summary").first.click()
    page.locator(f'table a[href="/contributors/{demo_run.malicious}"]').first.click()
    page.wait_for_url(f"**/contributors/{demo_run.malicious}")
    main = page.locator("main").inner_text()
    assert demo_run.malicious in main
    assert "norm-outlier" in main
    assert "non-finite" in main
    # Reputation: the starting value and three settlements; rewards: nothing at the grant, then round 1 only.
    assert line_points(page, "svg.chart path.line.s1") >= 7  # a step line: 2 vertices per change
    assert page.locator("svg.chart").first.locator("circle.pt").count() == 4
    rewards = page.locator("svg.chart").nth(1)
    assert rewards.locator("circle.pt").count() == 2
    assert "round 1" in rewards.locator("circle.pt").nth(1).locator("title").text_content()
    assert "No claim yet" in page.locator("#claims").inner_text()
    assert "0 MESH claimed" in page.locator("#rewards").inner_text()
    shot(page, "contributor")
    page.goto(f"/contributors/{demo_run.contributors[0]}")
    claims = page.locator("#claims")
    assert claims.locator("table.claims tbody tr").count() == 1
    assert "0 MESH unclaimed" in page.locator("#rewards").inner_text()
    shot(page, "contributor-claimed")
    page.goto(f"/contributors/{demo_run.contributors[3]}")
    assert (
        "Scheduled: grant validator, executable by anyone from" in page.locator("#role-changes").inner_text()
    )


def test_leaderboard_ranks_and_sorts(page: Any, demo_run: DemoRun) -> None:
    page.goto("/contributors")
    rows = page.locator("table.leaderboard tbody tr")
    assert rows.count() == 5
    addresses = [a.get_attribute("title") for a in page.locator("table.leaderboard .addr").all()]
    assert set(addresses) == set(demo_run.contributors)
    assert addresses[-1] == demo_run.malicious  # fewest tokens
    assert "MESH" in rows.first.inner_text()
    claimed = [c.inner_text() for c in page.locator("table.leaderboard td.claimed").all()]
    assert claimed.count("0 MESH") == 4  # only contributor 0 claimed
    shot(page, "contributors")
    page.get_by_role("link", name="Rejected").click()
    page.wait_for_url("**sort=rejected**")
    assert page.locator("table.leaderboard .addr").first.get_attribute("title") == demo_run.malicious
    page.get_by_role("link", name="Validators", exact=True).click()
    page.wait_for_url("**role=validator**")
    titles = {a.get_attribute("title") for a in page.locator("table.leaderboard .addr").all()}
    assert titles == set(demo_run.validators)


def test_bad_input_is_a_helpful_page(page: Any, demo_run: DemoRun) -> None:
    response = page.goto("/contributors/0xZZZ")
    assert response.status == 422
    assert page.locator("h1").inner_text() == "Invalid input"
    assert "0x followed by 40 hex digits" in page.locator("main").inner_text()
    response = page.goto(f"/tasks/{demo_run.task_id}/rounds/42")
    assert response.status == 404
    assert "has no round 42" in page.locator("main").inner_text()
    shot(page, "not-found")


PAGES = ["/", "/contributors", "/round", "/lineage", "/contributor", "/api", "/missing"]


def test_a_phone_screen_has_no_horizontal_overflow(
    browser: Any, dashboard_url: str, demo_run: DemoRun
) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, base_url=dashboard_url
    )
    tab = context.new_page()
    urls = {
        "/round": f"/tasks/{demo_run.task_id}/rounds/2",
        "/contributor": f"/contributors/{demo_run.malicious}",
        "/missing": "/contributors/0x" + "12" * 20,
    }
    try:
        for name in PAGES:
            tab.goto(urls.get(name, name))
            width = tab.evaluate("document.documentElement.scrollWidth")
            inner = tab.evaluate("window.innerWidth")
            assert width <= inner, f"{name} overflows: {width} > {inner}"
            shot(tab, "phone-" + (name.strip("/") or "overview"))
    finally:
        context.close()
