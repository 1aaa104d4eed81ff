"""What a job that writes activities did: JobResult's counts and the first failed items,
kept in the job's checkpoint so a re-run goes on counting where it stopped."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Self

# Job.failed_items keeps the first ones; `failed` counts them all.
MAX_FAILED_ITEMS = 100


@dataclass
class Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    failed: int = 0
    samples_written: int = 0
    failed_items: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Self:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fail(self, item: str, message: str, reason: str = "") -> None:
        """An item that failed without failing the job (its data could not be used)."""
        self.failed += 1
        if len(self.failed_items) < MAX_FAILED_ITEMS:
            error = {"code": "INVALID_ARGUMENT", "message": message}
            if reason:
                error["reason"] = reason
            self.failed_items.append({"item": item, "error": error})
