"""The audit trail: who did what, when, from where, with what outcome (PCI DSS 10.2).

Append-only and chained with a keyed hash (HMAC) like the ledger journal; ``farthing audit
verify`` recomputes the chain and ``farthing audit list`` queries it. Never holds a secret, a
card number or a CVC: actors are key ids, actions are route templates, objects are ids.
"""

from __future__ import annotations

from farthing.audit._middleware import (
    AUDIT_KEY_STATE,
    REQUEST_ID_STATE,
    THROTTLED_STATE,
    AuditMiddleware,
)
from farthing.audit._operator import operator_name, record_operator_action
from farthing.audit._record import (
    AuditRecord,
    audit_key_from,
    clean_id,
    clean_text,
    safe_id,
    safe_text,
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
    "QUERY_LIMIT_MAX",
    "REQUEST_ID_STATE",
    "THROTTLED_STATE",
    "AuditMiddleware",
    "AuditQuery",
    "AuditRecord",
    "AuditReport",
    "AuditTamperedError",
    "AuditWriter",
    "StoredRecord",
    "append",
    "audit_key_from",
    "clean_id",
    "clean_text",
    "operator_name",
    "query",
    "record_operator_action",
    "safe_id",
    "safe_text",
    "verify",
]
