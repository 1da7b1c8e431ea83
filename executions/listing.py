"""The list page's question to the database: filters, a search by ID prefix,
a sort, and keyset pages (`?after=<id>`: the rows after that one in the
sort order, so a page never shifts when new runs arrive)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from django.db.models import Count, Q, QuerySet
from django.http import QueryDict

from .models import Execution, Status

PAGE_SIZE = 50
#: The sorts the list offers: query value → (label, field, descending).
SORTS = {
    "newest": ("Newest first", "created_at", True),
    "oldest": ("Oldest first", "created_at", False),
    "cmd": ("Command", "cmd", False),
    "status": ("Status", "status", False),
}
FILTERS = ("status", "cmd", "profile", "by")
HEX_PREFIX = re.compile(r"[0-9a-f-]{1,36}")


@dataclass
class Page:
    rows: list[Execution]
    counts: dict[str, int]
    total: int
    next_after: str | None
    query: dict[str, str]
    choices: dict[str, list[str]] = field(default_factory=dict)

    @property
    def sort(self) -> str:
        return self.query.get("sort") or "newest"

    def link(self, **changes: str | None) -> str:
        """This page's query string with `changes` (None removes a key)."""
        query = QueryDict(mutable=True)
        for key, value in {**self.query, **changes}.items():
            if value:
                query[key] = value
        encoded = query.urlencode()
        return f"?{encoded}" if encoded else "?"


def read(params: QueryDict) -> dict[str, str]:
    """The page's query: known keys only, blank ones left out."""
    keys = (*FILTERS, "q", "sort", "after")
    query = {key: params.get(key, "").strip() for key in keys}
    if query["sort"] not in SORTS:
        query["sort"] = ""
    return {key: value for key, value in query.items() if value}


def page(queryset: QuerySet, query: dict[str, str]) -> Page:
    """One page of `queryset` as `query` asks for it."""
    filtered = _search(_filter(queryset, query, except_status=True), query)
    counts = dict(
        filtered.order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    if query.get("status"):
        filtered = filtered.filter(status=query["status"])
    _, column, descending = SORTS[query.get("sort") or "newest"]
    order = [f"-{column}", "-id"] if descending else [column, "id"]
    ordered = filtered.order_by(*order)
    after = _row(queryset, query.get("after"))
    if after is not None:
        value = getattr(after, column)
        beyond = "lt" if descending else "gt"
        ordered = ordered.filter(
            Q(**{f"{column}__{beyond}": value})
            | Q(**{column: value, f"id__{beyond}": after.pk})
        )
    rows = list(ordered[: PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return Page(
        rows=rows,
        counts=counts,
        total=sum(counts.values()),
        next_after=str(rows[-1].pk) if more else None,
        query=query,
        choices=_choices(queryset),
    )


def _filter(queryset: QuerySet, query: dict[str, str], *, except_status: bool):
    if query.get("cmd"):
        queryset = queryset.filter(cmd=query["cmd"])
    if query.get("profile"):
        queryset = queryset.filter(profile=query["profile"])
    if query.get("by"):
        queryset = queryset.filter(created_by_name=query["by"])
    if query.get("status") and not except_status:
        queryset = queryset.filter(status=query["status"])
    return queryset


def _search(queryset: QuerySet, query: dict[str, str]) -> QuerySet:
    """An ID prefix, as the list shows IDs (8 hex digits) or as pasted."""
    term = query.get("q", "").lower()
    if not term:
        return queryset
    if not HEX_PREFIX.fullmatch(term):
        return queryset.none()
    digits = term.replace("-", "")
    try:
        return queryset.filter(pk=uuid.UUID(digits))
    except ValueError:
        # UUIDs are stored as 32 hex digits on SQLite and as uuid on
        # PostgreSQL: a range of the full values is a prefix on both.
        low = uuid.UUID(digits.ljust(32, "0"))
        high = uuid.UUID(digits.ljust(32, "f"))
        return queryset.filter(pk__gte=low, pk__lte=high)


def _row(queryset: QuerySet, execution_id: str | None) -> Execution | None:
    if not execution_id:
        return None
    try:
        return queryset.filter(pk=uuid.UUID(execution_id)).first()
    except ValueError:
        return None


def _choices(queryset: QuerySet) -> dict[str, list[str]]:
    """The values the filters offer: what the runs actually have."""

    def distinct(column: str) -> list[str]:
        values = queryset.exclude(**{column: ""}).exclude(**{f"{column}__isnull": True})
        return sorted(values.order_by().values_list(column, flat=True).distinct())[:200]

    return {
        "status": list(Status.values),
        "cmd": distinct("cmd"),
        "profile": distinct("profile"),
        "by": distinct("created_by_name"),
    }
