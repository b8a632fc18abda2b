"""Plug-ins named ``MODULE:FUNCTION`` on a command line (the worker's evaluator, reference trainer and recipe host;
the audit's evaluator and recipe host): imported once at start-up, with one error naming what is wrong."""

from __future__ import annotations

import importlib
from typing import Any

from ledger.errors import ConfigError


def load_plugin(spec: str, what: str, *, example: str = "MODULE:FUNCTION") -> Any:
    """The callable ``spec`` names; ``ConfigError`` naming ``what`` (e.g. "the evaluator") otherwise."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{what} {spec!r} is not MODULE:FUNCTION", hint=f"e.g. {example}")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load {what} {spec!r}: {exc}", hint="give MODULE:FUNCTION") from None
    if not callable(fn):
        raise ConfigError(f"{what} {spec!r} is not callable")
    return fn
