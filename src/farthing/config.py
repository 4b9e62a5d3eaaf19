"""Configuration from the environment, read once at start-up.

| variable | default | meaning |
| --- | --- | --- |
| FARTHING_DATABASE_URL | sqlite:///var/farthing.db | where the ledger lives |
| FARTHING_JOURNAL_KEY | (unset) | hex key (>= 32 bytes) of the journal's HMAC chain |
| FARTHING_JOURNAL_KEY_FILE | var/journal.key | file holding that key; `farthing init` creates it |
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from farthing._errors import ConfigurationError
from farthing.ledger import JOURNAL_KEY_LENGTH_MIN

__all__ = ["DEFAULT_DATABASE_URL", "Settings", "ensure_journal_key_file", "load_journal_key"]

DEFAULT_DATABASE_URL = "sqlite:///var/farthing.db"
DEFAULT_JOURNAL_KEY_FILE = "var/journal.key"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: str
    journal_key: bytes

    @classmethod
    def from_env(cls, *, database_url: str | None = None) -> Settings:
        url = database_url or os.environ.get("FARTHING_DATABASE_URL") or DEFAULT_DATABASE_URL
        return cls(database_url=url, journal_key=load_journal_key())


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
