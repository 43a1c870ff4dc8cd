"""The controller's locks, their order, and the hook that lets a test replace them.

A `FlowController` uses exactly two locks, created once each, in this order, at construction:

1. ``"pacing"``: serialises blocking flushers (spec FC-10, DIV-6). A flusher holds it from the
   moment it decides to pace until it has committed the new deadline, *across* its pacing sleep,
   as the seed holds its ``next_flush_at`` mutex. Nothing but `FlowController.before_flush`
   takes it; foreground writers, enqueuers and the other task operations never do.
2. ``"state"``: guards every field of the controller's state and of its tasks. It is held only
   for plain integer arithmetic: no clock read, no sleep, no observer call, no lock acquisition
   happens while it is held.

**Lock order.** ``"pacing"`` may be held while ``"state"`` is acquired; never the reverse. No
other nesting exists, so no cycle, hence no deadlock, is possible by construction. Every
observer call is made after both locks are released.

**The test hook.** A controller (and a `flowpace.testing.ManualClock`) built inside ``with
lock_factory(factory):`` (exported as `flowpace.testing.lock_factory`) makes its locks with
``factory``, a callable that receives a lock's name (``"pacing"`` or ``"state"``) and returns a
`LockLike`; the default returns a fresh `threading.Lock`. The factory is called exactly once per
name, pacing first. A deterministic thread scheduler can hand out cooperative locks here and so
learn of, and choose at, every point where a thread takes or releases a lock. Clock reads and
sleeps go through the injected clock only (`flowpace.clock.Clock`), so the scheduler can
intercept those too. The controller only uses a lock as a context manager (``with lock:``);
`acquire` and `release` are part of the protocol so that a plain `threading.Lock` and test
doubles fit it alike.

**Fork.** In a child made by `os.fork` the factory is called again, once per name, pacing first,
for every controller alive (spec HARD-6): a lock held by a parent's thread at the fork would
otherwise never be released in the child.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Final, Protocol, TypeAlias


class LockLike(Protocol):
    """A mutual-exclusion lock: `threading.Lock` or a test's cooperative stand-in."""

    def acquire(self) -> bool:
        """Block until the lock is held by the caller; return True."""
        ...

    def release(self) -> None:
        """Release the lock the caller holds."""
        ...

    def __enter__(self) -> object:
        """Acquire the lock."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> bool | None:
        """Release the lock; never suppress an exception."""
        ...


LockFactory: TypeAlias = Callable[[str], LockLike]
"""Makes the lock of a given name (``"pacing"`` or ``"state"``)."""

PACING_LOCK: Final = "pacing"
"""The name of the lock that serialises blocking flushers; taken before the state lock."""

STATE_LOCK: Final = "state"
"""The name of the lock that guards the controller's and its tasks' state; taken last."""

LOCK_ORDER: Final = (PACING_LOCK, STATE_LOCK)
"""Lock names in acquisition order: a thread holding one may only take those after it."""


def thread_lock(name: str) -> LockLike:
    """Return a fresh `threading.Lock`; ``name`` is ignored (the default lock factory)."""
    del name
    return threading.Lock()


_LOCK_FACTORY: Final[ContextVar[LockFactory]] = ContextVar("flowpace_lock_factory")
"""The factory controllers built in this context use; unset: `thread_lock`."""


def current_lock_factory() -> LockFactory:
    """Return the lock factory a controller built now uses (the test hook, else the default)."""
    return _LOCK_FACTORY.get(thread_lock)


@contextmanager
def lock_factory(factory: LockFactory) -> Iterator[None]:
    """Make the controllers and manual clocks built in the body take locks from ``factory``."""
    token = _LOCK_FACTORY.set(factory)
    try:
        yield
    finally:
        _LOCK_FACTORY.reset(token)
