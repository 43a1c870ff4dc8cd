"""The ratio benchmark's children run from a snapshot of the sources: it must hold what they import.

`tests/benchmarks/ratios.py` measures each workload in processes started with ``-S`` from a copy
of the sources (`snapshot_sources`), so a module the children import and the copy lacks fails
only there, when the benchmark is run. Its timed child once imported ``report.py``'s timing
helper from a copy that did not hold it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks import ratios

REPO = Path(__file__).resolve().parents[1]


def test_the_timed_child_runs_from_its_snapshot(tmp_path: Path) -> None:
    script = ratios.snapshot_sources(REPO, tmp_path)
    # One round of each timing: the figures do not matter here, only that every import resolves.
    timed = json.loads(
        ratios.run_child(ratios.child_command(sys.executable, script, "timing", "1", "1"))
    )
    assert {"fast", "lifecycle", "threads", "threads_control"} <= set(timed)
    assert all(value > 0 for value in timed.values())
