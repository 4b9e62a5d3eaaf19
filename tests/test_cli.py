"""The `farthing` command line, run as real subprocesses (the installed console script)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from farthing.auth import (
    Mode,
    authenticate,
    create_connected_tenant,
    create_tenant,
    default_tenant_id,
    ledger_id_for,
)
from farthing.bench import WORKLOADS
from farthing.db.engine import create_engine
from farthing.db.schema import api_keys, ledgers, tenants
from farthing.ledger import AccountEvent, AccountFlags, TransferEvent, TransferFlags
from farthing.ledger_service import CreateAccounts, CreateTransfers, LedgerService
from tests.audit.test_trail import drop_append_only_guard
from tests.conftest import JOURNAL_KEY, _postgres_database, postgres_server_url

FARTHING = str(Path(sys.executable).with_name("farthing"))
CLI_TIMEOUT_S = 120
SECRET_PATTERN = r"sk_{mode}_[A-Za-z0-9_-]{{43}}"
RESTRICTED_PATTERN = r"rk_{mode}_[A-Za-z0-9_-]{{43}}"
TENANT_PATTERN = re.compile(r"acct_[0-9a-f]{24}")


def cli_env(*, journal_key: bool = True, **extra: str) -> dict[str, str]:
    """The environment of a CLI run: nothing FARTHING_* inherited, then what the test sets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARTHING_")}
    if journal_key:
        env["FARTHING_JOURNAL_KEY"] = JOURNAL_KEY.hex()
    env.update(extra)
    return env


def farthing(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    expect: int | None = 0,
    umask: int = -1,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [FARTHING, *args],
        env=cli_env() if env is None else env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
        umask=umask,
    )
    if expect is not None:
        assert result.returncode == expect, (result.returncode, result.stdout, result.stderr)
    return result


def only_line(stdout: str) -> str:
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    assert stdout == lines[0] + "\n", stdout
    return lines[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema) of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh' / 'farthing.db'}"
        return
    base = postgres_server_url()
    assert base is not None
    yield from _postgres_database(base)


@pytest.fixture
def initialised_url(fresh_url: str) -> str:
    farthing("init", "--database-url", fresh_url)
    return fresh_url


def _state(url: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tenant_rows = [tuple(r) for r in connection.execute(sa.select(tenants)).all()]
            ledger_rows = [tuple(r) for r in connection.execute(sa.select(ledgers)).all()]
            tables = sorted(sa.inspect(connection).get_table_names())
    finally:
        engine.dispose()
    return tenant_rows, ledger_rows, tables


# -------------------------------------------------------------------------------------------------
# init


def test_init_twice_is_idempotent(fresh_url: str, tmp_path: Path) -> None:
    first = farthing("init", "--database-url", fresh_url, cwd=tmp_path)
    after_first = _state(fresh_url)
    second = farthing("init", "--database-url", fresh_url, cwd=tmp_path)
    # The journal key comes from the environment here: no journal key file is written (the
    # vault key is not configured, so init creates its file).
    assert not (tmp_path / "var" / "journal.key").exists()
    assert (tmp_path / "var" / "vault.key").exists()
    assert _state(fresh_url) == after_first
    assert first.stdout == second.stdout == ""
    defaults = [TENANT_PATTERN.findall(run.stderr) for run in (first, second)]
    assert defaults[0] == defaults[1]
    assert len(defaults[0]) == 1
    tenant_rows, ledger_rows, tables = after_first
    assert len(tenant_rows) == 1
    assert tenant_rows[0][0] == defaults[0][0]
    # A native and a payments ledger per mode.
    assert sorted((row[1], row[2]) for row in ledger_rows) == [
        (defaults[0][0], "live"),
        (defaults[0][0], "live"),
        (defaults[0][0], "test"),
        (defaults[0][0], "test"),
    ]
    assert {"alembic_version", "api_keys", "ledger_journal", "ledger_transfers"} <= set(tables)


def test_init_without_a_key_creates_a_private_key_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'farthing.db'}"
    env = cli_env(journal_key=False)
    # Even with a permissive umask, the key file is readable by its owner only.
    farthing("init", "--database-url", url, env=env, cwd=tmp_path, umask=0)
    key_file = tmp_path / "var" / "journal.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700  # So is the directory.
    key = key_file.read_text()
    assert re.fullmatch(r"[0-9a-f]{64,}\n", key), key
    # A second init keeps the key; the other commands read it from the file: entries chained
    # with that key verify.
    farthing("init", "--database-url", url, env=env, cwd=tmp_path)
    assert key_file.read_text() == key
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            ledger_id = ledger_id_for(
                connection,
                create_tenant(connection, name="k", journal_key=bytes.fromhex(key)),
                Mode.test,
            )
        _populate(LedgerService(engine, journal_key=bytes.fromhex(key)), ledger_id)
    finally:
        engine.dispose()
    verified = farthing("verify", "--database-url", url, env=env, cwd=tmp_path)
    assert "ok: 3 journal entries" in verified.stderr

    # FARTHING_JOURNAL_KEY_FILE names where the key lives (its directory is created).
    elsewhere = tmp_path / "secrets" / "nested" / "journal.key"
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    env_file = cli_env(journal_key=False, FARTHING_JOURNAL_KEY_FILE=str(elsewhere))
    farthing("init", "--database-url", other_url, env=env_file, cwd=tmp_path, umask=0)
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o600
    assert elsewhere.read_text() != key
    assert key_file.read_text() == key


