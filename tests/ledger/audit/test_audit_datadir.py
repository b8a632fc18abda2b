"""After a demo stops, `meshprov audit` on its data directory restarts the embedded anvil from its saved state
and answers: nothing but the data directory is needed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ledger.chain.client import connect_web3
from ledger.cli.app import main
from ledger.dev.services import DevServices
from ledger.exit_codes import ExitCode
from ledger.settings import Settings
from tests.support.chain import Consortium

pytestmark = [
    pytest.mark.anvil,
    pytest.mark.slow,
]


def test_audit_restarts_the_embedded_chain_of_a_stopped_demo(
    tmp_path: Path,
    dev_keys: list[tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in list(os.environ):
        if name.startswith("MESHPROV_"):
            monkeypatch.delenv(name)
    settings = Settings(data_dir=tmp_path)
    services = DevServices(settings)
    try:
        url = services.up(("anvil",))["anvil"].url
        c = Consortium.deploy(connect_web3(url), dev_keys, validators=2, contributors=2, quorum=1)
        task_id = c.task_id
        record = c.run_round(task_id)
        c.record.write(tmp_path / "deployment.json")
        assert services.down() == ["anvil"]  # anvil writes its state on SIGTERM

        capsys.readouterr()
        code = main(
            ["--data-dir", str(tmp_path), "audit", "lineage", "--json", "0x" + record.aggregate.hex()]
        )
        out = capsys.readouterr()
        assert code == ExitCode.OK, out.err
        data = json.loads(out.out)
        assert data["verified"] is True
        assert data["lineages"][0]["depth"] == 1
        assert services.status()["anvil"]["answering"]  # restarted from the saved state
    finally:
        services.down()
