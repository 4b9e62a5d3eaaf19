"""The `farthing` command line. Machine-readable outputs (keys, ids) are printed alone on
stdout; everything else goes to stderr."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from farthing._errors import FarthingError
from farthing._runtime import tune_gc

if TYPE_CHECKING:
    from collections.abc import Iterator

    from farthing.vault import VaultKeys

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Farthing payments platform.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys.")
accounts_app = typer.Typer(no_args_is_help=True, help="Top-level accounts (merchants).")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print measured numbers.")
app.add_typer(keys_app, name="keys")
app.add_typer(accounts_app, name="accounts")
events_app = typer.Typer(no_args_is_help=True, help="Events and webhook deliveries.")
app.add_typer(bench_app, name="bench")
app.add_typer(events_app, name="events")
vault_app = typer.Typer(no_args_is_help=True, help="The card vault's keys.")
app.add_typer(vault_app, name="vault")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="FARTHING_DATABASE_URL",
        help="sqlite:///PATH or postgresql://...; default sqlite:///var/farthing.db",
    ),
]


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _record_admin(  # noqa: PLR0913 - the audit record's fields, each named
    connection: Any,
    *,
    action: str,
    object_ids: tuple[str, ...] = (),
    tenant_id: str | None = None,
    mode: str | None = None,
    success: bool = True,
) -> None:
    """The audit record of an administrative command, in the command's own transaction."""
    from farthing.audit import audit_key_from, record_operator_action  # noqa: PLC0415
    from farthing.config import load_journal_key  # noqa: PLC0415

    key = audit_key_from(load_journal_key())
    record_operator_action(
        connection, key, action=action, object_ids=object_ids, tenant_id=tenant_id, mode=mode,
        success=success,
    )  # fmt: skip


def _record_admin_alone(database_url: str | None, *, action: str, **fields: Any) -> None:
    """The audit record of a command whose work spans many transactions (vault rotation)."""
    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import begin_write, open_initialised  # noqa: PLC0415

    engine = open_initialised(Settings.from_env(database_url=database_url).database_url)
    try:
        with begin_write(engine) as connection:
            _record_admin(connection, action=action, **fields)
    finally:
        engine.dispose()


