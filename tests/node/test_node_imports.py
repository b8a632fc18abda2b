"""The node's training code stays free of the chain, the store and the broker, and `import node` stays cheap."""

from __future__ import annotations

import subprocess
import sys

MODULES = ["models", "data", "training", "privacy", "behaviours", "errors"]


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_training_modules_import_no_chain_store_or_celery() -> None:
    loaded = _loaded_after("; ".join(f"import node.{m}" for m in MODULES))
    assert "node.training" in loaded
    forbidden = {"celery", "web3", "redis", "ledger.chain", "ledger.content", "ledger.updatefile", "opacus"}
    assert not forbidden & loaded  # opacus too: it is imported only when ε is computed


def test_importing_the_package_does_not_import_torch() -> None:
    loaded = _loaded_after("import node")
    assert "torch" not in loaded
