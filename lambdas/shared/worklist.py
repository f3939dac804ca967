"""The worklist: the order in which a reader meets studies, its filters, and the per-study summary
it sorts on (kept on the study record, projected into the list index).

Unreviewed studies always come first (a reader's queue), then the chosen order: newest, the ones
the model flagged for review, or the highest herniation probability; ties newest first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from lambdas.shared.store import FAILED, PROCESSING, REVIEWED, SUCCEEDED, UPLOADED

STATUSES = (UPLOADED, PROCESSING, SUCCEEDED, FAILED, REVIEWED)
SORTS = ("date", "needs_review", "probability")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T[0-9:.]+Z?)?$")


def disc_summary(discs: Iterable[dict] | None) -> dict:
    """What the list needs to know about a study's discs: the highest model probability of
    herniation and whether any disc is called herniated."""
    discs = list(discs or [])
    probabilities = [d["probability"] for d in discs if isinstance(d.get("probability"), (int, float))]
    return {"max_probability": max(probabilities) if probabilities else None,
            "herniated": any(bool(d.get("herniated")) for d in discs)}


@dataclass(frozen=True)
class WorklistQuery:
    statuses: frozenset[str] = frozenset()
    reviewer: str | None = None
    herniated: bool | None = None
    needs_review: bool | None = None
    since: str | None = None  # ISO date or time: created at or after
    until: str | None = None  # ISO date or time: created on or before
    sort: str = "date"

    @classmethod
    def from_params(cls, params: dict[str, str | None]) -> "WorklistQuery":
        """From query-string parameters; ValueError says which one is wrong and why."""
        statuses = frozenset(s.strip().upper() for s in (params.get("status") or "").split(",") if s.strip())
        if statuses - set(STATUSES):
            raise ValueError(f"status must be among {', '.join(STATUSES)} (comma-separated)")
        sort = params.get("sort") or "date"
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}")
        for name in ("since", "until"):
            if params.get(name) and not _DATE.match(params[name]):
                raise ValueError(f"{name} must be an ISO date (2024-05-31) or time")
        return cls(statuses, params.get("reviewer") or None, _flag(params, "herniated"),
                   _flag(params, "needs_review"), params.get("since") or None, params.get("until") or None, sort)

    def matches(self, study: dict) -> bool:
        return ((not self.statuses or study.get("status") in self.statuses)
                and (self.reviewer is None or study.get("reviewed_by") == self.reviewer)
                and (self.herniated is None or bool(study.get("herniated")) == self.herniated)
                and (self.needs_review is None or bool(study.get("needs_review")) == self.needs_review))

    def arrange(self, studies: Iterable[dict]) -> list[dict]:
        chosen = sorted((s for s in studies if self.matches(s)), key=lambda s: s.get("created_at") or "", reverse=True)
        # stable sorts: newest first survives as the tie-break
        if self.sort == "needs_review":
            chosen.sort(key=lambda s: not s.get("needs_review"))
        elif self.sort == "probability":
            chosen.sort(key=lambda s: -s["max_probability"] if isinstance(s.get("max_probability"), (int, float)) else 1.0)
        chosen.sort(key=lambda s: s.get("status") == REVIEWED)
        return chosen


def _flag(params: dict, name: str) -> bool | None:
    value = (params.get(name) or "").lower()
    if value in ("", "any"):
        return None
    if value not in ("true", "false"):
        raise ValueError(f"{name} must be true or false")
    return value == "true"
