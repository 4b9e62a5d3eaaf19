"""Vault key rotation: `farthing vault rotate` re-wraps every sealed card number and webhook
secret under a new key-encryption key while a real server keeps serving (it follows the key
file without a restart), `farthing vault retire` removes the old key, and afterwards the retired
key opens nothing while every card still pays. SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
import sqlalchemy as sa

from farthing.audit import AuditQuery, operator_name, query
from farthing.auth import Mode, create_tenant
from farthing.db.engine import begin_write, create_engine
from farthing.db.schema import stripe_payment_methods, stripe_webhook_endpoints
from farthing.stripe_api._request import Partition
from farthing.stripe_api.payment_methods import _service as payment_methods
from farthing.stripe_api.payment_methods._schemas import CardInput, Fields
from farthing.stripe_api.vault_rotation import (
    ROTATE_BATCH_SIZE_MAX,
    RotationError,
    count_by_key,
    rewrap_all,
)
from farthing.stripe_api.webhooks import _service as webhooks
from farthing.stripe_api.webhooks._service import EndpointFields, secret_aad
from farthing.vault import (
    PREVIOUS_KEYS_MAX,
    Vault,
    VaultError,
    VaultKeys,
    associated_data,
    key_id_of,
    write_key_file,
)
from tests.conftest import JOURNAL_KEY
from tests.http import conftest as http_conftest
from tests.http.conftest import Server, new_tenant, running_server, serving
from tests.stripe_api.conftest import server_env_with
from tests.test_cli import cli_env, farthing

OLD_KEK = bytes.fromhex("a1" * 32)
OTHER_KEK = bytes.fromhex("b2" * 32)
PAN = b"4242424242424242"
AAD = associated_data("acct_a", "test", "pm_1")
# Test cards that pay (succeeded) through the simulated processor.
CARDS = ("4242424242424242", "5555555555554444", "4000000000000077", "378282246310005")
CVC = {"378282246310005": "1234"}
BATCH = 2
TOO_MANY = range(PREVIOUS_KEYS_MAX + 1)
_DEK_END = 1 + 12 + 32 + 16  # version, nonce, wrapped data key, tag: what a re-wrap replaces


# -------------------------------------------------------------------------------------------------
# The vault alone


def test_keys_text_round_trips_and_refuses_what_it_does_not_know() -> None:
    keys = VaultKeys(current=OTHER_KEK, previous=(OLD_KEK,), fingerprint=bytes(32))
    assert VaultKeys.parse(keys.text()) == keys
    assert VaultKeys.parse(f"  {OLD_KEK.hex()}\n") == VaultKeys(current=OLD_KEK)
    inline = f"{OTHER_KEK.hex()} previous:{OLD_KEK.hex()} # comment"
    assert VaultKeys.parse(inline) == VaultKeys(current=OTHER_KEK, previous=(OLD_KEK,))
    for bad in (
        "",
        f"{OLD_KEK.hex()} {OTHER_KEK.hex()}",  # two current keys
        f"{OLD_KEK.hex()} next:{OTHER_KEK.hex()}",
        f"{OLD_KEK.hex()} previous:{OLD_KEK.hex()}",  # listed twice
        f"{OLD_KEK.hex()} previous:zz",
        f"{OLD_KEK.hex()} fingerprint:{'00' * 16}",
        " ".join([OLD_KEK.hex(), *(f"previous:{bytes([n] * 32).hex()}" for n in TOO_MANY)]),
    ):
        with pytest.raises(ValueError) as raised:
            VaultKeys.parse(bad)
        assert OLD_KEK.hex() not in str(raised.value)


def test_rewrap_changes_only_the_wrapped_data_key() -> None:
    old = Vault(OLD_KEK)
    sealed = old.seal(PAN, AAD)
    assert sealed.key_id == key_id_of(OLD_KEK) == old.key_id
    both = Vault(VaultKeys(current=OTHER_KEK, previous=(OLD_KEK,)))
    assert both.open(sealed.blob, AAD, key_id=sealed.key_id) == PAN  # previous keys open
    rewrapped = both.rewrap(sealed.blob, AAD, key_id=sealed.key_id)
    assert rewrapped.key_id == key_id_of(OTHER_KEK)
    assert rewrapped.blob[_DEK_END:] == sealed.blob[_DEK_END:]  # the card's ciphertext is kept
    assert rewrapped.blob[:_DEK_END] != sealed.blob[:_DEK_END]
    assert Vault(OTHER_KEK).open(rewrapped.blob, AAD, key_id=rewrapped.key_id) == PAN
    with pytest.raises(VaultError):
        old.open(rewrapped.blob, AAD, key_id=sealed.key_id)  # even told the old id
    assert both.rewrap(rewrapped.blob, AAD, key_id=rewrapped.key_id) == rewrapped  # idempotent
    with pytest.raises(VaultError):
        both.rewrap(sealed.blob, associated_data("acct_b", "test", "pm_1"), key_id=old.key_id)


def test_fingerprints_survive_a_rotation_through_the_pinned_fingerprint_key() -> None:
    old = Vault(OLD_KEK)
    rotated = Vault(
        VaultKeys(current=OTHER_KEK, fingerprint=VaultKeys(current=OLD_KEK).fingerprint_key())
    )
    assert rotated.fingerprint("acct_a", PAN.decode()) == old.fingerprint("acct_a", PAN.decode())
    assert rotated.keyed_digest("x") == old.keyed_digest("x")
    assert Vault(OTHER_KEK).fingerprint("acct_a", PAN.decode()) != old.fingerprint(
        "acct_a", PAN.decode()
    )


def test_a_vault_follows_its_key_file(tmp_path: Path) -> None:
    """A server's vault re-reads a changed key file: it seals under the new current key and
    opens blobs of keys it learnt about after starting; a broken file changes nothing."""
    path = tmp_path / "vault.key"
    write_key_file(path, VaultKeys(current=OLD_KEK))
    serving_vault = Vault(VaultKeys.parse(path.read_text(), path=path))
    before = serving_vault.seal(PAN, AAD)
    assert before.key_id == key_id_of(OLD_KEK)
    rotated = VaultKeys(current=OTHER_KEK, previous=(OLD_KEK,))
    elsewhere = Vault(rotated).seal(PAN, AAD)  # another process, already on the new key
    write_key_file(path, rotated)
    assert serving_vault.open(elsewhere.blob, AAD, key_id=elsewhere.key_id) == PAN
    assert serving_vault.seal(PAN, AAD).key_id == key_id_of(OTHER_KEK)
    assert serving_vault.open(before.blob, AAD, key_id=before.key_id) == PAN
    path.write_text("not a key\n")
    assert serving_vault.seal(PAN, AAD).key_id == key_id_of(OTHER_KEK)
    write_key_file(path, VaultKeys(current=OTHER_KEK))  # retired: the old key is gone
    with pytest.raises(VaultError, match="sealed under vault key"):
        serving_vault.open(before.blob, AAD, key_id=before.key_id)


# -------------------------------------------------------------------------------------------------
# Re-wrapping stored rows (library), on both databases


def _seed(engine: sa.Engine, vault: Vault, cards: int) -> Partition:
    with begin_write(engine) as connection:
        tenant = create_tenant(connection, name="vault tenant", journal_key=JOURNAL_KEY)
        scope = Partition(tenant_id=tenant, mode=Mode.test.value, platform_id=tenant)
        for number in CARDS[:cards]:
            card = CardInput(number=number, exp_month=12, exp_year=2034)
            payment_methods.create(connection, scope, vault, card, Fields({}, None))
        fields = EndpointFields(url="https://example.com/hook", enabled_events=("*",))
        endpoint = webhooks.create(connection, scope, vault, fields, allow_loopback=False)
        webhooks.roll_secret(connection, scope, vault, endpoint["id"], overlap_s=3600)
    return scope


def _sealed_rows(engine: sa.Engine) -> list[tuple[str, bytes, str, bytes]]:
    """(key id, blob, what, aad) of every sealed value."""
    methods, endpoints = stripe_payment_methods, stripe_webhook_endpoints
    found: list[tuple[str, bytes, str, bytes]] = []
    with engine.connect() as connection:
        for row in connection.execute(sa.select(methods)).mappings():
            aad = associated_data(row["tenant_id"], row["mode"], row["id"])
            found.append((row["vault_key_id"], bytes(row["pan_sealed"]), row["id"], aad))
        for row in connection.execute(sa.select(endpoints)).mappings():
            tenant = row["tenant_id"]
            scope = Partition(tenant_id=tenant, mode=row["mode"], platform_id=tenant)
            aad = secret_aad(scope, row["id"])
            found.extend(
                (row["secret_key_id"], bytes(row[column]), row["id"], aad)
                for column in ("secret_sealed", "previous_secret_sealed")
                if row[column] is not None
            )
    return found


class _InterruptedError(Exception):
    pass


def test_rewrap_is_batched_restartable_and_idempotent(engine: sa.Engine) -> None:
    old = Vault(OLD_KEK)
    _seed(engine, old, cards=len(CARDS))
    assert count_by_key(engine) == {old.key_id: len(CARDS) + 1}
    new = Vault(VaultKeys(current=OTHER_KEK, previous=(OLD_KEK,)))
    batches: list[tuple[str, int]] = []

    def stop(table: str, rows: int) -> None:
        batches.append((table, rows))
        raise _InterruptedError  # a crash between batches: the committed batch stays done

    with pytest.raises(_InterruptedError):
        rewrap_all(engine, new, batch_size=BATCH, after_batch=stop)
    assert batches == [("payment_methods", BATCH)]
    assert count_by_key(engine) == {old.key_id: len(CARDS) + 1 - BATCH, new.key_id: BATCH}
    report = rewrap_all(engine, new, batch_size=BATCH)
    # The rest, and nothing twice.
    assert dict(report.rewrapped) == {"payment_methods": len(CARDS) - BATCH,
                                      "webhook_endpoints": 1}  # fmt: skip
    assert (report.remaining, report.key_id, report.passes) == (0, new.key_id, 1)
    again = rewrap_all(engine, new)
    assert dict(again.rewrapped) == {"payment_methods": 0, "webhook_endpoints": 0}
    for key_id, blob, what, aad in _sealed_rows(engine):
        assert key_id == new.key_id, what
        assert Vault(OTHER_KEK).open(blob, aad, key_id=key_id), what
        with pytest.raises(VaultError):
            old.open(blob, aad, key_id=old.key_id)


def test_a_row_under_an_unknown_key_stops_the_job_by_name(engine: sa.Engine) -> None:
    _seed(engine, Vault(OLD_KEK), cards=1)
    unrelated = Vault(VaultKeys(current=OTHER_KEK, previous=(bytes.fromhex("c3" * 32),)))
    with pytest.raises(RotationError, match=r"pm_\S+ \(vault key [0-9a-f]{16}\)") as raised:
        rewrap_all(engine, unrelated)
    assert OLD_KEK.hex() not in str(raised.value)
    assert count_by_key(engine) == {key_id_of(OLD_KEK): 2}  # nothing half-done


# -------------------------------------------------------------------------------------------------
# The whole rotation against a running server


def _pay(client: httpx.Client, method_id: str) -> str:
    response = client.post(
        "/v1/payment_intents",
        data={"amount": "1099", "currency": "usd", "payment_method": method_id, "confirm": "true"},
    )
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def _new_card(client: httpx.Client, number: str) -> dict[str, Any]:
    response = client.post(
        "/v1/payment_methods",
        data={"type": "card", "card[number]": number, "card[exp_month]": "12",
              "card[exp_year]": "2034", "card[cvc]": CVC.get(number, "123")},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    card: dict[str, Any] = response.json()
    return card


def _key_of(engine: sa.Engine, method_id: str) -> str:
    with engine.connect() as connection:
        key_id: str = connection.execute(
            sa.select(stripe_payment_methods.c.vault_key_id).where(
                stripe_payment_methods.c.id == method_id
            )
        ).scalar_one()
    return key_id


@contextlib.contextmanager
def _server_with_key_file(kind: str, directory: Path, key_file: Path) -> Iterator[Server]:
    env = server_env_with(FARTHING_VAULT_KEY_FILE=str(key_file))
    with contextlib.ExitStack() as stack:
        with mock.patch.object(http_conftest, "server_env", return_value=env):
            server = stack.enter_context(serving(kind, directory))
        yield server


def _cli(server: Server, key_file: Path, *args: str, expect: int = 0) -> str:
    env = cli_env(FARTHING_VAULT_KEY_FILE=str(key_file))
    result = farthing(*args, "--database-url", server.database_url, env=env, expect=expect)
    assert result.stdout == ""  # no key, ever
    keys = VaultKeys.parse(key_file.read_text())
    for key in (keys.current, *keys.previous, OLD_KEK):
        assert key.hex() not in result.stderr
    return result.stderr


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_rotation_while_serving(kind: str, tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "vault.key"
    key_file.parent.mkdir()
    write_key_file(key_file, VaultKeys(current=OLD_KEK))
    with _server_with_key_file(kind, tmp_path, key_file) as server:
        tenant = new_tenant(server, name="rotating tenant")
        client = tenant.client
        before = [_new_card(client, number) for number in CARDS]
        endpoint = client.post(
            "/v1/webhook_endpoints",
            data={"url": "https://example.com/hook", "enabled_events[]": "*"},
        ).json()
        assert client.post(f"/v1/webhook_endpoints/{endpoint['id']}/roll_secret").is_success
        assert _pay(client, before[0]["id"]) == "succeeded"
        old_blobs = {what: blob for _key, blob, what, _aad in _sealed_rows(server.engine)}

        # The new key, written by the CLI; the server follows the file without a restart.
        stderr = _cli(server, key_file, "vault", "rotate", "--key-only")
        staged = VaultKeys.parse(key_file.read_text())
        new_id = key_id_of(staged.current)
        assert f"new vault key {new_id}" in stderr
        assert staged.previous == (OLD_KEK,)
        assert staged.fingerprint == VaultKeys(current=OLD_KEK).fingerprint_key()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        fresh = _new_card(client, CARDS[0])
        assert _key_of(server.engine, fresh["id"]) == new_id
        assert fresh["card"]["fingerprint"] == before[0]["card"]["fingerprint"]

        # Re-wrapping, two rows a transaction, with requests served between the batches: old
        # cards (re-wrapped or not yet) pay, new cards are stored.
        served: list[str] = []

        def between_batches(_table: str, _rows: int) -> None:
            served.append(_pay(client, before[len(served) % len(before)]["id"]))
            served.append(_new_card(client, CARDS[1])["object"])

        fixed = Vault(dataclasses.replace(staged, path=None))
        report = rewrap_all(server.engine, fixed, batch_size=BATCH, after_batch=between_batches)
        assert dict(report.rewrapped) == {"payment_methods": len(CARDS), "webhook_endpoints": 1}
        assert report.remaining == 0
        assert len(served) == 2 * (len(CARDS) // BATCH + 1)
        assert set(served) == {"succeeded", "payment_method"}

        # The CLI resumes with nothing left, then retires the old key.
        stderr = _cli(server, key_file, "vault", "rotate")
        assert "resuming" in stderr
        assert "0 payment_methods, 0 webhook_endpoints" in stderr
        stderr = _cli(server, key_file, "vault", "retire")
        retired_file = key_file.with_name(f"vault.key.retired-{key_id_of(OLD_KEK)}")
        assert stat.S_IMODE(retired_file.stat().st_mode) == 0o600
        final = VaultKeys.parse(key_file.read_text())
        assert (final.current, final.previous, final.fingerprint) == (
            staged.current, (), staged.fingerprint,
        )  # fmt: skip
        cards = len(before) + 1 + len(served) // 2
        assert count_by_key(server.engine) == {new_id: cards + 1}
        # Each step is in the audit trail as the operator's, naming key ids, never keys.
        audited = [
            (stored.record.action, stored.record.outcome, stored.record.object_ids)
            for stored in query(server.engine, AuditQuery(key_id=operator_name()))
        ]
        kek = f"kek_{new_id}"
        assert audited == [
            ("vault.retire", "success", (kek,)),
            ("vault.rotate", "success", (kek,)),
            ("vault.new_key", "success", (kek,)),
        ]

        # After: every card from before the rotation still pays, fingerprints are unchanged,
        # and the webhook secret (sealed before) can be rolled again.
        for card in before:
            assert _pay(client, card["id"]) == "succeeded"
            fetched = client.get(f"/v1/payment_methods/{card['id']}").json()
            assert fetched["card"]["fingerprint"] == card["card"]["fingerprint"]
        assert client.post(f"/v1/webhook_endpoints/{endpoint['id']}/roll_secret").is_success
        client.close()
        # A server (re)started with only the final keys serves the old cards as well.
        env = server_env_with(FARTHING_VAULT_KEY_FILE=str(key_file))
        log = tmp_path / "restarted.log"
        with (
            mock.patch.object(http_conftest, "server_env", return_value=env),
            running_server(server.database_url, log) as restarted,
            httpx.Client(base_url=restarted, headers=dict(client.headers)) as again,
        ):
            assert _pay(again, before[-1]["id"]) == "succeeded"

        # The retired key opens nothing; the card ciphertexts themselves never changed.
        retired = Vault(VaultKeys.parse(retired_file.read_text()))
        current = Vault(final)
        for key_id, blob, what, aad in _sealed_rows(server.engine):
            assert key_id == new_id
            with pytest.raises(VaultError):
                retired.open(blob, aad, key_id=retired.key_id)
            assert current.open(blob, aad, key_id=key_id)
            if what.startswith("pm_") and what in old_blobs:
                assert blob[_DEK_END:] == old_blobs[what][_DEK_END:]
                assert blob[:_DEK_END] != old_blobs[what][:_DEK_END]


def test_cli_refusals(sqlite_url: str, tmp_path: Path) -> None:
    engine = create_engine(sqlite_url)
    try:
        _seed(engine, Vault(OLD_KEK), cards=1)
    finally:
        engine.dispose()
    # Keys in the environment cannot be rewritten by a command.
    env = cli_env(FARTHING_VAULT_KEY=OLD_KEK.hex())
    result = farthing("vault", "rotate", "--database-url", sqlite_url, env=env, expect=2)
    assert "FARTHING_VAULT_KEY_FILE" in result.stderr
    # ... but they can re-wrap, when they list a previous key.
    env = cli_env(FARTHING_VAULT_KEY=f"{OTHER_KEK.hex()} previous:{OLD_KEK.hex()}")
    result = farthing("vault", "retire", "--database-url", sqlite_url, env=env)
    assert "remove their previous: entries from FARTHING_VAULT_KEY" in result.stderr
    assert "re-wrapped under vault key" in result.stderr
    result = farthing("vault", "rotate", "--database-url", sqlite_url, env=env)
    assert "0 payment_methods, 0 webhook_endpoints" in result.stderr
    # Nothing to retire; no key at all; a batch size out of range.
    key_file = tmp_path / "vault.key"
    write_key_file(key_file, VaultKeys(current=OTHER_KEK))
    env = cli_env(FARTHING_VAULT_KEY_FILE=str(key_file))
    result = farthing("vault", "retire", "--database-url", sqlite_url, env=env)
    assert "nothing to retire" in result.stderr
    env = cli_env(FARTHING_VAULT_KEY_FILE=str(tmp_path / "absent.key"))
    assert "no vault key" in farthing("vault", "rotate", env=env, expect=2).stderr
    env = cli_env(FARTHING_VAULT_KEY_FILE=str(key_file))
    big = str(ROTATE_BATCH_SIZE_MAX + 1)
    result = farthing("vault", "rotate", "--batch-size", big, "--database-url", sqlite_url,
                      env=env, expect=2)  # fmt: skip
    assert "--batch-size" in result.stderr
    # One rotate or retire at a time: another holding the key file's lock refuses this one.
    before = key_file.read_text()
    lock = os.open(f"{key_file}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for command in ("rotate", "retire"):
            result = farthing("vault", command, "--database-url", sqlite_url, env=env, expect=2)
            assert "let it finish" in result.stderr
    finally:
        os.close(lock)
    assert key_file.read_text() == before
    # A key file whose keys do not open the rows: the job names the row and stops.
    unrelated = (bytes.fromhex("c3" * 32), bytes.fromhex("d4" * 32))
    write_key_file(key_file, VaultKeys(current=unrelated[0], previous=unrelated[1:]))
    result = farthing("vault", "rotate", "--database-url", sqlite_url, env=env, expect=1)
    assert "does not open under the configured keys" in result.stderr
