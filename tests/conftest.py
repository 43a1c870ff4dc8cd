"""Test configuration shared by every test module: Hypothesis profiles and markers.

Profiles, registered once here:

- ``dev``: fast, the default on a workstation.
- ``ci``: Hypothesis's built-in profile (derandomized, no example database, ``print_blob``),
  which Hypothesis loads by itself when it detects CI; re-registered here with a modest
  ``max_examples`` so that CI stays fast.
- ``nightly``: long campaigns, at least 2 000 examples and 100 steps per state machine run.
- ``crosshair``: symbolic execution through hypothesis-crosshair, for the reference model's
  property tests only; tests marked ``no_crosshair`` skip themselves under it.

Selection: the ``HYPOTHESIS_PROFILE`` environment variable wins; otherwise ``ci`` if Hypothesis
detected CI (the ``CI`` variable, among others); otherwise ``dev``. ``pytest
--hypothesis-profile=NAME`` (Hypothesis's own pytest option) overrides all of these, because
Hypothesis's plugin loads it after this module has run.
"""

from __future__ import annotations

import os
import sys
from typing import Final

import pytest
from hypothesis import HealthCheck, settings

SPEED_INDEPENDENT: Final = settings(deadline=None, suppress_health_check=(HealthCheck.too_slow,))
"""What every profile sets so that no verdict depends on how fast the machine is.

The deadline and the ``too_slow`` health check both time examples in wall-clock seconds: on a
shared, loaded core they fail tests that are correct (a planted-bug hunt once ended "failed
without a falsifying example" that way). Hypothesis's own ``ci`` profile already sets both.
Runaway tests are caught by pytest's faulthandler_timeout instead, which only reports.
"""

settings.register_profile("dev", SPEED_INDEPENDENT, max_examples=50)

settings.register_profile("ci", settings.get_profile("ci"), max_examples=200)

settings.register_profile(
    "nightly",
    SPEED_INDEPENDENT,
    max_examples=2_000,
    stateful_step_count=100,
)

settings.register_profile(
    "crosshair",
    backend="crosshair",
    max_examples=20,
    deadline=None,
    suppress_health_check=(HealthCheck.too_slow, HealthCheck.filter_too_much),
    report_multiple_bugs=False,
)

PROFILE_ENV = "HYPOTHESIS_PROFILE"
"""The environment variable that names the profile to load."""


def chosen_profile() -> str:
    """Return the profile to load: the environment's choice, else ``ci`` on CI, else ``dev``."""
    named = os.environ.get(PROFILE_ENV)
    if named:
        return named
    # Hypothesis loads its built-in "ci" profile at import when it detects CI; keep it then.
    if settings.get_current_profile_name() == "ci" or "CI" in os.environ:
        return "ci"
    return "dev"


settings.load_profile(chosen_profile())


def pytest_configure(config: pytest.Config) -> None:
    """Register this suite's markers (pytest runs in strict mode)."""
    config.addinivalue_line(
        "markers",
        "no_crosshair(reason): skip under the crosshair backend (threads, state machines, "
        "long sequences: crosshair is not thread safe and is for the model's properties only)",
    )


def crosshair_active() -> bool:
    """Return whether Hypothesis runs on the crosshair backend (profile or command line)."""
    return settings.get_current_profile_name() == "crosshair" or settings().backend == "crosshair"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a test marked ``no_crosshair`` when the crosshair backend is active."""
    marker = item.get_closest_marker("no_crosshair")
    if marker is not None and crosshair_active():
        reason = marker.kwargs.get("reason") or (
            marker.args[0] if marker.args else "crosshair is not thread safe"
        )
        pytest.skip(str(reason))


HUNT_TEST: Final = "test_the_campaign_finds_the_planted_bug"
"""The parametrised test of ``tests/test_planted_bugs.py`` that hunts one planted bug."""


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the selected planted-bug hunts in the background (see ``tests/planted_hunts.py``)."""
    selected = [
        item.callspec.params["bug"]
        for item in session.items
        if isinstance(item, pytest.Function)
        and item.originalname == HUNT_TEST
        and hasattr(item, "callspec")
    ]
    if not selected:
        return  # the campaign shipped in a package has no hunt test, nor planted_hunts.py
    import planted_hunts  # noqa: PLC0415 - only when hunts were collected
    from flowpace.verify import planted_bug  # noqa: PLC0415 - as above

    # Inside a hunt (a patched copy's own run) hunting again would recurse: the test skips.
    if planted_bug() is None and not crosshair_active():
        planted_hunts.start(selected, session.config.rootpath)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Cancel the background hunts that have not started, if any were."""
    del session
    hunts = sys.modules.get("planted_hunts")
    if hunts is not None:
        hunts.stop()
