"""Administrative actions taken on the command line, recorded as the operator who ran them."""

from __future__ import annotations

import getpass
import os
import socket
import time

import sqlalchemy as sa

from farthing.audit._record import ACTOR_LENGTH_MAX, AuditRecord, clean_text, safe_id, safe_text
from farthing.audit._store import append

__all__ = ["operator_name", "record_operator_action"]


def operator_name() -> str:
    """``user@host`` of the process; the uid when the system has no name for it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return clean_text(f"{user}@{socket.gethostname()}", length_max=ACTOR_LENGTH_MAX)


def record_operator_action(  # noqa: PLR0913 - the PCI fields, each named
    connection: sa.Connection,
    key: bytes,
    *,
    action: str,
    object_ids: tuple[str, ...] = (),
    tenant_id: str | None = None,
    mode: str | None = None,
    success: bool = True,
) -> int:
    """Append one operator record inside the caller's transaction, so the action and its record
    commit together (or neither does). Returns the record's seq."""
    record = AuditRecord(
        occurred_at_ns=time.time_ns(),
        actor_kind="operator",
        actor=operator_name(),
        tenant_id=None if tenant_id is None else safe_id(tenant_id),
        mode=mode,
        action=safe_text(action, length_max=200),
        object_ids=tuple(safe_id(object_id) for object_id in object_ids),
        origin="cli",
        outcome="success" if success else "failure",
        status=0,
    )
    return append(connection, key, [record])
