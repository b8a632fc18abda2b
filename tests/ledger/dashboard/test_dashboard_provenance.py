"""The model page's provenance in a real headless Chromium: the recipe (name, version, hash), the hyperparameters
and each contributor's dataset commitment, as the anchored spec and update files record them, read into the
index from a real local store by the follower; a legacy spec and content the store lacks read sensibly; the
hashes do not overflow a phone's screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.content.local_store import LocalStore
from ledger.index.content import ContentReader
from ledger.index.db import IndexDB
from ledger.privacy import Release, epsilon
from ledger.settings import Settings
from tests.ledger.audit.test_audit_provenance import (
    FRAMEWORKS,
    HYPER,
    PRIVACY,
    PRIVACY_BUDGET,
    _dataset,
    history,
)
from tests.ledger.dashboard.test_dashboard_browser import ARTIFACTS, CHROMIUM, browser
from tests.support.dashboard import LiveServer
from tests.support.index import follower_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.anvil,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make setup installs it)"
    ),
]

__all__ = ["browser", "history"]  # the two fixtures this module shares with others


@pytest.fixture(scope="module")
def served(history: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The history indexed by a follower that reads the store (as `meshprov dashboard --follow` does), served."""
    from ledger.dashboard import create_app

    url = f"sqlite:///{tmp_path_factory.mktemp('dash-provenance') / 'index.sqlite'}"
    db = IndexDB(url)
    reader = ContentReader(LocalStore(history["data_dir"] / "blocks"))
    result = follower_for(db, history["c"], content=reader).sync()
    assert result.content_read == 2 + 8  # tasks 1-2's specs, their 8 updates (task 3's are not in the store)
    reader.close()
    db.dispose()
    settings = Settings(data_dir=history["data_dir"], index_url=url)  # the privacy report reads the budget
    app = create_app(url, store=LocalStore(history["data_dir"] / "blocks"), settings=settings)
    with LiveServer(app) as server:
        yield server.url


@pytest.fixture
def page(browser: Any, served: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=served)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert errors == []


def test_the_model_page_shows_recipe_hyperparameters_and_dataset_commitments(page: Any, history: Any) -> None:
    c = history["c"]
    cids, aggregate, _ = history["t1"]
    page.goto(f"/lineage/{aggregate}")
    made = page.locator("#provenance-0")
    recipe = history["spec"].recipe
    assert made.locator("td.recipe").inner_text() == f"{recipe.name} {recipe.version} {recipe.cid}"
    assert made.locator("td.hyperparameters").inner_text() == ", ".join(
        f"{k}={v}" for k, v in sorted(HYPER.items())
    )
    assert history["spec_cid"] in made.locator("table.made-by").inner_html()
    assert "Contributors' data in round 1" in made.inner_text()
    for i, (address, _) in enumerate(c.contributors):
        row = made.locator(f"#dataset-0-{i}")
        assert row.locator(".addr").first.get_attribute("title") == address
        assert row.locator("td.dataset").inner_text() == (_dataset(i) or "none committed")
        assert row.locator("td.frameworks").inner_text() == ", ".join(
            f"{k} {v}" for k, v in sorted(FRAMEWORKS.items())
        )
    assert "rejected" in made.locator("#dataset-0-1").inner_text()
    api = page.request.get(f"/api/lineage/{aggregate}").json()["lineages"][0]
    assert api["recipe"]["cid"] == recipe.cid
    assert api["recipe"]["hyperparameters"] == HYPER
    assert [u["dataset"] for u in api["rounds"][0]["updates"]] == [_dataset(i) for i in range(4)]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lineage-provenance.png"), full_page=True)

    page.goto(f"/lineage/{cids[2]}")  # an update's page: its own commitment
    made = page.locator("#provenance-0")
    assert "The contributor's data" in made.inner_text()
    assert made.locator("td.dataset").inner_text() == _dataset(2)


def test_a_legacy_spec_and_missing_content_read_sensibly(page: Any, history: Any) -> None:
    _, aggregate, _ = history["t2"]
    page.goto(f"/lineage/{aggregate}")
    made = page.locator("#provenance-0")
    assert made.locator("td.recipe").inner_text().startswith("none (legacy spec")
    assert made.locator("td.hyperparameters").count() == 0
    assert made.locator("td.dataset").all_inner_texts() == ["none committed"] * 4
    page.goto(f"/lineage/{history['t3_aggregate']}")
    made = page.locator("#provenance-0")
    assert made.locator("td.recipe").inner_text() == (
        "unknown (the specification was not read from the content store)"
    )
    assert set(made.locator("td.dataset").all_inner_texts()) == {"unknown (update not in the content store)"}


