"""The audit trail: who did what, when, from where, with what outcome (PCI DSS 10.2).

Append-only and chained with a keyed hash (HMAC) like the ledger journal; ``farthing audit
verify`` recomputes the chain, ``farthing audit list`` queries it and ``farthing audit prune``
deletes (and archives) records past their retention. Never holds a secret, a
card number or a CVC: actors are key ids, actions are route templates, objects are ids.
"""

from __future__ import annotations

from farthing.audit._anonymous import AnonymousRecords, write_tallies
from farthing.audit._middleware import AUDIT_KEY_STATE, REQUEST_ID_STATE, AuditMiddleware
from farthing.audit._operator import operator_name, record_operator_action
from farthing.audit._record import (
    AuditRecord,
    audit_key_from,
    clean_id,
    clean_text,
    safe_id,
    safe_text,
)
from farthing.audit._retention import (
    AUDIT_RETENTION_DAYS_MIN,
    PRUNE_BATCH_SIZE_MAX,
    PruneReport,
    open_archive,
    prune,
)
from farthing.audit._store import (
    QUERY_LIMIT_MAX,
    AuditQuery,
    AuditReport,
    AuditTamperedError,
    StoredRecord,
    append,
    query,
    verify,
)
from farthing.audit._writer import AuditWriter

__all__ = [
    "AUDIT_KEY_STATE",
    "AUDIT_RETENTION_DAYS_MIN",
    "PRUNE_BATCH_SIZE_MAX",
    "QUERY_LIMIT_MAX",
    "REQUEST_ID_STATE",
    "AnonymousRecords",
    "AuditMiddleware",
    "AuditQuery",
    "AuditRecord",
    "AuditReport",
    "AuditTamperedError",
    "AuditWriter",
    "PruneReport",
    "StoredRecord",
    "append",
    "audit_key_from",
    "clean_id",
    "clean_text",
    "open_archive",
    "operator_name",
    "prune",
    "query",
    "record_operator_action",
    "safe_id",
    "safe_text",
    "verify",
    "write_tallies",
]
