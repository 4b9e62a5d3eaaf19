"""Records every API request in the audit trail before its response's last byte is sent.

Who comes from the key the authentication dependency put in the request's state (its id, never
the secret); what is the method and the route's template (never the raw path, which a client
controls) plus the ids in the path and the id of the object answered; where is the peer address.

The trail fails closed. A record that cannot be appended (the database refuses, the head row is
gone) is kept in memory, and until it is written every new request is refused with 503
``audit_unavailable`` before it runs: at most the requests in flight at the moment of the failure
act while the trail is down, and their records are written first once it accepts records again.

Failed requests without a valid key can be sent by anyone without end: their records go through
``AnonymousRecords``, which writes them while the origin is within its budget and tallies the
rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette import types as asgi
from starlette.responses import JSONResponse

from farthing.audit._anonymous import AnonymousRecords
from farthing.audit._record import (
    OBJECT_IDS_COUNT_MAX,
    ORIGIN_LENGTH_MAX,
    SHORT_LENGTH_MAX,
    AuditRecord,
    clean_id,
    clean_text,
    safe_id,
    safe_text,
)
from farthing.audit._store import APPEND_BATCH_SIZE_MAX
from farthing.audit._writer import AuditWriter

__all__ = ["AUDIT_KEY_STATE", "REQUEST_ID_STATE", "UNWRITTEN_RECORDS_MAX", "AuditMiddleware"]

# Names in the request's state (scope["state"]) that other layers fill in.
AUDIT_KEY_STATE = "audit_key"
REQUEST_ID_STATE = "request_id"
# Bodies larger than this are not parsed for the answered object's id.
ID_SNIFF_BYTES_MAX = 64 * 1024
UNAUDITED_PATHS = frozenset({"/openapi.json"})
# Records kept while the trail cannot be written. Those of requests that ran are always kept (no
# request runs while any is kept, so they number at most the requests in flight at the failure);
# those of the 503 refusals meanwhile, which changed nothing, only while there is room.
UNWRITTEN_RECORDS_MAX = 10_000
# While the trail is down, at most one attempt to write the kept records per interval.
RETRY_INTERVAL_S = 0.5
_log = logging.getLogger("farthing.audit")


class AuditMiddleware:
    def __init__(
        self, app: asgi.ASGIApp, *, writer: AuditWriter, anonymous: AnonymousRecords
    ) -> None:
        self._app = app
        self._writer = writer
        self._anonymous = anonymous
        self._unwritten: list[AuditRecord] = []
        self._retry_lock = asyncio.Lock()
        self._retry_after = 0.0  # time.monotonic() before which no retry is made

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNAUDITED_PATHS:
            await self._app(scope, receive, send)
            return
        if self._unwritten and not await self._write_unwritten():
            await self._refuse(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 0
        recorded = False

        async def audited_send(message: asgi.Message) -> None:
            nonlocal status, recorded
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                recorded = True
                await self._record(scope, state, status, message.get("body", b""))
            await send(message)

        try:
            await self._app(scope, receive, audited_send)
        finally:
            if not recorded:  # An unhandled error: its 500 is answered outside this layer.
                await self._record(scope, state, status or 500, b"")

    async def _record(
        self, scope: asgi.Scope, state: dict[str, Any], status: int, body: bytes
    ) -> None:
        record = _record_of(scope, state, status, body)
        if not self._anonymous.admit(record):
            return  # Tallied: written with its origin's others (AnonymousRecords).
        try:
            future = self._writer.try_submit(record)
            if future is None:  # Queue full: write in a worker thread (back-pressure, no loss).
                await asyncio.to_thread(self._writer.write_now, [record])
            else:
                await asyncio.wrap_future(future)
        except Exception:  # noqa: BLE001 - the request's own effects are committed already
            _log.exception("audit record not written (status %s); refusing requests", status)
            self._unwritten.append(record)  # Written first once the trail accepts records.

    async def _write_unwritten(self) -> bool:
        """Write the kept records, oldest first; True once none is left."""
        async with self._retry_lock:
            while self._unwritten:
                if time.monotonic() < self._retry_after:
                    return False
                batch = self._unwritten[:APPEND_BATCH_SIZE_MAX]
                try:
                    await asyncio.to_thread(self._writer.write_now, batch)
                except Exception:  # noqa: BLE001 - still down: keep refusing
                    _log.exception("audit trail still unwritable (%d kept)", len(self._unwritten))
                    self._retry_after = time.monotonic() + RETRY_INTERVAL_S
                    return False
                del self._unwritten[: len(batch)]
                _log.warning("audit trail writable again: %d kept records written", len(batch))
            return True

    async def _refuse(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        """503 before the request runs; its record is kept with the others, while there is room."""
        error = {
            "type": "api_error",
            "code": "audit_unavailable",
            "message": "The API is temporarily unavailable. Retry the request shortly.",
        }
        response = JSONResponse({"error": error}, status_code=503, headers={"Retry-After": "1"})
        await response(scope, receive, send)
        if len(self._unwritten) < UNWRITTEN_RECORDS_MAX:
            state: dict[str, Any] = scope.setdefault("state", {})
            self._unwritten.append(_record_of(scope, state, 503, b""))


def _record_of(scope: asgi.Scope, state: dict[str, Any], status: int, body: bytes) -> AuditRecord:
    key = state.get(AUDIT_KEY_STATE)
    route = scope.get("route")
    method = clean_text(scope.get("method", "?"), length_max=16)
    template = getattr(route, "path", None)
    action = f"{method} {template}" if isinstance(template, str) else f"{method} (no route)"
    client = scope.get("client")
    request_id = state.get(REQUEST_ID_STATE)
    return AuditRecord(
        occurred_at_ns=time.time_ns(),
        actor_kind="anonymous" if key is None else "api_key",
        actor="-" if key is None else safe_id(key.id),
        tenant_id=None if key is None else safe_id(key.tenant_id),
        mode=None if key is None else key.mode.value,
        on_behalf_of=_header(scope, b"stripe-account"),
        action=clean_text(action, length_max=200),
        object_ids=_object_ids(scope, body),
        origin=clean_text(str(client[0]) if client else "-", length_max=ORIGIN_LENGTH_MAX),
        outcome="success" if 0 < status < 400 else "failure",
        status=status,
        request_id=None if request_id is None else safe_text(request_id, length_max=64),
    )


def _header(scope: asgi.Scope, name: bytes) -> str | None:
    for header, value in scope.get("headers", ()):
        if header == name:
            return clean_text(value.decode("latin-1"), length_max=SHORT_LENGTH_MAX) or "?"
    return None


# Where the answered object's id is the client's (the native ledger API), not one of ours.
CLIENT_CHOSEN_IDS_PREFIX = "/ledger/"


def _object_ids(scope: asgi.Scope, body: bytes) -> tuple[str, ...]:
    ids: list[str] = []
    for value in (scope.get("path_params") or {}).values():
        text = clean_id(str(value))
        if text and text not in ids:
            ids.append(text)
    answered = _answered_id(body)
    if answered is not None and str(scope.get("path", "")).startswith(CLIENT_CHOSEN_IDS_PREFIX):
        answered = clean_id(answered)  # The client chose it: masked as its path copy is.
    if answered is not None and answered not in ids:
        ids.append(answered)
    return tuple(ids[:OBJECT_IDS_COUNT_MAX])


def _answered_id(body: bytes) -> str | None:
    """The ``id`` of a single object in a JSON answer (a list's items are not recorded)."""
    if not body.startswith(b"{") or len(body) > ID_SNIFF_BYTES_MAX:
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    answered = document.get("id") if isinstance(document, dict) else None
    if not isinstance(answered, str) or document.get("object") == "list":
        return None
    return safe_id(answered) or None
