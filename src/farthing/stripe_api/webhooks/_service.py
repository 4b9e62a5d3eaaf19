"""Webhook endpoints: create (the signing secret shown once), retrieve, update, delete, list;
and the fan-out that queues one delivery per matching endpoint with each event."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from farthing.db.schema import stripe_webhook_deliveries as deliveries
from farthing.db.schema import stripe_webhook_endpoints as endpoints
from farthing.stripe_api import _objects as objects
from farthing.stripe_api._params import MetadataChange, invalid, merge_metadata
from farthing.stripe_api._request import Partition
from farthing.stripe_api.webhooks._urls import check_url
from farthing.vault import Vault, associated_data

__all__ = [
    "ENDPOINTS_PER_ACCOUNT_MAX",
    "EndpointFields",
    "create",
    "delete",
    "endpoint_object",
    "fan_out",
    "load_endpoint",
    "roll_secret",
    "secret_aad",
    "update",
]

ENDPOINTS_PER_ACCOUNT_MAX = 16
ENABLED_EVENTS_MAX = 100
EVENT_TYPE_LENGTH_MAX = 64
SECRET_BYTES = 24
ROLL_OVERLAP_S_MAX = 7 * 24 * 3600
ROLL_OVERLAP_S_DEFAULT = 24 * 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointFields:
    url: str | None = None
    enabled_events: tuple[str, ...] | None = None
    description: str | None = None
    disabled: bool | None = None
    metadata: MetadataChange | None = None


def check_events(value: Any) -> tuple[str, ...]:
    items = list(value.values()) if isinstance(value, dict) else value
    if not isinstance(items, list) or not 0 < len(items) <= ENABLED_EVENTS_MAX:
        raise invalid(
            f"enabled_events takes 1 to {ENABLED_EVENTS_MAX} event types.", "enabled_events"
        )
    for item in items:
        if not isinstance(item, str) or not 0 < len(item) <= EVENT_TYPE_LENGTH_MAX:
            raise invalid("enabled_events takes event type names or '*'.", "enabled_events")
        if item != "*" and "." not in item:
            raise invalid(f"Invalid event type: {item}.", "enabled_events")
    return tuple(dict.fromkeys(items))


def endpoint_object(row: objects.ObjectRow, *, livemode: bool) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "webhook_endpoint",
        "api_version": None,
        "application": None,
        "created": row["created"],
        "description": row["description"],
        "enabled_events": json.loads(row["enabled_events"]),
        "livemode": livemode,
        "metadata": row["metadata"],
        "status": row["status"],
        "url": row["url"],
    }


def secret_aad(scope: Partition, endpoint_id: str) -> bytes:
    return associated_data(scope.tenant_id, scope.mode, endpoint_id) + b"\x1fwebhook"


def create(
    connection: sa.Connection,
    scope: Partition,
    vault: Vault,
    fields: EndpointFields,
    *,
    allow_loopback: bool,
) -> dict[str, Any]:
    assert fields.url is not None
    assert fields.enabled_events is not None
    check_url(
        fields.url, livemode=scope.livemode, allow_loopback=allow_loopback, must_resolve=False
    )
    objects.lock_account(connection, scope)  # The cap holds under concurrent creates.
    count = connection.execute(
        sa.select(sa.func.count()).where(
            endpoints.c.tenant_id == scope.tenant_id,
            endpoints.c.mode == scope.mode,
            endpoints.c.deleted.is_(False),
        )
    ).scalar_one()
    if count >= ENDPOINTS_PER_ACCOUNT_MAX:
        raise invalid(
            f"An account has at most {ENDPOINTS_PER_ACCOUNT_MAX} webhook endpoints.", "url"
        )
    endpoint_id = objects.new_id("we_")
    secret = "whsec_" + secrets.token_urlsafe(SECRET_BYTES)
    row: objects.ObjectRow = {
        "id": endpoint_id, "created": int(time.time()),
        "metadata": merge_metadata({}, fields.metadata), "url": fields.url,
        "description": fields.description,
        "enabled_events": json.dumps(list(fields.enabled_events)),
        "status": "disabled" if fields.disabled else "enabled",
    }  # fmt: skip
    sealed = vault.seal(secret.encode(), secret_aad(scope, endpoint_id))
    row |= {"secret_key_id": sealed.key_id, "secret_sealed": sealed.blob}
    objects.insert(connection, endpoints, scope, row)
    # The only time the secret leaves the vault through the API.
    return endpoint_object(row, livemode=scope.livemode) | {"secret": secret}


def load_endpoint(
    connection: sa.Connection, scope: Partition, endpoint_id: str
) -> objects.ObjectRow:
    row = objects.load(connection, endpoints, scope, endpoint_id, for_update=True)
    if row is None or row["deleted"]:
        raise objects.missing("webhook_endpoint", endpoint_id)
    return row


def update(
    connection: sa.Connection,
    scope: Partition,
    endpoint_id: str,
    fields: EndpointFields,
    *,
    allow_loopback: bool,
) -> dict[str, Any]:
    row = load_endpoint(connection, scope, endpoint_id)
    changes: dict[str, Any] = {}
    if fields.url is not None:
        check_url(
            fields.url, livemode=scope.livemode, allow_loopback=allow_loopback, must_resolve=False
        )
        changes["url"] = fields.url
    if fields.enabled_events is not None:
        changes["enabled_events"] = json.dumps(list(fields.enabled_events))
    if fields.description is not None:
        changes["description"] = fields.description
    if fields.disabled is not None:
        changes["status"] = "disabled" if fields.disabled else "enabled"
    if fields.metadata is not None:
        changes["metadata"] = merge_metadata(row["metadata"], fields.metadata)
    if changes:
        objects.update(connection, endpoints, scope, endpoint_id, **changes)
    if changes.get("status") == "disabled":
        abandon_pending(connection, scope, endpoint_id)
    return endpoint_object(row | changes, livemode=scope.livemode)


def abandon_pending(connection: sa.Connection, scope: Partition, endpoint_id: str) -> None:
    """A disabled or deleted endpoint gets nothing more: its queued deliveries are abandoned
    (as after three days of failures), in the transaction that disables it."""
    connection.execute(
        deliveries.update()
        .where(
            deliveries.c.tenant_id == scope.tenant_id,
            deliveries.c.mode == scope.mode,
            deliveries.c.endpoint_id == endpoint_id,
            deliveries.c.status == "pending",
        )
        .values(status="abandoned")
    )


def roll_secret(
    connection: sa.Connection,
    scope: Partition,
    vault: Vault,
    endpoint_id: str,
    *,
    overlap_s: int,
) -> dict[str, Any]:
    """A new signing secret, shown once; the old one keeps signing for ``overlap_s`` seconds
    so that receivers can switch without rejecting a delivery."""
    assert 0 <= overlap_s <= ROLL_OVERLAP_S_MAX
    row = load_endpoint(connection, scope, endpoint_id)
    aad = secret_aad(scope, endpoint_id)
    old = vault.open(row["secret_sealed"], aad, key_id=row["secret_key_id"])
    secret = "whsec_" + secrets.token_urlsafe(SECRET_BYTES)
    sealed = vault.seal(secret.encode(), aad)
    # One key id column for both blobs: the previous secret is sealed under the same KEK.
    previous = vault.seal(old, aad, key_id=sealed.key_id) if overlap_s else None
    objects.update(
        connection, endpoints, scope, endpoint_id,
        secret_key_id=sealed.key_id,
        secret_sealed=sealed.blob,
        previous_secret_sealed=None if previous is None else previous.blob,
        previous_secret_expires_ns=time.time_ns() + overlap_s * 10**9 if overlap_s else None,
    )  # fmt: skip
    return endpoint_object(row, livemode=scope.livemode) | {"secret": secret}


def delete(connection: sa.Connection, scope: Partition, endpoint_id: str) -> dict[str, Any]:
    load_endpoint(connection, scope, endpoint_id)
    objects.update(connection, endpoints, scope, endpoint_id, deleted=True, status="disabled")
    abandon_pending(connection, scope, endpoint_id)
    return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}


def fan_out(connection: sa.Connection, scope: Partition, event_id: str, event_type: str) -> int:
    """Queue the event for every enabled endpoint that wants it, in the event's transaction."""
    rows = connection.execute(
        sa.select(endpoints.c.id, endpoints.c.enabled_events)
        .where(
            endpoints.c.tenant_id == scope.tenant_id,
            endpoints.c.mode == scope.mode,
            endpoints.c.status == "enabled",
            endpoints.c.deleted.is_(False),
        )
        .order_by(endpoints.c.seq)
    ).all()
    now_ns = time.time_ns()
    wanted = [
        {
            "tenant_id": scope.tenant_id, "mode": scope.mode, "event_id": event_id,
            "endpoint_id": endpoint_id, "status": "pending", "attempts": 0,
            "next_attempt_ns": now_ns, "created_ns": now_ns,
        }
        for endpoint_id, enabled in rows
        if _wants(json.loads(enabled), event_type)
    ]  # fmt: skip
    if wanted:
        connection.execute(deliveries.insert(), wanted)
    return len(wanted)


def _wants(enabled: list[str], event_type: str) -> bool:
    return "*" in enabled or event_type in enabled
