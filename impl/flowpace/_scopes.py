"""The scope context managers, shared by the controller and the trace recorder (spec FC-11).

Both offer the counted scope operations (``enter_teardown_bypass`` ...); a ``with`` form
opens one for the body of the statement and closes it however the body ends. Defining the
two forms once keeps the recorder's scopes the controller's, call for call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class _CountedScopes(Protocol):
    """What the ``with`` forms are built on: the counted scope operations of FC-11."""

    def enter_teardown_bypass(self) -> None: ...

    def leave_teardown_bypass(self) -> None: ...

    def enter_arena_starving(self) -> None: ...

    def leave_arena_starving(self) -> None: ...


class ScopeContexts:
    """The ``with`` forms of the two scopes, for a class with the counted operations."""

    __slots__ = ()  # adds no field: the controller keeps its fixed layout

    @contextmanager
    def teardown_bypass(self: _CountedScopes) -> Iterator[None]:
        """Hold a teardown scope open for the body of a ``with`` statement (spec FC-11)."""
        self.enter_teardown_bypass()
        try:
            yield
        finally:
            self.leave_teardown_bypass()

    @contextmanager
    def arena_starving(self: _CountedScopes) -> Iterator[None]:
        """Hold an arena-starvation scope open for the body of a ``with`` (spec FC-11)."""
        self.enter_arena_starving()
        try:
            yield
        finally:
            self.leave_arena_starving()
