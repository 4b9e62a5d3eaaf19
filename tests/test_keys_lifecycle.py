"""API keys over their life: `farthing keys list`, `keys roll` (a new key with the same grant;
the old one expires later, or at once) and `keys revoke` (at once), against a real running
server on SQLite and PostgreSQL. Expiry is tested by moving the stored expiry or the clock
(``now_ns``), never by sleeping."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from farthing.auth import (
    ROLL_EXPIRES_IN_S_MAX,
    Mode,
    authenticate,
    create_key,
    create_tenant,
    list_keys,
    revoke_key,
    roll_key,
)
from farthing.db.engine import begin_write
from farthing.db.schema import api_keys
from tests.conftest import JOURNAL_KEY
from tests.http.conftest import Server, key_id_of, serving
from tests.test_cli import farthing, only_line

NS = 1_000_000_000
DAY_NS = 24 * 3600 * NS
ANY_SECRET = re.compile(r"(sk|rk)_(test|live)_[A-Za-z0-9_-]{43}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server per database kind for the module; every test makes its own account."""
    with serving(request.param, tmp_path_factory.mktemp(f"keys-{request.param}")) as started:
        yield started


def _status(server: Server, secret: str, path: str = "/v1/customers") -> int:
    with server.client(secret) as client:
        return client.get(path).status_code


def _cli(server: Server, *args: str, expect: int | None = 0) -> tuple[str, str]:
    result = farthing(*args, "--database-url", server.database_url, expect=expect)
    return result.stdout, result.stderr


def _expires_at_ns(server: Server, key_id: str) -> int | None:
    with server.engine.connect() as connection:
        value = connection.execute(
            sa.select(api_keys.c.expires_at_ns).where(api_keys.c.id == key_id)
        ).scalar_one()
    return None if value is None else int(value)


def _restricted_key(server: Server) -> tuple[str, str]:
    """(tenant, restricted key that may write customers and nothing else)."""
    with begin_write(server.engine) as connection:
        tenant = create_tenant(connection, name="rolling tenant", journal_key=JOURNAL_KEY)
        secret = create_key(
            connection, tenant_id=tenant, mode=Mode.test, permissions={"customers": "write"}
        )
    return tenant, secret


def test_a_rolled_key_works_until_it_expires_and_its_successor_keeps_the_grant(
    server: Server,
) -> None:
    _tenant, old = _restricted_key(server)
    old_id = key_id_of(server.engine, old)
    assert _status(server, old) == 200
    before_ns = time.time_ns()
    stdout, stderr = _cli(server, "keys", "roll", old_id, "--expires-in", "24h")
    new = only_line(stdout)
    assert re.fullmatch(ANY_SECRET, new)
    assert new.startswith("rk_test_")  # Same mode, still restricted.
    assert old not in stderr
    assert new not in stderr
    expires_at_ns = _expires_at_ns(server, old_id)
    assert expires_at_ns is not None
    assert before_ns + DAY_NS <= expires_at_ns <= time.time_ns() + DAY_NS
    # Both work during the overlap, with the same permissions.
    for secret in (old, new):
        assert _status(server, secret) == 200
        assert _status(server, secret, "/v1/charges") == 403
    # The day passes (moved in the database, not slept): the old key gets 401, the new one not.
    with begin_write(server.engine) as connection:
        connection.execute(
            api_keys.update()
            .where(api_keys.c.id == old_id)
            .values(expires_at_ns=time.time_ns() - 1)
        )
    assert _status(server, old) == 401
    assert _status(server, new) == 200
    assert _status(server, new, "/v1/charges") == 403
    # An expired key cannot be rolled (it would mint a key from a dead one).
    stdout, stderr = _cli(server, "keys", "roll", old_id, expect=2)
    assert stdout == ""
    assert "expired" in stderr


def test_roll_with_no_overlap_and_revoke_apply_to_the_very_next_request(server: Server) -> None:
    with begin_write(server.engine) as connection:
        tenant = create_tenant(connection, name="revoking tenant", journal_key=JOURNAL_KEY)
        first = create_key(connection, tenant_id=tenant, mode=Mode.live)
    first_id = key_id_of(server.engine, first)
    assert _status(server, first) == 200  # Warm whatever a server could cache.
    second = only_line(_cli(server, "keys", "roll", first_id, "--expires-in", "0")[0])
    assert second.startswith("sk_live_")
    assert _status(server, first) == 401
    assert _status(server, second) == 200
    second_id = key_id_of(server.engine, second)
    stdout, stderr = _cli(server, "keys", "revoke", second_id)
    assert stdout == ""
    assert second_id in stderr
    assert second not in stderr
    assert _status(server, second) == 401
    # Revoked keys can be neither revoked again nor rolled.
    for command in (("revoke", second_id), ("roll", second_id)):
        stdout, stderr = _cli(server, "keys", *command, expect=2)
        assert stdout == ""
        assert "no such active key" in stderr