def test_commands_without_any_journal_key_fail_clearly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    result = farthing(
        "verify", "--database-url", url, env=cli_env(journal_key=False), cwd=tmp_path, expect=2
    )
    assert "no journal key" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


# -------------------------------------------------------------------------------------------------
# keys and accounts


def test_keys_and_accounts_create_print_one_working_value(initialised_url: str) -> None:
    url = ["--database-url", initialised_url]
    secrets = {}
    for mode in ("test", "live"):
        result = farthing("keys", "create", *url, "--mode", mode)
        secrets[mode] = only_line(result.stdout)
        assert re.fullmatch(SECRET_PATTERN.format(mode=mode), secrets[mode]), result.stdout
        assert secrets[mode] not in result.stderr
    created = farthing("accounts", "create", *url, "--name", "Shop X")
    tenant_id = only_line(created.stdout)
    assert TENANT_PATTERN.fullmatch(tenant_id), created.stdout
    shop_secret = only_line(farthing("keys", "create", *url, "--account", tenant_id).stdout)
    assert shop_secret.startswith("sk_test_")
    engine = create_engine(initialised_url)
    try:
        with engine.connect() as connection:
            default = default_tenant_id(connection)
            assert default is not None
            for mode, secret in secrets.items():
                key = authenticate(connection, secret)
                assert key is not None, mode
                assert (key.tenant_id, key.mode) == (default, Mode(mode))
                assert key.ledger_id == ledger_id_for(connection, default, Mode(mode))
                assert authenticate(connection, secret + "x") is None
            row = connection.execute(sa.select(tenants).where(tenants.c.id == tenant_id)).one()
            assert (row.name, row.is_default) == ("Shop X", False)
            key = authenticate(connection, shop_secret)
            assert key is not None
            assert (key.tenant_id, key.mode) == (tenant_id, Mode.test)
            assert key.ledger_id == ledger_id_for(connection, tenant_id, Mode.test)
            assert ledger_id_for(connection, tenant_id, Mode.live) != key.ledger_id
    finally:
        engine.dispose()


def test_keys_and_accounts_create_refuse_bad_options(sqlite_url: str) -> None:
    url = ["--database-url", sqlite_url]
    bad_mode = farthing("keys", "create", *url, "--mode", "prod", expect=2)
    assert bad_mode.stdout == ""
    assert "--mode" in bad_mode.stderr
    unknown = farthing("keys", "create", *url, "--account", "acct_nope", expect=2)
    assert unknown.stdout == ""
    assert "acct_nope" in unknown.stderr
    refused = farthing("accounts", "create", *url, "--name", "x" * 201, expect=2)
    assert refused.stdout == ""
    assert "--name" in refused.stderr


