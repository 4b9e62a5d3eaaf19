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

__all__ = ["Loader", "check_paths", "expand", "list_paths", "register"]

Loader = Callable[[sa.Connection, Partition, str], dict[str, Any] | None]
_LOADERS: dict[str, tuple[str, Loader]] = {}


def register(field: str, loader: Loader, *, resource: str) -> None:
    assert field not in _LOADERS, field
    assert resource in RESOURCES, resource
    _LOADERS[field] = (resource, loader)


def check_paths(scope: Partition, paths: Sequence[str]) -> None:
    """Refuse, before a write runs, paths that name no expandable field or a resource the key
    may not read: such a refusal is a validation error, so nothing runs and the Idempotency-Key
    keeps nothing (and a replay to another key is checked against that key's permissions)."""
    for path in paths:
        for field in path.split("."):
            _readable(scope, field, path)


def _registered(field: str, path: str) -> tuple[str, Loader]:
    registered = _LOADERS.get(field)
    if registered is None:
        raise invalid(f"This property cannot be expanded ({path}).", "expand")
    return registered


def _readable(scope: Partition, field: str, path: str) -> Loader:
    resource, loader = _registered(field, path)
    if not scope.may_read(resource):
        raise insufficient_permissions(
            f"The provided key does not have the required permissions to expand {path}.",
            resource=resource,
            access="read",
            param="expand",
        )
    return loader


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
    loader = _readable(scope, field, path)
    if field not in obj:
        raise invalid(f"This property cannot be expanded ({path}).", "expand")
    value = obj[field]
    if isinstance(value, str):
        loaded = loader(connection, scope, value)
        if loaded is None:
            return
        obj[field] = value = loaded
    if rest and isinstance(value, dict):
        _expand_path(connection, scope, value, rest, path)


def list_paths(paths: Sequence[str]) -> tuple[str, ...]:
    """``expand[]=data.customer`` on a list expands a field of each listed object; any other
    path, or one naming no expandable field, is refused even when the page is empty."""
    fields = []
    for path in paths:
        if not path.startswith("data."):
            raise invalid(f"This property cannot be expanded ({path}).", "expand")
        field = path.removeprefix("data.")
        for part in field.split("."):
            _registered(part, path)
        fields.append(field)
    return tuple(fields)
