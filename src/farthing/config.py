"""Configuration from the environment, read once at start-up.

| variable | default | meaning |
| --- | --- | --- |
| FARTHING_DATABASE_URL | sqlite:///var/farthing.db | where the ledger lives |
| FARTHING_JOURNAL_KEY | (unset) | hex key (>= 32 bytes) of the journal's HMAC chain |
| FARTHING_JOURNAL_KEY_FILE | var/journal.key | file holding that key; `farthing init` creates it |
| FARTHING_VAULT_KEY | (unset) | hex key (32 bytes) that wraps the card vault's data keys |
| FARTHING_VAULT_KEY_FILE | var/vault.key | file holding that key; `farthing init` creates it |
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from farthing._errors import ConfigurationError
from farthing.ledger import JOURNAL_KEY_LENGTH_MIN

__all__ = [
    "DEFAULT_DATABASE_URL",
    "VAULT_KEY_LENGTH",
    "Settings",
    "ensure_journal_key_file",
    "ensure_vault_key_file",
    "load_journal_key",
    "load_vault_key",
]

DEFAULT_DATABASE_URL = "sqlite:///var/farthing.db"
DEFAULT_JOURNAL_KEY_FILE = "var/journal.key"
DEFAULT_VAULT_KEY_FILE = "var/vault.key"
# AES-256: the key-encryption key is exactly 32 bytes.
VAULT_KEY_LENGTH = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: str
    journal_key: bytes
    # None when no vault key is configured: the server runs, card endpoints answer 503.
    vault_key: bytes | None = None

    @classmethod
    def from_env(cls, *, database_url: str | None = None) -> Settings:
        url = database_url or os.environ.get("FARTHING_DATABASE_URL") or DEFAULT_DATABASE_URL
        return cls(database_url=url, journal_key=load_journal_key(), vault_key=load_vault_key())


def _key_file() -> Path:
    return Path(os.environ.get("FARTHING_JOURNAL_KEY_FILE", DEFAULT_JOURNAL_KEY_FILE))


def load_journal_key() -> bytes:
    """The journal key from FARTHING_JOURNAL_KEY, else from the key file."""
    text = os.environ.get("FARTHING_JOURNAL_KEY")
    source = "FARTHING_JOURNAL_KEY"
    if text is None:
        path = _key_file()
        if not path.exists():
            msg = f"no journal key: set FARTHING_JOURNAL_KEY or run `farthing init` ({path})"
            raise ConfigurationError(msg)
        text = path.read_text().strip()
        source = str(path)
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        msg = f"journal key in {source} is not hex"
        raise ConfigurationError(msg) from None
    if len(key) < JOURNAL_KEY_LENGTH_MIN:
        msg = f"journal key in {source} must be at least {JOURNAL_KEY_LENGTH_MIN} bytes"
        raise ConfigurationError(msg)
    return key


def ensure_journal_key_file() -> None:
    """Create the key file (mode 0600) unless a key is configured already."""
    if "FARTHING_JOURNAL_KEY" in os.environ:
        return
    path = _key_file()
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(JOURNAL_KEY_LENGTH_MIN) + "\n")


def _vault_key_file() -> Path:
    return Path(os.environ.get("FARTHING_VAULT_KEY_FILE", DEFAULT_VAULT_KEY_FILE))


def load_vault_key() -> bytes | None:
    """The vault's key-encryption key from FARTHING_VAULT_KEY, else from the key file; None when
    neither exists. A key that is configured but malformed stops start-up (ConfigurationError)."""
    text = os.environ.get("FARTHING_VAULT_KEY")
    source = "FARTHING_VAULT_KEY"
    if text is None:
        path = _vault_key_file()
        if not path.exists():
            return None
        text = path.read_text()
        source = str(path)
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        msg = f"vault key in {source} is not hex"
        raise ConfigurationError(msg) from None
    if len(key) != VAULT_KEY_LENGTH:
        msg = f"vault key in {source} must be exactly {VAULT_KEY_LENGTH} bytes"
        raise ConfigurationError(msg)
    return key


def ensure_vault_key_file() -> None:
    """Create the vault key file (mode 0600) unless a key is configured already."""
    if "FARTHING_VAULT_KEY" in os.environ:
        return
    path = _vault_key_file()
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(VAULT_KEY_LENGTH) + "\n")