@app.command()
def init(database_url: DatabaseUrl = None) -> None:
    """Create or migrate the schema, the default account and the key files (idempotent)."""
    from farthing.auth import ensure_default_tenant  # noqa: PLC0415 - keep CLI start fast.
    from farthing.config import (  # noqa: PLC0415
        Settings,
        ensure_journal_key_file,
        ensure_vault_key_file,
    )
    from farthing.db.engine import create_engine  # noqa: PLC0415
    from farthing.db.migrate import upgrade  # noqa: PLC0415

    ensure_journal_key_file()
    ensure_vault_key_file()
    settings = Settings.from_env(database_url=database_url)
    engine = create_engine(settings.database_url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            tenant_id = ensure_default_tenant(connection, journal_key=settings.journal_key)
    finally:
        engine.dispose()
    _err(f"initialised {engine.url.render_as_string(hide_password=True)} (default {tenant_id})")


@keys_app.command("create")
def keys_create(
    database_url: DatabaseUrl = None,
    mode: Annotated[str, typer.Option(help="test or live")] = "test",
    account: Annotated[
        str | None, typer.Option(help="acct_... (default account if omitted)")
    ] = None,
    restricted: Annotated[
        str | None,
        typer.Option(
            metavar="PERMISSIONS",
            help="Make a restricted key (rk_...) with these permissions, e.g. "
            "customers:write,payment_intents:read (write implies read; other resources denied)",
        ),
    ] = None,
) -> None:
    """Print one new secret (or restricted) API key, alone on stdout."""
    from farthing.auth import (  # noqa: PLC0415
        Mode,
        PermissionsError,
        authenticate,
        create_key,
        default_tenant_id,
        parse_permissions,
    )
    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import begin_write, open_initialised  # noqa: PLC0415

    if mode not in ("test", "live"):
        raise typer.BadParameter("mode must be test or live", param_hint="--mode")
    permissions = None
    if restricted is not None:
        try:
            permissions = parse_permissions(restricted)
        except PermissionsError as error:
            # Checked before touching the database: a typo never creates a key.
            raise typer.BadParameter(str(error), param_hint="--restricted") from None
    engine = open_initialised(Settings.from_env(database_url=database_url).database_url)
    try:
        with begin_write(engine) as connection:
            tenant_id = account or default_tenant_id(connection)
            if tenant_id is None:
                _err("no default account: run `farthing init` first")
                raise typer.Exit(1)
            secret = create_key(
                connection, tenant_id=tenant_id, mode=Mode(mode), permissions=permissions
            )
            created = authenticate(connection, secret)
            assert created is not None
            _record_admin(
                connection, action="keys.create", object_ids=(created.id,), tenant_id=tenant_id,
                mode=mode,
            )  # fmt: skip
    finally:
        engine.dispose()
    typer.echo(secret)


_DURATION_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
DURATION_TEXT_LENGTH_MAX = 12


def _duration_s(text: str, *, maximum_s: int, param_hint: str) -> int:
    """``0``, ``90s``, ``30m``, ``24h`` or ``7d`` as seconds (a bare number is seconds)."""
    value = text.strip().lower()
    unit = _DURATION_UNITS_S.get(value[-1:], 0) if value else 0
    digits = value[:-1] if unit else value
    if not (0 < len(value) <= DURATION_TEXT_LENGTH_MAX and digits.isdecimal()):
        msg = "expected a duration such as 0, 90s, 30m, 24h or 7d"
        raise typer.BadParameter(msg, param_hint=param_hint)
    seconds = int(digits) * (unit or 1)
    if seconds > maximum_s:
        raise typer.BadParameter(f"at most {maximum_s // 3600} hours", param_hint=param_hint)
    return seconds


def _utc(ns: int | None) -> str | None:
    import datetime as dt  # noqa: PLC0415

    if ns is None:
        return None
    moment = dt.datetime.fromtimestamp(ns // 10**9, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@keys_app.command("list")
def keys_list(
    database_url: DatabaseUrl = None,
    account: Annotated[str | None, typer.Option(help="acct_... (every account if omitted)")] = None,
) -> None:
    """Print keys as JSON lines, oldest first: ids, redacted forms and dates, never secrets."""
    import json  # noqa: PLC0415
    import time  # noqa: PLC0415

    from farthing.auth import KEYS_LIST_MAX, list_keys  # noqa: PLC0415
    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import open_initialised  # noqa: PLC0415

    engine = open_initialised(Settings.from_env(database_url=database_url).database_url)
    try:
        with engine.connect() as connection:
            keys = list_keys(connection, tenant_id=account, limit=KEYS_LIST_MAX)
    finally:
        engine.dispose()
    now_ns = time.time_ns()
    for key in keys:
        line = {
            "id": key.id, "account": key.tenant_id, "mode": key.mode.value,
            "kind": "restricted" if key.restricted else "secret", "redacted": key.redacted,
            "created": _utc(key.created_at_ns), "expires": _utc(key.expires_at_ns),
            "revoked": _utc(key.revoked_at_ns), "status": key.status(now_ns),
        }  # fmt: skip
        typer.echo(json.dumps(line))
    if len(keys) == KEYS_LIST_MAX:
        _err(f"only the oldest {KEYS_LIST_MAX} keys are listed; narrow with --account")


@keys_app.command("roll")
def keys_roll(
    key_id: Annotated[str, typer.Argument(help="key_... to replace")],
    database_url: DatabaseUrl = None,
    expires_in: Annotated[
        str, typer.Option(help="How long the old key keeps working: 0 (now), 90s, 30m, 24h, 7d")
    ] = "24h",
) -> None:
    """Print a new key (same account, mode and permissions) alone on stdout; the old one expires
    after --expires-in."""
    from farthing.auth import ROLL_EXPIRES_IN_S_MAX, authenticate, roll_key  # noqa: PLC0415
    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import begin_write, open_initialised  # noqa: PLC0415

    seconds = _duration_s(expires_in, maximum_s=ROLL_EXPIRES_IN_S_MAX, param_hint="--expires-in")
    engine = open_initialised(Settings.from_env(database_url=database_url).database_url)
    try:
        with begin_write(engine) as connection:
            secret = roll_key(connection, key_id, expires_in_s=seconds)
            rolled = authenticate(connection, secret)
            assert rolled is not None
            _record_admin(
                connection, action="keys.roll", object_ids=(key_id, rolled.id),
                tenant_id=rolled.tenant_id, mode=rolled.mode.value,
            )  # fmt: skip
    finally:
        engine.dispose()
    _err(f"rolled {key_id}: it stops working in {seconds} s")
    typer.echo(secret)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="key_... to revoke")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a key at once: its next request gets 401."""
    from farthing.auth import revoke_key  # noqa: PLC0415
    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import begin_write, open_initialised  # noqa: PLC0415

    engine = open_initialised(Settings.from_env(database_url=database_url).database_url)
    try:
        with begin_write(engine) as connection:
            tenant_id, mode = revoke_key(connection, key_id)
            _record_admin(
                connection, action="keys.revoke", object_ids=(key_id,), tenant_id=tenant_id,
                mode=mode,
            )  # fmt: skip
    finally:
        engine.dispose()
    _err(f"revoked {key_id}")


ModeOption = Annotated[str, typer.Option("--mode", help="test or live")]
AccountOption = Annotated[str | None, typer.Option(help="acct_... (default account if omitted)")]


def _scope_for(connection: Any, account: str | None, mode: str) -> Any:
    from farthing.auth import default_tenant_id  # noqa: PLC0415
    from farthing.db.schema import tenants  # noqa: PLC0415
    from farthing.stripe_api._request import Partition  # noqa: PLC0415

    if mode not in ("test", "live"):
        raise typer.BadParameter("mode must be test or live", param_hint="--mode")
    tenant_id = account or default_tenant_id(connection)
    if tenant_id is None:
        _err("no default account: run `farthing init` first")
        raise typer.Exit(1)
    parent = connection.execute(
        tenants.select().with_only_columns(tenants.c.parent_id).where(tenants.c.id == tenant_id)
    ).scalar_one_or_none()
    return Partition(tenant_id=tenant_id, mode=mode, platform_id=parent or tenant_id)


@events_app.command("resend")
def events_resend(
    event_id: Annotated[str, typer.Argument(help="evt_...")],
    endpoint: Annotated[str, typer.Option(help="we_... to send it to")],
    database_url: DatabaseUrl = None,
    account: AccountOption = None,
    mode: ModeOption = "test",
) -> None:
    """Queue an event for a webhook endpoint again; `farthing worker` sends it."""
    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import begin_write, open_initialised  # noqa: PLC0415
    from farthing.http._errors import ApiError  # noqa: PLC0415
    from farthing.stripe_api.webhooks import resend  # noqa: PLC0415

    engine = open_initialised(Settings.from_env(database_url=database_url).database_url)
    try:
        with begin_write(engine) as connection:
            scope = _scope_for(connection, account, mode)
            resend(connection, scope, event_id, endpoint)
            _record_admin(
                connection, action="events.resend", object_ids=(event_id, endpoint),
                tenant_id=scope.tenant_id, mode=scope.mode,
            )  # fmt: skip
    except ApiError as error:
        _err(f"error: {error.message}")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    _err(f"queued {event_id} for {endpoint}")


@events_app.command("attempts")
def events_attempts(
    endpoint: Annotated[str, typer.Option(help="we_...")],
    database_url: DatabaseUrl = None,
    account: AccountOption = None,
    mode: ModeOption = "test",
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
) -> None:
    """Print a webhook endpoint's newest delivery attempts, one JSON object per line."""
    import json  # noqa: PLC0415

    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import open_initialised  # noqa: PLC0415
    from farthing.http._errors import ApiError  # noqa: PLC0415
    from farthing.stripe_api.webhooks import list_attempts  # noqa: PLC0415

    engine = open_initialised(Settings.from_env(database_url=database_url).database_url)
    try:
        with engine.connect() as connection:
            scope = _scope_for(connection, account, mode)
            rows = list_attempts(connection, scope, endpoint, limit=limit)
    except ApiError as error:
        _err(f"error: {error.message}")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    for row in rows:
        typer.echo(json.dumps(row, sort_keys=True))


@app.command()
def prune(
    database_url: DatabaseUrl = None,
    batch_size: Annotated[
        int, typer.Option(help="Events or keys per transaction (at most 10,000)")
    ] = 1_000,
) -> None:
    """Delete events past 30 days (with their webhook deliveries) and idempotency keys past 24
    hours; events a worker still owes are kept. Prints what went, as JSON."""
    import dataclasses  # noqa: PLC0415
    import json  # noqa: PLC0415

    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import begin_write, open_initialised  # noqa: PLC0415
    from farthing.stripe_api import retention  # noqa: PLC0415

    if not 0 < batch_size <= retention.PRUNE_BATCH_SIZE_MAX:
        msg = f"1 to {retention.PRUNE_BATCH_SIZE_MAX}"
        raise typer.BadParameter(msg, param_hint="--batch-size")
    engine = open_initialised(Settings.from_env(database_url=database_url).database_url)
    try:
        report = retention.prune(engine, batch_size=batch_size)
        with begin_write(engine) as connection:
            _record_admin(connection, action="prune")
    finally:
        engine.dispose()
    typer.echo(json.dumps(dataclasses.asdict(report)))


@accounts_app.command("create")
def accounts_create(
    name: Annotated[str, typer.Option(help="Display name")],
    database_url: DatabaseUrl = None,
) -> None:
    """Create a top-level account; print its acct_... id alone on stdout."""
    from farthing.auth import create_tenant  # noqa: PLC0415
    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import begin_write, open_initialised  # noqa: PLC0415

    if not 0 < len(name) <= 200:
        raise typer.BadParameter("1 to 200 characters", param_hint="--name")
    settings = Settings.from_env(database_url=database_url)
    engine = open_initialised(settings.database_url)
    try:
        with begin_write(engine) as connection:
            tenant_id = create_tenant(connection, name=name, journal_key=settings.journal_key)
            _record_admin(
                connection, action="accounts.create", object_ids=(tenant_id,), tenant_id=tenant_id
            )
    finally:
        engine.dispose()
    typer.echo(tenant_id)


@contextlib.contextmanager
def _vault_key_file_lock() -> Iterator[None]:
    """One rotate or retire at a time: each reads the key file, re-wraps, and writes it back,
    so two at once could each write a key the other's re-wrapping then depends on (cards
    sealed under a key no file holds). Held until the command ends; keys are read inside."""
    import fcntl  # noqa: PLC0415

    from farthing.config import vault_key_file  # noqa: PLC0415

    path = vault_key_file()
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _err(f"another `farthing vault rotate` or `retire` holds {lock_path}: let it finish")
            raise typer.Exit(2) from None
        yield
    finally:
        os.close(descriptor)


def _vault_keys_or_exit() -> VaultKeys:
    from farthing.config import load_vault_keys  # noqa: PLC0415

    keys = load_vault_keys()
    if keys is None:
        _err("no vault key: set FARTHING_VAULT_KEY_FILE (or run `farthing init`)")
        raise typer.Exit(2)
    return keys


def _check_batch_size(batch_size: int) -> None:
    from farthing.stripe_api.vault_rotation import ROTATE_BATCH_SIZE_MAX  # noqa: PLC0415

    if not 0 < batch_size <= ROTATE_BATCH_SIZE_MAX:
        msg = f"1 to {ROTATE_BATCH_SIZE_MAX}"
        raise typer.BadParameter(msg, param_hint="--batch-size")


def _rewrap(database_url: str | None, keys: VaultKeys, batch_size: int, *, action: str) -> None:
    """Every sealed row under the current key of ``keys``; prints counts, exits 1 if rows are
    left under other keys. Audited as ``action`` with the key ids (never the keys)."""
    import dataclasses  # noqa: PLC0415

    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import open_initialised  # noqa: PLC0415
    from farthing.stripe_api.vault_rotation import RotationError, rewrap_all  # noqa: PLC0415
    from farthing.vault import Vault, key_id_of  # noqa: PLC0415

    _check_batch_size(batch_size)
    ids = (f"kek_{key_id_of(keys.current)}",)

    # Fixed keys (no reloading of the file) for the whole run.
    vault = Vault(dataclasses.replace(keys, path=None))
    engine = open_initialised(Settings.from_env(database_url=database_url).database_url)
    try:
        report = rewrap_all(engine, vault, batch_size=batch_size)
    except RotationError as error:
        _err(f"error: {error}")
        _record_admin_alone(database_url, action=action, object_ids=ids, success=False)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    _record_admin_alone(database_url, action=action, object_ids=ids, success=not report.remaining)
    done = ", ".join(f"{count} {name}" for name, count in report.rewrapped.items())
    _err(f"re-wrapped under vault key {report.key_id}: {done}")
    if report.remaining:
        _err(f"{report.remaining} rows are still under other keys: a server may be running with "
             "an old key configuration; restart it and run this again")  # fmt: skip
        raise typer.Exit(1)


RotateBatchSize = Annotated[int, typer.Option(help="Rows per transaction (at most 500)")]


@vault_app.command("rotate")
def vault_rotate(
    database_url: DatabaseUrl = None,
    key_only: Annotated[
        bool, typer.Option(help="Only make the new key in the key file; re-wrap nothing")
    ] = False,
    batch_size: RotateBatchSize = 500,
) -> None:
    """Make a new vault key (the old one stays readable) and re-wrap every stored card number
    and webhook secret under it, batch by batch, while servers keep serving. Run again after an
    interruption: it resumes. Then `farthing vault retire` removes the old key."""
    _check_batch_size(batch_size)
    with _vault_key_file_lock():
        _rotate(database_url, key_only=key_only, batch_size=batch_size)


def _rotate(database_url: str | None, *, key_only: bool, batch_size: int) -> None:
    from farthing.vault import VaultKeys, key_id_of, new_kek, write_key_file  # noqa: PLC0415

    keys = _vault_keys_or_exit()
    path = keys.path
    if not keys.previous:
        if path is None or "FARTHING_VAULT_KEY" in os.environ:
            _err("the keys come from FARTHING_VAULT_KEY, which this command cannot change: "
                 "rotate a key file (FARTHING_VAULT_KEY_FILE), see docs/security.md")  # fmt: skip
            raise typer.Exit(2)
        # The fingerprint key is kept as it was, so card fingerprints never change.
        keys = VaultKeys(
            current=new_kek(),
            previous=(keys.current,),
            fingerprint=keys.fingerprint_key(),
            path=path,
        )
        write_key_file(path, keys)
        _err(f"new vault key {key_id_of(keys.current)} in {keys.path}; the previous key "
             f"{key_id_of(keys.previous[0])} only opens until `farthing vault retire`")  # fmt: skip
    else:
        _err(f"resuming: vault key {key_id_of(keys.current)} is current")
    if key_only:
        _record_admin_alone(
            database_url, action="vault.new_key", object_ids=(f"kek_{key_id_of(keys.current)}",)
        )
    else:
        _rewrap(database_url, keys, batch_size, action="vault.rotate")


@vault_app.command("retire")
def vault_retire(database_url: DatabaseUrl = None, batch_size: RotateBatchSize = 500) -> None:
    """After `rotate`: check that nothing is left under the previous keys (re-wrapping any
    stragglers), then remove them from the key file. Each goes to KEYFILE.retired-KEYID (0600):
    keep it offline with backups from before the rotation, or delete it."""
    _check_batch_size(batch_size)
    with _vault_key_file_lock():
        _retire(database_url, batch_size=batch_size)


def _retire(database_url: str | None, *, batch_size: int) -> None:
    from farthing.vault import VaultKeys, key_id_of, write_key_file  # noqa: PLC0415

    keys = _vault_keys_or_exit()
    if not keys.previous:
        _err(f"nothing to retire: vault key {key_id_of(keys.current)} is the only key")
        return
    _rewrap(database_url, keys, batch_size, action="vault.retire")
    if keys.path is None or "FARTHING_VAULT_KEY" in os.environ:
        _err("nothing is sealed under the previous keys any more: remove their previous: "
             "entries from FARTHING_VAULT_KEY and restart the servers")  # fmt: skip
        return
    for key in keys.previous:
        retired = keys.path.with_name(f"{keys.path.name}.retired-{key_id_of(key)}")
        write_key_file(retired, VaultKeys(current=key))
        _err(f"retired vault key {key_id_of(key)}: moved to {retired}")
    write_key_file(keys.path, VaultKeys(current=keys.current, fingerprint=keys.fingerprint_key()))


@app.command()
def serve(
    database_url: DatabaseUrl = None,
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8420,
) -> None:
    """Serve the HTTP API (one process; run several behind a balancer on PostgreSQL)."""
    import uvicorn  # noqa: PLC0415

    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import open_initialised  # noqa: PLC0415
    from farthing.http import ApiH11Protocol, create_app  # noqa: PLC0415

    settings = Settings.from_env(database_url=database_url)
    open_initialised(settings.database_url).dispose()  # Refuse to serve an empty database.
    tune_gc()
    application = create_app(settings)
    # No access log (query strings carry 3-D Secure tokens); no Server header naming the stack.
    # No X-Forwarded-* trust: the audit trail's origin is the peer that connected, which a
    # client cannot choose by sending a header.
    uvicorn.run(
        application,
        host=host,
        port=port,
        http=ApiH11Protocol,  # Unparseable requests get the API's JSON error, not plain text.
        log_level="info",
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )


@app.command()
def worker(
    database_url: DatabaseUrl = None,
    once: Annotated[bool, typer.Option(help="Send what is due now, then exit")] = False,
    poll_s: Annotated[float, typer.Option(help="Seconds between polls when idle")] = 1.0,
) -> None:
    """Deliver webhooks: send due deliveries, signed, with retries; run as many as you like."""
    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import open_initialised  # noqa: PLC0415
    from farthing.vault import Vault  # noqa: PLC0415
    from farthing.worker import run_worker  # noqa: PLC0415

    settings = Settings.from_env(database_url=database_url)
    if settings.vault_key is None:
        typer.echo("no vault key: webhook secrets are sealed in the vault", err=True)
        raise typer.Exit(2)
    engine = open_initialised(settings.database_url)
    vault = Vault(settings.vault_key)
    try:
        asyncio.run(run_worker(engine, vault, settings, once=once, poll_s=poll_s))
    finally:
        engine.dispose()


@app.command()
def verify(
    database_url: DatabaseUrl = None,
    expect_head: Annotated[
        str | None, typer.Option(help="SEQ:MAC recorded earlier; catches truncation")
    ] = None,
) -> None:
    """Prove the ledger's integrity, and that the /v1 money rows agree with it; exit 0 only if
    both hold."""
    from rich.progress import Progress  # noqa: PLC0415

    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import open_initialised  # noqa: PLC0415
    from farthing.ledger_service import LedgerService  # noqa: PLC0415
    from farthing.stripe_api.payments import PaymentsLedger, check_payments  # noqa: PLC0415

    expected = None if expect_head is None else _parse_head(expect_head)
    settings = Settings.from_env(database_url=database_url)
    engine = open_initialised(settings.database_url)
    service = LedgerService(engine, journal_key=settings.journal_key)
    tune_gc()
    try:
        with Progress(transient=True, console=None, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("verifying journal", total=None)
            report = service.verify(
                expect_head=expected,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
            bar.update(task, description="checking payments", completed=0, total=None)
            partitions = check_payments(
                engine,
                PaymentsLedger(service),
                progress=lambda done: bar.update(task, completed=done),
            )
    except FarthingError as error:
        _err(f"FAILED: {error}")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    _err(
        f"ok: {report.entries} journal entries, {report.accounts} accounts, "
        f"{report.transfers} transfers; head {report.head_seq}:{report.head_mac}"
    )
    _err(f"ok: payments of {partitions} accounts and modes agree with the ledger")


@bench_app.command("ledger")
def bench_ledger(  # noqa: PLR0913
    database_url: DatabaseUrl = None,
    workload: Annotated[
        list[str] | None,
        typer.Option(
            help="uniform-batched, hot-batched, uniform-single, hot-single, serial-single"
        ),
    ] = None,
    transfers: Annotated[int, typer.Option(help="Transfers per batched workload")] = 200_000,
    single_transfers: Annotated[int, typer.Option(help="Transfers per single workload")] = 20_000,
    accounts: Annotated[int, typer.Option(help="Accounts to spread transfers over")] = 10_000,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per workload")
    ] = False,
) -> None:
    """Create accounts and run transfer workloads; print transfers/s and latency percentiles."""
    from farthing.bench import WORKLOADS, run_ledger_bench  # noqa: PLC0415
    from farthing.config import Settings  # noqa: PLC0415

    chosen = list(dict.fromkeys(workload or WORKLOADS))  # Each workload once, in order.
    unknown = [name for name in chosen if name not in WORKLOADS]
    if unknown:
        raise typer.BadParameter(f"unknown workload {unknown[0]!r}", param_hint="--workload")
    settings = Settings.from_env(database_url=database_url)
    tune_gc()  # As `farthing serve` runs: the benchmark measures the server's settings.
    run_ledger_bench(
        settings,
        workloads=chosen,
        transfers=transfers,
        single_transfers=single_transfers,
        accounts=accounts,
        json_output=json_output,
    )


audit_app = typer.Typer(no_args_is_help=True, help="The audit trail (who did what, when).")
app.add_typer(audit_app, name="audit")


def _audit_key() -> bytes:
    from farthing.audit import audit_key_from  # noqa: PLC0415
    from farthing.config import load_journal_key  # noqa: PLC0415

    return audit_key_from(load_journal_key())


@audit_app.command("verify")
def audit_verify(
    database_url: DatabaseUrl = None,
    expect_head: Annotated[
        str | None, typer.Option(help="SEQ:MAC recorded earlier; catches truncation")
    ] = None,
) -> None:
    """Recompute the audit trail's chain; exit 0 only if it holds."""
    from farthing.audit import AuditTamperedError, verify  # noqa: PLC0415
    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import open_initialised  # noqa: PLC0415

    expected = None if expect_head is None else _parse_head(expect_head)
    engine = open_initialised(Settings.from_env(database_url=database_url).database_url)
    try:
        report = verify(engine, _audit_key(), expect_head=expected)
    except AuditTamperedError as error:
        _err(f"FAILED: {error}")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    pruned = f" (1 to {report.pruned_through} pruned)" if report.pruned_through else ""
    _err(f"ok: {report.records} audit records{pruned}; head {report.head_seq}:{report.head_mac}")


@audit_app.command("prune")
def audit_prune(
    older_than_days: Annotated[
        int, typer.Option(help="Prune records older than this many days (at least 365)")
    ],
    database_url: DatabaseUrl = None,
    archive: Annotated[
        Path | None,
        typer.Option(help="Append the pruned records to this file first (JSON lines, 0600)"),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Records per transaction (at most 10,000)")
    ] = 1_000,
) -> None:
    """Delete the audit records older than the retention, oldest first, each batch recorded in
    the trail; prints what went, as JSON."""
    import dataclasses  # noqa: PLC0415
    import json  # noqa: PLC0415
    import time  # noqa: PLC0415

    from farthing.audit import (  # noqa: PLC0415
        AUDIT_RETENTION_DAYS_MIN,
        PRUNE_BATCH_SIZE_MAX,
        AuditTamperedError,
        open_archive,
        prune,
    )
    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import open_initialised  # noqa: PLC0415

    if not AUDIT_RETENTION_DAYS_MIN <= older_than_days <= 100 * 366:
        msg = f"{AUDIT_RETENTION_DAYS_MIN} to {100 * 366} (PCI DSS keeps a year of audit history)"
        raise typer.BadParameter(msg, param_hint="--older-than-days")
    if not 0 < batch_size <= PRUNE_BATCH_SIZE_MAX:
        raise typer.BadParameter(f"1 to {PRUNE_BATCH_SIZE_MAX}", param_hint="--batch-size")
    before_ns = time.time_ns() - older_than_days * 86_400 * 1_000_000_000
    engine = open_initialised(Settings.from_env(database_url=database_url).database_url)
    try:
        with contextlib.ExitStack() as stack:
            file = None if archive is None else stack.enter_context(open_archive(archive))
            report = prune(
                engine, _audit_key(), before_ns=before_ns, archive=file, batch_size=batch_size
            )
    except AuditTamperedError as error:
        _err(f"FAILED: {error}; nothing from there on was pruned")
        _record_admin_alone(database_url, action="audit prune", success=False)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    typer.echo(json.dumps(dataclasses.asdict(report)))


def _parse_head(text: str) -> tuple[int, str]:
    seq_text, _, mac = text.partition(":")
    if not seq_text.isdigit() or len(mac) != 64:
        raise typer.BadParameter("expected SEQ:MAC", param_hint="--expect-head")
    return int(seq_text), mac


def _ns_of(text: str | None, hint: str) -> int | None:
    """An ISO 8601 time (UTC unless it says otherwise) as Unix nanoseconds."""
    if text is None:
        return None
    import datetime as dt  # noqa: PLC0415

    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            "an ISO 8601 time, e.g. 2026-11-21T18:00", param_hint=hint
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    ns = int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
    if not 0 <= ns < 2**63:  # Stored times are signed 64-bit nanoseconds since 1970.
        raise typer.BadParameter("a time between 1970 and 2262", param_hint=hint)
    return ns


@audit_app.command("list")
def audit_list(  # noqa: PLR0913 - one option per filter
    database_url: DatabaseUrl = None,
    key: Annotated[str | None, typer.Option(help="key_... id of the actor")] = None,
    account: Annotated[str | None, typer.Option(help="acct_... acted on or for")] = None,
    object_id: Annotated[str | None, typer.Option("--object", help="an object id")] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601 time, inclusive")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 time, exclusive")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
) -> None:
    """Audit records matching every filter, newest first, one JSON object per line."""
    import json  # noqa: PLC0415

    from farthing.audit import AuditQuery, query  # noqa: PLC0415
    from farthing.config import Settings  # noqa: PLC0415
    from farthing.db.engine import open_initialised  # noqa: PLC0415

    filters = AuditQuery(
        key_id=key,
        account=account,
        object_id=object_id,
        since_ns=_ns_of(since, "--since"),
        until_ns=_ns_of(until, "--until"),
        limit=limit,
    )
    engine = open_initialised(Settings.from_env(database_url=database_url).database_url)
    try:
        found = query(engine, filters)
    finally:
        engine.dispose()
    for stored in found:
        typer.echo(json.dumps(stored.as_dict(), sort_keys=True))


def main() -> None:
    try:
        app()
    except FarthingError as error:
        _err(f"error: {error}")
        sys.exit(2)
