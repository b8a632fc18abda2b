"""Fixtures and helpers the tests share; loaded as pytest plugins by tests/conftest.py."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository's root directory."""
