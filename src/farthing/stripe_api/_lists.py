"""Stripe's list conventions: ``limit``, ``starting_after`` / ``ending_before`` and ``created``
filters in, ``{"object": "list", "url", "has_more", "data"}`` out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from farthing.http._errors import ApiError
from farthing.http._limits import bounded_int
from farthing.stripe_api._form import FormValue

__all__ = [
    "LIST_LIMIT_DEFAULT",
    "LIST_LIMIT_MAX",
    "CreatedFilter",
    "ListQuery",
    "TableList",
    "list_envelope",
    "list_table",
    "page_conditions",
    "paginate",
    "parse_list_query",
]

_Row = TypeVar("_Row")

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
    digits = value.removeprefix("-") if isinstance(value, str) else ""
    if not isinstance(value, str) or not value.isascii() or not digits.isdecimal():
        raise _invalid(f"Invalid integer: {param}.", param)
    number = bounded_int(value, low, high)
    if number is None:
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


def page_conditions(
    seq: sa.ColumnElement[int],
    created_column: sa.ColumnElement[int],
    created: CreatedFilter,
    *,
    before_seq: int | None,
    after_seq: int | None,
) -> tuple[list[sa.ColumnElement[bool]], sa.UnaryExpression[int]]:
    """WHERE conditions and ORDER BY of one page: newest first before ``before_seq``, or (for
    ending_before) oldest first after ``after_seq``; ``created`` bounds apply either way."""
    conditions: list[sa.ColumnElement[bool]] = []
    for bound, compare in (
        (created.gt, created_column.__gt__),
        (created.gte, created_column.__ge__),
        (created.lt, created_column.__lt__),
        (created.lte, created_column.__le__),
    ):
        if bound is not None:
            conditions.append(compare(bound))
    if before_seq is not None:
        conditions.append(seq < before_seq)
    if after_seq is not None:
        conditions.append(seq > after_seq)
    return conditions, (seq.asc() if after_seq is not None else seq.desc())


def paginate(  # noqa: PLR0913
    query: ListQuery,
    *,
    url: str,
    seq_of: Callable[[str], int | None],
    missing: Callable[[str], ApiError],
    fetch: Callable[[int | None, int | None, int], list[_Row]],
    render: Callable[[_Row], dict[str, Any]],
) -> dict[str, Any]:
    """One page of a list, newest first, whatever the resource.

    ``seq_of`` maps a cursor id to its ordering number in the caller's scope; ``fetch(before_seq,
    after_seq, count)`` returns up to ``count`` rows in query order. A cursor naming no object is a
    bad parameter of the list (400), not a missing page.
    """
    backward = query.ending_before is not None
    cursor_param = "ending_before" if backward else "starting_after"
    cursor = query.ending_before if backward else query.starting_after
    cursor_seq = None
    if cursor is not None:
        cursor_seq = seq_of(cursor)
        if cursor_seq is None:
            error = missing(cursor)
            raise ApiError(
                400, type_=error.type, code=error.code, message=error.message, param=cursor_param
            )
    # One more row than asked tells whether there are more.
    rows = fetch(
        None if backward else cursor_seq, cursor_seq if backward else None, query.limit + 1
    )
    page = rows[: query.limit]
    if backward:
        page.reverse()
    return list_envelope(url, [render(row) for row in page], has_more=len(rows) > query.limit)


@dataclass(frozen=True, slots=True)
class TableList:
    """A list read from one table that has ``seq``, ``id`` and ``created`` columns."""

    table: sa.Table
    # The rows a cursor may name: the caller's scope, deleted rows included (a cursor may
    # outlive its object).
    cursor_scope: tuple[sa.ColumnElement[bool], ...]
    # The rows a page shows: the scope and the list's filters.
    shown: tuple[sa.ColumnElement[bool], ...]
    columns: tuple[sa.ColumnElement[Any], ...] = ()  # empty: every column

    def seq_of(self, connection: sa.Connection, object_id: str) -> int | None:
        seq = connection.execute(
            sa.select(self.table.c.seq).where(*self.cursor_scope, self.table.c.id == object_id)
        ).scalar_one_or_none()
        return None if seq is None else int(seq)

    def rows(
        self,
        connection: sa.Connection,
        created: CreatedFilter,
        before_seq: int | None,
        after_seq: int | None,
        count: int,
    ) -> Sequence[sa.RowMapping]:
        window, order = page_conditions(
            self.table.c.seq,
            self.table.c.created,
            created,
            before_seq=before_seq,
            after_seq=after_seq,
        )
        select = sa.select(*(self.columns or (self.table,))).where(*self.shown, *window)
        return connection.execute(select.order_by(order).limit(count)).mappings().all()


def list_table(  # noqa: PLR0913
    connection: sa.Connection,
    listing: TableList,
    query: ListQuery,
    *,
    url: str,
    missing: Callable[[str], ApiError],
    render: Callable[[sa.RowMapping], dict[str, Any]],
) -> dict[str, Any]:
    """One page of ``listing``, newest first (see `paginate`)."""
    return paginate(
        query,
        url=url,
        seq_of=lambda object_id: listing.seq_of(connection, object_id),
        missing=missing,
        fetch=lambda before_seq, after_seq, count: list(
            listing.rows(connection, query.created, before_seq, after_seq, count)
        ),
        render=render,
    )