def test_the_hashes_do_not_overflow_a_phone(browser: Any, served: str, history: Any) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, base_url=served
    )
    tab = context.new_page()
    try:
        tab.goto(f"/lineage/{history['t1'][1]}")
        assert tab.locator("td.dataset").count() == 4
        pages = [f"/lineage/{history['t1'][1]}", f"/taint/{history['t1'][0][0]}"]
        pages.append(f"/taint/{history['c'].contributors[0][0]}")
        for url in pages:
            tab.goto(url)
            width = tab.evaluate("document.documentElement.scrollWidth")
            inner = tab.evaluate("window.innerWidth")
            assert width <= inner, f"{url} overflows: {width} > {inner}"
    finally:
        context.close()


def test_taint_pages_list_the_models_that_carry_an_update_or_a_member(page: Any, history: Any) -> None:
    c = history["c"]
    cids, aggregate, _ = history["t1"]
    page.goto(f"/lineage/{cids[0]}")
    page.locator("a.taint").click()
    page.wait_for_url(f"**/taint/{cids[0]}")
    rows = page.locator("table.carriers tbody tr")
    assert rows.count() == 1  # task 1 has one round: its aggregate carries the update, depth 0
    assert rows.first.locator(".cid").get_attribute("title") == aggregate
    assert rows.first.locator("td.num").inner_text() == "0"
    assert "still carries it" in page.locator("#latest-1").inner_text()
    assert page.locator("td.revocation").inner_text() == "not checked"  # the dashboard reads no chain
    assert "revocations (protocol R8) were not checked" in page.locator("ul.notes").inner_text()
    page.goto(f"/taint/{cids[1]}")  # the rejected update: nothing carries it
    assert page.locator("table.carriers").count() == 0
    assert "no accepted update" in page.locator("main").inner_text()
    member = c.contributors[0][0]
    page.goto(f"/contributors/{member}")
    page.locator("a.taint").click()
    page.wait_for_url(f"**/taint/{member}")
    # Member 0's update was accepted in task 1 and task 2 (task 3's round accepted everyone's stand-ins too).
    carried = page.locator("table.carriers tbody tr .cid").evaluate_all("els => els.map(e => e.title)")
    assert history["t1"][1] in carried
    assert history["t2"][1] in carried
    assert history["t3_aggregate"] in carried


def test_the_privacy_page_composes_each_members_releases_against_the_budget(page: Any, history: Any) -> None:
    c = history["c"]
    _, aggregate, _ = history["t1"]
    page.goto(f"/lineage/{aggregate}")
    page.locator("a.privacy").click()
    page.wait_for_url("**/tasks/1/privacy")
    assert f"ε ≤ {PRIVACY_BUDGET}" in page.locator("#budget").inner_text()
    expected, _ = epsilon([Release.from_record(PRIVACY)], 1e-5)
    for i, (address, _) in enumerate(c.contributors):
        row = page.locator(f"#member-{address}")
        if i == 3:  # published an update without a privacy record: no bound, so over any budget
            assert row.locator("td.epsilon").inner_text() == "–"
            assert row.locator("td.status").inner_text().startswith("over budget")
        else:
            assert row.locator("td.epsilon").inner_text() == f"{expected:.3f}"
            assert row.locator("td.status").inner_text() == "within budget"
    page.goto("/tasks/2/privacy")  # the legacy spec anchors no budget, its updates carry no records
    assert "anchors no privacy budget" in page.locator("#budget").inner_text()
    assert page.locator("td.status").all_inner_texts()[0].startswith("unbounded")


def test_with_a_chain_configured_the_taint_page_reads_the_revocations(
    browser: Any, history: Any, anvil: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same index served with the chain in its settings: the taint page asks the Revocations contract (R8)
    instead of saying "not checked"; nothing is revoked in this history. One chain client serves every page."""
    from ledger.chain.client import LedgerClient
    from ledger.dashboard import create_app

    made: list[object] = []
    real = LedgerClient.from_settings.__func__  # type: ignore[attr-defined]

    def counted(cls: type[LedgerClient], *args: Any, **kwargs: Any) -> LedgerClient:
        client: LedgerClient = real(cls, *args, **kwargs)
        made.append(client)
        return client

    monkeypatch.setattr(LedgerClient, "from_settings", classmethod(counted))

    url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    db = IndexDB(url)
    follower_for(db, history["c"]).sync()
    db.dispose()
    settings = Settings(data_dir=history["data_dir"], index_url=url, chain_rpc_url=anvil.rpc_url)
    app = create_app(url, store=LocalStore(history["data_dir"] / "blocks"), settings=settings)
    cids, _, _ = history["t1"]
    with LiveServer(app) as server:
        context = browser.new_context(base_url=server.url)
        try:
            tab = context.new_page()
            for cid in cids[:2]:
                tab.goto(f"/taint/{cid}")
                assert tab.locator("td.revocation").first.inner_text() == "not revoked"
                assert "were not checked" not in tab.locator("main").inner_text()
            assert len(made) == 1
        finally:
            context.close()