def test_keys_list_shows_every_key_of_an_account_and_no_secret(server: Server) -> None:
    _tenant, restricted = _restricted_key(server)
    with begin_write(server.engine) as connection:
        tenant = create_tenant(connection, name="listed tenant", journal_key=JOURNAL_KEY)
        secrets = [create_key(connection, tenant_id=tenant, mode=mode) for mode in Mode]
    ids = [key_id_of(server.engine, secret) for secret in secrets]
    rolled = only_line(_cli(server, "keys", "roll", ids[0], "--expires-in", "0")[0])
    _cli(server, "keys", "revoke", ids[1])
    stdout, stderr = _cli(server, "keys", "list", "--account", tenant)
    assert ANY_SECRET.search(stdout + stderr) is None
    for secret in [*secrets, rolled, restricted]:
        assert secret not in stdout + stderr
        assert secret[8:-4] not in stdout  # Not even the middle of one.
    listed = [json.loads(line) for line in stdout.splitlines()]
    assert [entry["id"] for entry in listed[:2]] == ids
    assert len(listed) == 3
    assert {entry["account"] for entry in listed} == {tenant}
    assert [entry["status"] for entry in listed] == ["expired", "revoked", "active"]
    assert [entry["mode"] for entry in listed] == ["test", "live", "test"]
    assert {entry["kind"] for entry in listed} == {"secret"}
    assert listed[2]["redacted"] == rolled[:8] + "..." + rolled[-4:]
    assert listed[0]["expires"] is not None
    assert listed[1]["revoked"] is not None
    assert listed[2]["expires"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listed[2]["created"])
    everything = [json.loads(line) for line in _cli(server, "keys", "list")[0].splitlines()]
    assert {entry["kind"] for entry in everything} == {"secret", "restricted"}
    assert {entry["id"] for entry in listed} <= {entry["id"] for entry in everything}


def test_roll_on_an_injected_clock(engine: sa.Engine) -> None:
    """The old key is valid up to the nanosecond before its expiry; a second roll never
    lengthens its life; the new key has no expiry."""
    now_ns = 1_900_000_000 * NS
    with begin_write(engine) as connection:
        tenant = create_tenant(connection, name="clock tenant", journal_key=JOURNAL_KEY)
        old = create_key(connection, tenant_id=tenant, mode=Mode.test)
        old_id = key_id_of_in(connection, old)
        new = roll_key(connection, old_id, expires_in_s=3600, now_ns=now_ns)
        expiry_ns = now_ns + 3600 * NS
        assert authenticate(connection, old, now_ns=expiry_ns - 1) is not None
        assert authenticate(connection, old, now_ns=expiry_ns) is None
        assert authenticate(connection, new, now_ns=expiry_ns + 365 * DAY_NS) is not None
        third = roll_key(connection, old_id, expires_in_s=ROLL_EXPIRES_IN_S_MAX, now_ns=now_ns)
        assert authenticate(connection, old, now_ns=expiry_ns) is None
        assert authenticate(connection, third, now_ns=expiry_ns) is not None
        infos = {info.id: info for info in list_keys(connection, tenant_id=tenant)}
        assert infos[old_id].status(expiry_ns) == "expired"
        assert infos[old_id].status(expiry_ns - 1) == "active"
        revoke_key(connection, old_id, now_ns=now_ns)
        assert authenticate(connection, old, now_ns=now_ns) is None
        assert {info.status(now_ns) for info in list_keys(connection, tenant_id=tenant)} == {
            "active",
            "revoked",
        }


def key_id_of_in(connection: sa.Connection, secret: str) -> str:
    key = authenticate(connection, secret)
    assert key is not None
    return key.id


@pytest.mark.parametrize("text", ["8d", "abc", "-1h", "1w", "", "99999999999999d"])
def test_roll_refuses_bad_durations_before_touching_anything(sqlite_url: str, text: str) -> None:
    result = farthing(
        "keys", "roll", "key_x", "--expires-in", text, "--database-url", sqlite_url, expect=2
    )
    assert result.stdout == ""
    assert "--expires-in" in result.stderr
