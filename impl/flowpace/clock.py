"""Where the controller gets its time and how it sleeps: an injectable clock.

The controller reads time only through `Clock.monotonic_ns` and sleeps only through
`Clock.sleep_ns` (or, in its async variants, an injected async sleep). The default is the
system's monotonic clock. A deterministic clock for tests and replays is
`flowpace.testing.ManualClock`.

An injected clock is checked where it enters (spec HARD-3): `checked_clock` refuses, at
construction, an object without the two methods, and `reader_of` returns the function the
controller reads time with, which, for any clock but the default one, checks every reading.
"""

from __future__ import annotations

import asyncio
import operator
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, TypeAlias

from flowpace._rules import shown

_NANOS_PER_SECOND: Final = 1_000_000_000

TIME_LIMIT_NS: Final = 2**64 * _NANOS_PER_SECOND
"""
One past the latest clock reading a controller accepts, ns (spec HARD-3).

The seed's times are ``Instant`` values, its clock's start plus a Rust ``Duration`` (up to
``u64::MAX`` seconds); readings are nanoseconds since the clock's start within that.
"""


class Clock(Protocol):
    """A monotonic clock in integer nanoseconds that can also put the calling thread to sleep."""

    def monotonic_ns(self) -> int:
        """Return the current time, nanoseconds; it never decreases."""
        ...

    def sleep_ns(self, duration_ns: int) -> None:
        """Block the calling thread for ``duration_ns`` nanoseconds (a positive integer)."""
        ...


Nanoseconds: TypeAlias = int
"""A duration in integer nanoseconds: the one unit every controller form takes and returns (spec
HARD-13)."""

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

    def wait_until_ns(self, condition: threading.Condition, deadline_ns: int) -> None:
        """
        Wait on ``condition`` (its lock held) until notified or until ``deadline_ns``.

        Spec EXT-7: an optional clock method; a blocked write waits through it, so a test
        clock can drive the wait. May return early: the caller checks what it waits for.
        """
        remaining = deadline_ns - time.monotonic_ns()
        if remaining > 0:
            condition.wait(remaining / _NANOS_PER_SECOND)


SYSTEM_CLOCK: Final = SystemClock()
"""The clock a controller uses unless it is given another."""


async def asyncio_sleep_ns(duration_ns: int) -> None:
    """Await `asyncio.sleep` for ``duration_ns`` nanoseconds (the default async sleep)."""
    await asyncio.sleep(duration_ns / _NANOS_PER_SECOND)


def checked_clock(clock: object) -> Clock:
    """Return ``clock`` if it has callable ``monotonic_ns`` and ``sleep_ns``; else TypeError."""
    # spec HARD-3: refused at construction, not at the first read or sleep, after a reservation.
    for method in ("monotonic_ns", "sleep_ns"):
        if not callable(getattr(clock, method, None)):
            raise TypeError(
                f"clock must be a flowpace.Clock (with monotonic_ns() and sleep_ns()), "
                f"got {shown(clock)}: it has no callable {method}"
            )
    return clock  # type: ignore[return-value]  # checked structurally just above


def checked_async_sleep(async_sleep: object) -> AsyncSleep:
    """Return ``async_sleep`` if it is callable; else TypeError naming it (spec HARD-3)."""
    if not callable(async_sleep):
        raise TypeError(
            f"async_sleep must be a callable taking nanoseconds and returning an awaitable, "
            f"got {shown(async_sleep)}"
        )
    return async_sleep  # callable; its awaitable is checked when awaited


def reader_of(clock: Clock) -> Callable[[], int]:
    """
    Return the function that reads ``clock`` for a controller (spec HARD-3).

    For the default `SystemClock` it is `time.monotonic_ns` itself: no indirection, no check
    (its readings are ints by construction). For any other clock every reading is checked
    before the controller uses it: a plain `int` passes at the cost of one type test and one
    range test; an `int` subclass is converted once, by `operator.index`; anything else
    (float nanoseconds, seconds from `time.monotonic`, None, a string, a bool, a numpy value)
    is a TypeError, and an int outside ``[0, TIME_LIMIT_NS)`` a ValueError, each naming the
    clock.
    The controller reads the clock before it takes its state lock, so a rejected reading
    changes nothing.
    """
    if type(clock) is SystemClock:
        return time.monotonic_ns
    read = clock.monotonic_ns

    def checked_reading() -> int:
        reading = read()
        if type(reading) is int and 0 <= reading < TIME_LIMIT_NS:
            return reading
        return _checked_reading(clock, reading)

    return checked_reading


def _checked_reading(clock: Clock, reading: object) -> int:
    """Return ``reading`` as a plain int in ``[0, TIME_LIMIT_NS)``; else raise, naming ``clock``."""
    if isinstance(reading, bool) or not isinstance(reading, int):
        raise TypeError(
            f"clock {shown(clock)}: monotonic_ns() must return an int of nanoseconds, "
            f"got {shown(reading)}"
        )
    exact = operator.index(reading)
    if not 0 <= exact < TIME_LIMIT_NS:
        raise ValueError(
            f"clock {shown(clock)}: monotonic_ns() must return nanoseconds in "
            f"[0, 2**64 * 10**9), got {shown(exact)}"
        )
    return exact
