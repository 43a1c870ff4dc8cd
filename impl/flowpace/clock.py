"""Where the controller gets its time and how it sleeps: an injectable clock.

The controller reads time only through `Clock.monotonic_ns` and sleeps only through
`Clock.sleep_ns` (or, in its async variants, an injected async sleep). The default is the
system's monotonic clock. A deterministic clock for tests and replays is
`flowpace.testing.ManualClock`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, TypeAlias

_NANOS_PER_SECOND: Final = 1_000_000_000


class Clock(Protocol):
    """A monotonic clock in integer nanoseconds that can also put the calling thread to sleep."""

    def monotonic_ns(self) -> int:
        """Return the current time, nanoseconds; it never decreases."""
        ...

    def sleep_ns(self, duration_ns: int) -> None:
        """Block the calling thread for ``duration_ns`` nanoseconds (a positive integer)."""
        ...


AsyncSleep: TypeAlias = Callable[[int], Awaitable[None]]
"""Awaits a duration in nanoseconds without blocking the event loop's thread."""


class SystemClock:
    """The system's monotonic clock: `time.monotonic_ns` and `time.sleep` (the default)."""

    __slots__ = ()

    def monotonic_ns(self) -> int:
        """Return `time.monotonic_ns`."""
        return time.monotonic_ns()

    def sleep_ns(self, duration_ns: int) -> None:
        """Sleep with `time.sleep` for ``duration_ns`` nanoseconds."""
        time.sleep(duration_ns / _NANOS_PER_SECOND)


SYSTEM_CLOCK: Final = SystemClock()
"""The clock a controller uses unless it is given another."""


async def asyncio_sleep_ns(duration_ns: int) -> None:
    """Await `asyncio.sleep` for ``duration_ns`` nanoseconds (the default async sleep)."""
    await asyncio.sleep(duration_ns / _NANOS_PER_SECOND)
