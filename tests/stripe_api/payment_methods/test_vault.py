"""The card vault (farthing.vault) and its key configuration, without a server."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from farthing._errors import ConfigurationError
from farthing.config import load_vault_key
from farthing.vault import FINGERPRINT_LENGTH, Vault, VaultError, associated_data
from tests.http.conftest import FARTHING

KEK = bytes.fromhex("11" * 32)
OTHER_KEK = bytes.fromhex("22" * 32)
PAN = b"4242424242424242"
AAD = associated_data("acct_a", "test", "pm_1")


def test_round_trip_and_key_id() -> None:
    vault = Vault(KEK)
    blob = vault.seal(PAN, AAD).blob
    assert PAN not in blob
    assert vault.open(blob, AAD, key_id=vault.key_id) == PAN
    # A fresh data key and nonces every time: equal numbers give unrelated blobs.
    assert vault.seal(PAN, AAD).blob != blob
    assert Vault(KEK).key_id == vault.key_id != Vault(OTHER_KEK).key_id


def test_wrong_key_cannot_open() -> None:
    blob = Vault(KEK).seal(PAN, AAD).blob
    other = Vault(OTHER_KEK)
    with pytest.raises(VaultError):
        other.open(blob, AAD, key_id=other.key_id)  # Pretend the ids matched: the tag fails.
    with pytest.raises(VaultError, match="sealed under vault key"):
        other.open(blob, AAD, key_id=Vault(KEK).key_id)


@pytest.mark.parametrize("position", [0, 1, 20, 70, -1])
def test_tampered_blob_does_not_open(position: int) -> None:
    vault = Vault(KEK)
    blob = bytearray(vault.seal(PAN, AAD).blob)
    blob[position] ^= 0x01
    with pytest.raises(VaultError):
        vault.open(bytes(blob), AAD, key_id=vault.key_id)


@pytest.mark.parametrize(
    "aad",
    [
        associated_data("acct_b", "test", "pm_1"),
        associated_data("acct_a", "live", "pm_1"),
        associated_data("acct_a", "test", "pm_2"),
    ],
)
def test_blob_is_bound_to_its_row(aad: bytes) -> None:
    vault = Vault(KEK)
    blob = vault.seal(PAN, AAD).blob
    with pytest.raises(VaultError):
        vault.open(blob, aad, key_id=vault.key_id)


def test_fingerprint_is_keyed_and_per_tenant() -> None:
    vault = Vault(KEK)
    first = vault.fingerprint("acct_a", PAN.decode())
    assert len(first) == FINGERPRINT_LENGTH
    assert vault.fingerprint("acct_a", PAN.decode()) == first
    assert vault.fingerprint("acct_b", PAN.decode()) != first
    assert vault.fingerprint("acct_a", "4000056655665556") != first
    assert Vault(OTHER_KEK).fingerprint("acct_a", PAN.decode()) != first


def test_key_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FARTHING_VAULT_KEY", raising=False)
    monkeypatch.setenv("FARTHING_VAULT_KEY_FILE", str(tmp_path / "absent.key"))
    assert load_vault_key() is None
    (tmp_path / "vault.key").write_text("ab" * 32 + "\n")
    monkeypatch.setenv("FARTHING_VAULT_KEY_FILE", str(tmp_path / "vault.key"))
    assert load_vault_key() == bytes.fromhex("ab" * 32)
    monkeypatch.setenv("FARTHING_VAULT_KEY", "cd" * 32)
    assert load_vault_key() == bytes.fromhex("cd" * 32)
    for bad in ("zz" * 32, "cd" * 16, "cd" * 33):
        monkeypatch.setenv("FARTHING_VAULT_KEY", bad)
        with pytest.raises(ConfigurationError, match="vault key"):
            load_vault_key()


def test_init_creates_a_private_vault_key_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARTHING_")}
    env["FARTHING_JOURNAL_KEY"] = "6a" * 32
    url = f"sqlite:///{tmp_path / 'farthing.db'}"
    for _run in range(2):  # The second init keeps the key.
        subprocess.run(
            [FARTHING, "init", "--database-url", url], env=env, cwd=tmp_path, check=True, timeout=60
        )
        key_file = tmp_path / "var" / "vault.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        if _run == 0:
            first = key_file.read_text()
    assert key_file.read_text() == first
    assert len(bytes.fromhex(first.strip())) == 32