def test_keys_create_restricted_prints_one_restricted_key(initialised_url: str) -> None:
    url = ["--database-url", initialised_url]
    shop = only_line(farthing("accounts", "create", *url, "--name", "Shop R").stdout)
    permissions = "customers:write, payment_intents:read"
    created = {
        None: farthing("keys", "create", *url, "--mode", "live", "--restricted", permissions),
        shop: farthing("keys", "create", *url, "--account", shop, "--restricted", "balance:read"),
    }
    engine = create_engine(initialised_url)
    try:
        with engine.connect() as connection:
            default = default_tenant_id(connection)
            for account, result in created.items():
                secret = only_line(result.stdout)
                mode = "test" if account else "live"
                assert re.fullmatch(RESTRICTED_PATTERN.format(mode=mode), secret), secret
                assert secret not in result.stderr
                key = authenticate(connection, secret)
                assert key is not None
                assert key.tenant_id == (account or default)
                assert key.redacted == f"rk_{mode}_...{secret[-4:]}"
            default_key = authenticate(connection, only_line(created[None].stdout))
            assert default_key is not None
            assert default_key.permissions == {"customers": "write", "payment_intents": "read"}
            assert default_key.permits("customers", "read")
            assert not default_key.permits("payment_intents", "write")
            assert not default_key.permits("charges", "read")
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "permissions",
    ["customer:read", "customers:admin", "customers", "customers:read,customers:write", "", ","],
)
def test_keys_create_restricted_refuses_bad_permissions(sqlite_url: str, permissions: str) -> None:
    url = ["--database-url", sqlite_url]
    refused = farthing("keys", "create", *url, "--restricted", permissions, expect=2)
    assert refused.stdout == ""
    assert "--restricted" in refused.stderr
    assert "Traceback" not in refused.stderr
    engine = create_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            count = sa.select(sa.func.count()).select_from(api_keys)
            assert connection.execute(count).scalar_one() == 0  # A typo never makes a key.
    finally:
        engine.dispose()


def test_keys_create_refuses_a_connected_account(initialised_url: str) -> None:
    """Connected accounts have no keys: their platform acts for them with Stripe-Account."""
    url = ["--database-url", initialised_url]
    engine = create_engine(initialised_url)
    try:
        with engine.begin() as connection:
            platform = default_tenant_id(connection)
            assert platform is not None
            connected = create_connected_tenant(connection, parent_id=platform, mode=Mode.test)
    finally:
        engine.dispose()
    refused = farthing("keys", "create", *url, "--account", connected, expect=2)
    assert refused.stdout == ""
    assert connected in refused.stderr


def test_keys_create_before_init_says_to_run_init(tmp_path: Path) -> None:
    result = farthing(
        "keys", "create", "--database-url", f"sqlite:///{tmp_path / 'f.db'}", expect=None
    )
    assert "Traceback" not in result.stderr
    assert result.returncode == 2  # configuration error, as for every command
    assert result.stdout == ""
    assert "run `farthing init` first" in result.stderr
    assert not (tmp_path / "f.db").exists()  # A mistyped path is not created.


# -------------------------------------------------------------------------------------------------
# verify


def _populate(service: LedgerService, ledger_id: int) -> None:
    accounts = tuple(
        AccountEvent(id=name, currency="USD", flags=flags, limit_minor=limit)
        for name, flags, limit in (
            ("a", AccountFlags.debits_must_not_exceed_credits, 1000),
            ("b", AccountFlags.none, 0),
        )
    )
    transfers = (
        TransferEvent(id="t1", debit_account_id="a", credit_account_id="b", amount_minor=300),
        TransferEvent(
            id="h1",
            debit_account_id="a",
            credit_account_id="b",
            amount_minor=50,
            flags=TransferFlags.pending,
        ),
    )
    service.commit([CreateAccounts(ledger_id=ledger_id, events=accounts)])
    service.commit([CreateTransfers(ledger_id=ledger_id, events=transfers)])
    post = TransferEvent(id="p1", pending_id="h1", flags=TransferFlags.post_pending)
    service.commit([CreateTransfers(ledger_id=ledger_id, events=(post,))])


def _verify_ok(database_url: str, expect_head: str) -> None:
    """`farthing verify --expect-head` succeeds and reports the populated ledger."""
    good = farthing("verify", "--database-url", database_url, "--expect-head", expect_head)
    assert good.stdout == ""
    summary = re.search(
        r"ok: (\d+) journal entries, (\d+) accounts, (\d+) transfers; head (\d+:[0-9a-f]{64})",
        good.stderr,
    )
    assert summary is not None, good.stderr
    assert summary.groups() == ("3", "2", "3", expect_head)


