"""The result of a run: Peace's `CmdOutcome`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class OutcomeKind(enum.StrEnum):
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Outcome:
    """Which steps were processed (succeeded) and which were not.

    The two lists partition the command's steps, in definition order.
    `errors` maps a failed step's id to its message.
    """

    kind: OutcomeKind
    steps_processed: tuple[str, ...]
    steps_not_processed: tuple[str, ...]
    errors: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "kind": str(self.kind),
            "steps_processed": list(self.steps_processed),
            "steps_not_processed": list(self.steps_not_processed),
            "errors": dict(self.errors),
        }
