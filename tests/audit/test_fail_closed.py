"""The trail fails closed: while records cannot be appended the server refuses requests before
they run, and the records of what did run are written once the trail accepts records again."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from farthing.audit import AuditQuery, audit_key_from, query, verify
from farthing.db.schema import audit_head
from tests.conftest import JOURNAL_KEY
from tests.http.conftest import Server, Tenant, key_id_of, new_tenant, serving

LEDGER = "/ledger/v1"
RECOVERY_DEADLINE_S = 10.0


def _create(client: httpx.Client, account_id: str) -> httpx.Response:
    return client.post(
        f"{LEDGER}/accounts", json={"accounts": [{"id": account_id, "currency": "USD"}]}
    )


def _until_answered(client: httpx.Client, account_id: str) -> httpx.Response:
    """A client's retry loop: the server asks it to come back after a 503 (Retry-After)."""
    deadline = time.monotonic() + RECOVERY_DEADLINE_S
    while True:
        answer = _create(client, account_id)
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def _break_the_trail(server: Server) -> sa.Row[tuple[object, ...]]:
    with server.engine.begin() as connection:
        head = connection.execute(sa.select(audit_head)).one()
        connection.execute(audit_head.delete())
    return head


def _mend_the_trail(server: Server, head: sa.Row[tuple[object, ...]]) -> None:
    with server.engine.begin() as connection:
        connection.execute(audit_head.insert().values(**head._mapping))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_requests_are_refused_until_the_trail_is_writable(kind: str, tmp_path: Path) -> None:
    with serving(kind, tmp_path, clean_log=False) as server:
        tenant = new_tenant(server)
        with tenant.client:
            _refuse_then_recover(server, tenant)


def _refuse_then_recover(server: Server, tenant: Tenant) -> None:
    key_id = key_id_of(server.engine, tenant.test_secret)
    head = _break_the_trail(server)
    # In flight when the trail broke: it runs, and the server learns the trail is down.
    assert _create(tenant.client, "ran").status_code == 200
    refused = _create(tenant.client, "refused")
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "audit_unavailable"
    assert refused.headers["Retry-After"] == "1"
    _mend_the_trail(server, head)
    assert _until_answered(tenant.client, "after").status_code == 200
    assert tenant.client.get(f"{LEDGER}/accounts/refused").status_code == 404
    records = query(server.engine, AuditQuery(key_id=key_id))
    created = [r.record for r in records if r.record.action == "POST /ledger/v1/accounts"]
    assert [(r.status, r.object_ids) for r in created] == [(200, ()), (200, ())]
    anonymous = query(server.engine, AuditQuery(key_id="-"))
    assert any(r.record.status == 503 for r in anonymous)
    report = verify(server.engine, audit_key_from(JOURNAL_KEY))
    assert report.records == int(head.seq) + len(records) + len(anonymous)
