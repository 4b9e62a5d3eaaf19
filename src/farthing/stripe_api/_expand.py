"""``expand[]``: replace an id field of a response by the object it names, in the same scope.

Packages register a loader per field name (``customer``, ``latest_charge``...) with the resource
it reads; a dotted path (``latest_charge.balance_transaction``) expands level by level. An
unknown field is a 400, as with Stripe; an id that no longer resolves stays an id. A restricted
key needs read permission on every resource it expands, as if it had retrieved each one (403).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from farthing.auth import RESOURCES
from farthing.stripe_api._params import invalid
from farthing.stripe_api._request import Partition, insufficient_permissions

__all__ = ["Loader", "expand", "list_paths", "register"]

Loader = Callable[[sa.Connection, Partition, str], dict[str, Any] | None]
_LOADERS: dict[str, tuple[str, Loader]] = {}


def register(field: str, loader: Loader, *, resource: str) -> None:
    assert field not in _LOADERS, field
    assert resource in RESOURCES, resource
    _LOADERS[field] = (resource, loader)


def expand(
    connection: sa.Connection, scope: Partition, obj: dict[str, Any], paths: Sequence[str]
) -> dict[str, Any]:
    for path in paths:
        _expand_path(connection, scope, obj, path.split("."), path)
    return obj


def _expand_path(
    connection: sa.Connection,
    scope: Partition,
    obj: dict[str, Any],
    parts: list[str],
    path: str,
) -> None:
    field, rest = parts[0], parts[1:]
    registered = _LOADERS.get(field)
    if field not in obj or registered is None:
        raise invalid(f"This property cannot be expanded ({path}).", "expand")
    resource, loader = registered
    if not scope.may_read(resource):
        raise insufficient_permissions(
            f"The provided key does not have the required permissions to expand {path}.",
            resource=resource,
            access="read",
            param="expand",
        )
    value = obj[field]
    if isinstance(value, str):
        loaded = loader(connection, scope, value)
        if loaded is None:
            return
        obj[field] = value = loaded
    if rest and isinstance(value, dict):
        _expand_path(connection, scope, value, rest, path)


def list_paths(paths: Sequence[str]) -> tuple[str, ...]:
    """``expand[]=data.customer`` on a list expands a field of each listed object."""
    return tuple(path.removeprefix("data.") for path in paths if path.startswith("data."))