def _verify_fails(database_url: str, message: str, env: dict[str, str] | None = None) -> None:
    bad = farthing("verify", "--database-url", database_url, env=env, expect=1)
    assert bad.stdout == ""
    assert "Traceback" not in bad.stderr
    assert bad.stderr.startswith("FAILED: "), bad.stderr
    assert message in bad.stderr, bad.stderr


def test_verify_passes_on_a_good_ledger_and_fails_after_tampering(
    database_url: str, engine: sa.Engine, service: LedgerService, ledger_id: int
) -> None:
    _populate(service, ledger_id)
    report = service.verify()
    _verify_ok(database_url, f"{report.head_seq}:{report.head_mac}")
    with engine.begin() as connection:
        tampered = connection.exec_driver_sql(
            "UPDATE ledger_transfers SET amount = amount + 1 WHERE id = 't1'"
        )
        assert tampered.rowcount == 1
    _verify_fails(database_url, "transfer 't1': stored balance history differs from the replay")


TAMPERING = {
    "account balance": (
        "UPDATE ledger_accounts SET credits_posted = credits_posted + 1 WHERE id = 'b'",
        "account 'b': stored balances or limit differ from the sum of postings",
    ),
    "transfer code": (
        "UPDATE ledger_transfers SET code = 9 WHERE id = 't1'",
        "journal entry 2: records do not match the digest",
    ),
    "hold state": (
        "UPDATE ledger_holds SET state = 0",
        "state or expiry differs from the journal",
    ),
    "journal entry deleted": (
        "DELETE FROM ledger_journal WHERE seq = 2",
        "journal entry 2 missing",
    ),
}


