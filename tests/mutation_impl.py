"""The implementation's mutants that were read and found to change nothing the tests can pin.

`tests/mutation.py --target impl` does not run these again unless ``--all`` is given: each
would cost a full run of its tests (about a minute) to survive once more. A review holds only
while the mutated function is the one that was read: mutmut hashes each function's source
(`FUNCTION_HASHES`, mutmut 3.8.1), and a mutant of a function whose hash has changed runs as
any other, so an edit to a function puts its mutants back in front of a reader.

Two verdicts:

- ``equivalent``: no caller can observe the change (the reason says why);
- ``unspecified``: the change is observable, but only in text the specification does not fix
  (an error message's words around what ERR-1, ERR-2, ERR-3 and CFG-3 require it to name). A
  test could pin that text only by copying it from the implementation; the specification
  would first have to say more (for instance that ERR-2's message names the operation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

EQUIVALENT: Final = "equivalent"
UNSPECIFIED: Final = "unspecified"


@dataclass(frozen=True, slots=True)
class Review:
    """Mutants read together, the verdict on them and why."""

    verdict: str
    """`EQUIVALENT` or `UNSPECIFIED`."""
    reason: str
    """Why the mutants change nothing a test can pin."""
    mutants: tuple[tuple[str, tuple[int, ...]], ...]
    """Per mutated function (module and mutmut's mangled name), the mutants' numbers."""


CONTROLLER = "controller.xǁFlowControllerǁ"
"""The prefix of a `FlowController` method's mangled name."""

FUNCTION_HASHES: Final = {
    "_rules.x_flush_decision": "c4ab5af3a679",
    "_rules.x_foreground_delay_us": "8c72ad5e220a",
    "_rules.x_milli_units": "421d1d88c431",
    "_rules.x_pacing_sleep_ns": "bae89bcd4990",
    "_rules.x_publish_guard_pct": "2d75feffd4ba",
    "_rules.x_quiet_debt_limit": "95be9570368b",
    "_rules.x_tuning_of": "8c6b6fe74300",
    "controller.x__raise_misuse": "97c05b0ddb2e",
    "controller.xǁFlowTaskǁ__init__": "994357046d96",
    "controller.xǁFlowTaskǁmark_force_bypass": "f3bdc1d04f54",
    "controller.xǁFlowTaskǁmark_outcome": "361a7749c3b6",
    f"{CONTROLLER}__init__": "fec3bcf86275",
    f"{CONTROLLER}_check_task_type": "ab099230d7b5",
    f"{CONTROLLER}_foreground_delay_us": "681cc85d7e22",
    f"{CONTROLLER}_read_flush_view": "f8dd46978db6",
    f"{CONTROLLER}_reserve_flush": "f801a946b94a",
    f"{CONTROLLER}before_flush": "bfa475df5394",
    f"{CONTROLLER}before_foreground_write": "49b405c0a872",
    f"{CONTROLLER}enter_arena_starving": "a81b0345a242",
    f"{CONTROLLER}enter_teardown_bypass": "bbfb06e0703f",
    f"{CONTROLLER}on_enqueue_est": "958f43557e45",
    f"{CONTROLLER}on_io_built": "6f1c7169a2f9",
    f"{CONTROLLER}on_mark_done": "bb7f3338330f",
}
"""mutmut's hash of each reviewed function's source when it was read."""

REVIEWS: Final = (
    Review(
        EQUIVALENT,
        "A guard repeated by the caller or the callee: the controller returns 0 for a 0-byte "
        "write or with backpressure off before it calls the rule (foreground_delay_us 1, 2), "
        "and the rule returns 0 for both itself (_foreground_delay_us 8); every caller returns "
        "for a zero debt before converting it to milli-units (milli_units 3).",
        (
            ("_rules.x_foreground_delay_us", (1, 2)),
            (f"{CONTROLLER}_foreground_delay_us", (8,)),
            ("_rules.x_milli_units", (3,)),
        ),
    ),
    Review(
        EQUIVALENT,
        "The pacing interval returned with a decision other than PACED is never read.",
        (("_rules.x_flush_decision", (2, 6, 9, 12, 14, 20)),),
    ),
    Review(
        EQUIVALENT,
        "A comparison moved across equality where both branches give the equal case the same "
        "value: the guard is 100 % when e2e equals io, or io is 1 (publish_guard_pct 4, 7, as "
        "in the model's run); a deadline equal to now sleeps 0 (pacing_sleep_ns 3); a time "
        "equal to the latest applied, a deadline equal to now, a clamp at exactly U64_MAX, a "
        "floor raised to itself, a debt of exactly 0 set to 0.",
        (
            ("_rules.x_publish_guard_pct", (4, 7)),
            ("_rules.x_pacing_sleep_ns", (3,)),
            (f"{CONTROLLER}before_flush", (45, 51)),
            (f"{CONTROLLER}_read_flush_view", (6,)),
            (f"{CONTROLLER}on_enqueue_est", (41,)),
            (f"{CONTROLLER}on_mark_done", (16, 44, 52, 69)),
            (f"{CONTROLLER}on_io_built", (30, 41, 72, 73, 96)),
        ),
    ),
    Review(
        EQUIVALENT,
        "A debt of 1 or 2 milli-units compares alike with every threshold (all are whole units, "
        "at least 1 000), and only a debt at or above one reaches the ratio of FC-7.",
        (("_rules.x_milli_units", (14,)),),
    ),
    Review(
        EQUIVALENT,
        "A fast path made narrower: an argument or a debt the mutant sends to the full path "
        "gets the same answer there (the unmutated argument check, the unmutated delay rule), "
        "only slower. The argument checks of on_enqueue_est, on_io_built and "
        "before_foreground_write; the quiet-debt flag and limits of the foreground fast path.",
        (
            (f"{CONTROLLER}before_foreground_write", (3, 5, 6, 7)),
            (f"{CONTROLLER}on_enqueue_est", (2, 5, 6, 7, 50, 51)),
            (f"{CONTROLLER}on_io_built", (5, 8, 9, 10, 19, 22, 23, 110, 111)),
            (f"{CONTROLLER}on_mark_done", (73, 74)),
            (f"{CONTROLLER}__init__", (43, 44)),
            ("_rules.x_quiet_debt_limit", (8,)),
            ("_rules.x_tuning_of", (52, 58, 63)),
        ),
    ),
    Review(
        EQUIVALENT,
        "Dead or unreachable: before_flush's initial sleep is overwritten before it is read "
        "(16, 17); on_io_built's sample marker is only compared with 0 (45); its clamp of a "
        "negative debt cannot run, since the debt holds the task's estimate (INV-1) (74, 75); "
        "a flush with pacing off compares -1 or -2 with a time applied, never negative (5).",
        (
            (f"{CONTROLLER}before_flush", (16, 17)),
            (f"{CONTROLLER}on_io_built", (45, 74, 75)),
            (f"{CONTROLLER}_read_flush_view", (5,)),
        ),
    ),
    Review(
        EQUIVALENT,
        "A flush with pacing off reads the clock: it raises the latest time applied to a "
        "reading of a monotonic clock, which every later reading reaches anyway (DIV-6's "
        "max(reading, latest applied)); only a clock that goes backwards could tell.",
        ((f"{CONTROLLER}_read_flush_view", (3,)),),
    ),
    Review(
        EQUIVALENT,
        "A reservation based on max(deadline, now - sleep): whenever it sleeps, the sleep is at "
        "most deadline - now, so both bases are the deadline; without a sleep both are now.",
        ((f"{CONTROLLER}_reserve_flush", (29,)),),
    ),
    Review(
        EQUIVALENT,
        "The system clock read through SystemClock.monotonic_ns, which is time.monotonic_ns.",
        ((f"{CONTROLLER}__init__", (11, 13)),),
    ),
    Review(
        EQUIVALENT,
        "The task passed to _raise_done, which deletes it unread.",
        (
            ("controller.x__raise_misuse", (3,)),
            ("controller.xǁFlowTaskǁmark_force_bypass", (1,)),
            ("controller.xǁFlowTaskǁmark_outcome", (4,)),
        ),
    ),
    Review(
        UNSPECIFIED,
        "The operation, the counter or the increment an overflow message shows: ERR-2 requires "
        "the message to name u64::MAX, which every mutant keeps.",
        (
            (f"{CONTROLLER}enter_arena_starving", (2, 3, 4, 8, 9, 10)),
            (f"{CONTROLLER}enter_teardown_bypass", (2, 3, 4, 8, 9, 10)),
            (f"{CONTROLLER}on_enqueue_est", (33, 34, 35, 39, 40)),
            (f"{CONTROLLER}on_io_built", (63, 64, 65, 69, 70, 71)),
        ),
    ),
    Review(
        UNSPECIFIED,
        "The value a TypeError for a task argument that is not a FlowTask shows: ERR-3 lists "
        "the arguments whose messages show the value, and the task is not one of them.",
        (
            (f"{CONTROLLER}_check_task_type", (3,)),
            (f"{CONTROLLER}on_io_built", (3,)),
            (f"{CONTROLLER}on_mark_done", (3,)),
        ),
    ),
    Review(
        UNSPECIFIED,
        "The words of the TypeError that FlowTask() raises: a task is made by its controller, "
        "and the specification does not word the refusal.",
        (("controller.xǁFlowTaskǁ__init__", (2, 3)),),
    ),
    Review(
        UNSPECIFIED,
        "The operation a second on_mark_done names: the message still names on_mark_done "
        "('... (on_mark_done already settled it)') and says why, all ERR-1 requires.",
        ((f"{CONTROLLER}on_mark_done", (10, 14, 15)),),
    ),
)
"""Every review of the implementation's mutants."""


def reviewed() -> dict[str, tuple[Review, str]]:
    """Return each reviewed mutant's mutmut name with its review and its function's hash then."""
    return {
        f"flowpace.{function}__mutmut_{number}": (review, FUNCTION_HASHES[function])
        for review in REVIEWS
        for function, numbers in review.mutants
        for number in numbers
    }
