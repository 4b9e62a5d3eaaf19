"""Stripe's list conventions: ``limit``, ``starting_after`` / ``ending_before`` and ``created``
filters in, ``{"object": "list", "url", "has_more", "data"}`` out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from farthing.http._errors import ApiError
from farthing.stripe_api._form import FormValue

__all__ = [
    "LIST_LIMIT_DEFAULT",
    "LIST_LIMIT_MAX",
    "CreatedFilter",
    "ListQuery",
    "list_envelope",
    "parse_list_query",
]

LIST_LIMIT_DEFAULT = 10
LIST_LIMIT_MAX = 100
ID_LENGTH_MAX = 255
# Unix seconds fit comfortably; anything larger is a mistake, not a date.
TIMESTAMP_MAX = 2**40
_BOUNDS = ("gt", "gte", "lt", "lte")


def _invalid(message: str, param: str) -> ApiError:
    return ApiError(
        400, type_="invalid_request_error", code="parameter_invalid", message=message, param=param
    )


@dataclass(frozen=True, slots=True)
class CreatedFilter:
    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None


@dataclass(frozen=True, slots=True)
class ListQuery:
    limit: int
    starting_after: str | None
    ending_before: str | None
    created: CreatedFilter


def _integer(value: FormValue | None, param: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.isascii() or not value.lstrip("-").isdecimal():
        raise _invalid(f"Invalid integer: {param}.", param)
    number = int(value)
    if not low <= number <= high:
        raise _invalid(f"{param} must be between {low} and {high}.", param)
    return number


def _cursor(value: FormValue | None, param: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= ID_LENGTH_MAX:
        raise _invalid(f"Invalid object id: {param}.", param)
    return value


def _created(value: FormValue | None) -> CreatedFilter:
    if value is None:
        return CreatedFilter()
    if isinstance(value, str):
        exact = _integer(value, "created", 0, TIMESTAMP_MAX)
        return CreatedFilter(gte=exact, lte=exact)
    if not isinstance(value, dict) or not set(value) <= set(_BOUNDS):
        raise _invalid("created takes an integer or gt, gte, lt, lte.", "created")
    bounds = {
        name: _integer(value.get(name), f"created[{name}]", 0, TIMESTAMP_MAX) for name in _BOUNDS
    }
    return CreatedFilter(**bounds)


def parse_list_query(params: dict[str, FormValue]) -> ListQuery:
    """The list parameters; the caller has checked that no other parameter is present."""
    limit = _integer(params.get("limit"), "limit", 1, LIST_LIMIT_MAX)
    starting_after = _cursor(params.get("starting_after"), "starting_after")
    ending_before = _cursor(params.get("ending_before"), "ending_before")
    if starting_after is not None and ending_before is not None:
        raise _invalid("Use starting_after or ending_before, not both.", "ending_before")
    return ListQuery(
        limit=LIST_LIMIT_DEFAULT if limit is None else limit,
        starting_after=starting_after,
        ending_before=ending_before,
        created=_created(params.get("created")),
    )


def list_envelope(url: str, data: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    # The url must be origin-relative: the SDK pages by requesting it again.
    return {"object": "list", "url": url, "has_more": has_more, "data": data}
