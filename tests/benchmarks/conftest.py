"""Benchmarks run only when asked for: they are slow, and timing is not a pass/fail check.

A plain ``uv run pytest`` skips this directory. Name it to run the benchmarks:
``uv run pytest tests/benchmarks`` (pytest-benchmark's table), or
``uv run python tests/benchmarks/report.py`` (the ratios the implementation is held to).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

HERE = Path(__file__).resolve().parent


def named_on_the_command_line(config: pytest.Config) -> bool:
    """Return whether a command-line argument names this directory or a file in it."""
    for arg in config.args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Ignore the benchmarks unless the command line names them."""
    if HERE in collection_path.parents and not named_on_the_command_line(config):
        return True
    return None
