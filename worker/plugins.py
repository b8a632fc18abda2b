"""The worker's plug-ins (evaluator, reference trainer, recipe host) load through ``ledger.plugins``: one loader
for every ``MODULE:FUNCTION`` option, the audit's included."""

from ledger.plugins import load_plugin

__all__ = ["load_plugin"]