@pytest.mark.parametrize("tampering", list(TAMPERING))
def test_verify_names_what_was_tampered_with(sqlite_url: str, tampering: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        with engine.begin() as connection:
            tenant = create_tenant(connection, name="verify", journal_key=JOURNAL_KEY)
            ledger_id = ledger_id_for(connection, tenant, Mode.test)
        _populate(LedgerService(engine, journal_key=JOURNAL_KEY), ledger_id)
        statement, message = TAMPERING[tampering]
        with engine.begin() as connection:
            assert connection.exec_driver_sql(statement).rowcount >= 1
    finally:
        engine.dispose()
    _verify_fails(sqlite_url, message)


def test_verify_fails_with_another_key_or_an_unexpected_head(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine = create_engine(sqlite_url)
    try:
        with engine.begin() as connection:
            ledger_id = ledger_id_for(
                connection, create_tenant(connection, name="v", journal_key=JOURNAL_KEY), Mode.test
            )
        _populate(LedgerService(engine, journal_key=JOURNAL_KEY), ledger_id)
    finally:
        engine.dispose()
    other_key = cli_env(FARTHING_JOURNAL_KEY="5b" * 32)
    _verify_fails(sqlite_url, "journal entry 1: MAC does not verify", env=other_key)
    stale = "3:" + "0" * 64
    bad = farthing("verify", "--database-url", sqlite_url, "--expect-head", stale, expect=1)
    assert "FAILED: journal head is 3:" in bad.stderr


# -------------------------------------------------------------------------------------------------
# FARTHING_DATABASE_URL


def test_database_url_from_the_environment(tmp_path: Path, sqlite_url: str) -> None:
    chosen = f"sqlite:///{tmp_path / 'chosen.db'}"
    work = tmp_path / "work"
    work.mkdir()
    env = cli_env(FARTHING_DATABASE_URL=chosen)
    farthing("init", env=env, cwd=work)
    secret = only_line(farthing("keys", "create", env=env, cwd=work).stdout)
    # An explicit --database-url wins over the environment.
    elsewhere = only_line(
        farthing(
            "accounts", "create", "--name", "Env", "--database-url", sqlite_url, env=env
        ).stdout
    )
    assert "ok:" in farthing("verify", env=env, cwd=work).stderr
    assert not (work / "var" / "farthing.db").exists(), "the default database was used"
    for url, has_key, has_tenant in ((chosen, True, False), (sqlite_url, False, True)):
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                assert (authenticate(connection, secret) is not None) == has_key
                found = connection.execute(
                    sa.select(tenants.c.id).where(tenants.c.id == elsewhere)
                ).scalar_one_or_none()
                assert (found is not None) == has_tenant
        finally:
            engine.dispose()


# -------------------------------------------------------------------------------------------------
# bench


def test_bench_ledger_json(sqlite_url: str) -> None:
    result = farthing(
        "bench",
        "ledger",
        "--database-url",
        sqlite_url,
        "--json",
        "--transfers",
        "9000",
        "--single-transfers",
        "640",
        "--accounts",
        "100",
    )
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["workload"] for row in rows] == list(WORKLOADS)
    expected_counts = {
        "uniform-batched": 9000,
        "hot-batched": 9000,
        "uniform-single": 640,
        "hot-single": 640,
        "serial-single": 640,
    }
    for row in rows:
        assert {"workload", "database", "transfers", "transfers_per_s", "p50_ms", "p99_ms"} <= set(
            row
        )
        assert row["database"] == "sqlite"
        assert row["transfers"] == expected_counts[row["workload"]]
        assert isinstance(row["transfers_per_s"], int)
        assert row["transfers_per_s"] > 0
        assert 0 <= row["p50_ms"] <= row["p99_ms"]
    # The benchmark wrote through the real ledger: its work verifies.
    verified = farthing("verify", "--database-url", sqlite_url)
    assert "100 accounts, 19920 transfers" in verified.stderr


def test_worker_needs_the_vault_key_and_runs_once(initialised_url: str, tmp_path: Path) -> None:
    no_vault = cli_env(FARTHING_VAULT_KEY_FILE=str(tmp_path / "absent.key"))
    refused = farthing(
        "worker", "--database-url", initialised_url, "--once", env=no_vault, expect=2
    )
    assert "vault" in refused.stderr
    with_vault = cli_env(FARTHING_VAULT_KEY="5c" * 32)
    done = farthing("worker", "--database-url", initialised_url, "--once", env=with_vault)
    assert done.stdout == ""


def test_admin_commands_are_audited_and_the_trail_verifies(initialised_url: str) -> None:
    url = ["--database-url", initialised_url]
    tenant_id = only_line(farthing("accounts", "create", *url, "--name", "Audited").stdout)
    secret = only_line(farthing("keys", "create", *url, "--account", tenant_id).stdout)
    engine = create_engine(initialised_url)
    try:
        with engine.connect() as connection:
            key = authenticate(connection, secret)
        assert key is not None
        farthing("keys", "revoke", key.id, *url)
        by_key = farthing("audit", "list", *url, "--object", key.id).stdout.splitlines()
        records = [json.loads(line) for line in by_key]
        assert [r["action"] for r in records] == ["keys.revoke", "keys.create"]  # newest first
        created = records[1]
        assert (created["account"], created["mode"], created["actor_kind"]) == (
            tenant_id, "test", "operator"
        )  # fmt: skip
        assert (created["origin"], created["outcome"]) == ("cli", "success")
        by_account = farthing("audit", "list", *url, "--account", tenant_id, "--limit", "10")
        actions = [json.loads(line)["action"] for line in by_account.stdout.splitlines()]
        assert actions == ["keys.revoke", "keys.create", "accounts.create"]
        assert secret not in by_account.stdout
        assert secret[8:] not in farthing("audit", "list", *url).stdout
        future = farthing("audit", "list", *url, "--since", "2200-01-01T00:00").stdout
        assert future == ""
        farthing("audit", "list", *url, "--since", "2999-01-01T00:00", expect=2)
        verified = farthing("audit", "verify", *url)
        head = re.search(r"head (\d+:[0-9a-f]{64})", verified.stderr)
        assert head is not None, verified.stderr
        farthing("audit", "verify", *url, "--expect-head", head.group(1))
        with engine.begin() as connection:
            drop_append_only_guard(connection)
            connection.exec_driver_sql("UPDATE audit_log SET actor = 'someone' WHERE seq = 1")
        failed = farthing("audit", "verify", *url, expect=1)
        assert failed.returncode == 1
        assert "audit record 1" in failed.stderr
    finally:
        engine.dispose()


def test_audit_list_refuses_a_bad_time(initialised_url: str) -> None:
    result = farthing(
        "audit", "list", "--database-url", initialised_url, "--since", "yesterday", expect=2
    )
    assert result.returncode == 2
    assert "ISO 8601" in result.stderr
