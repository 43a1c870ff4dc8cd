"""Planted-bug hunts started as soon as the suite is collected, two at a time, in the background.

Most of the suite runs on one core: pytest runs one test at a time. A hunt
(`flowpace.verify.hunt`) spends its time in subprocesses that run the campaign's checks on a
patched copy, so the hunts can use the other core from the start instead of running one
after the other when ``tests/test_planted_bugs.py`` is reached. Each hunt test then waits for
its own hunt's result; what it asserts is unchanged. The hunts start slow ones first
(`flowpace.verify.hunt_schedule`). Nothing here depends on how fast the machine is: a hunt's
verdict is its derandomised search's, whenever it runs (spec VER-4).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Final

from flowpace.verify import Hunt, PlantedBug, hunt, hunt_schedule

WORKERS: Final = 2
"""Hunts run at a time: with the test process, about one more process than this machine's 2
cores, so that neither core waits while the other works."""

_pool: ThreadPoolExecutor | None = None
_hunts: dict[str, Future[Hunt]] = {}


def start(bugs: list[object], root: Path) -> None:
    """Start hunting ``bugs`` in the background (slow hunts first), unless already started."""
    global _pool  # noqa: PLW0603 - one pool per test session, made at collection time
    if _pool is not None or not bugs:
        return
    _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="planted-bug hunt")
    planted = [bug for bug in bugs if isinstance(bug, PlantedBug)]
    for bug in hunt_schedule(planted):
        _hunts[bug.name] = _pool.submit(hunt, bug, root)


def result(bug: PlantedBug, root: Path) -> Hunt:
    """Return the hunt for ``bug``: the one started in the background, else one run now."""
    future = _hunts.get(bug.name)
    return hunt(bug, root) if future is None else future.result()


def stop() -> None:
    """Cancel the hunts not yet started (the session ends early, for example with ``-x``)."""
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
