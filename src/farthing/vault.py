"""The card vault: card numbers (PANs) encrypted at rest with envelope encryption.

Each secret gets its own random 256-bit data key (DEK). The secret is sealed with AES-256-GCM under
the DEK, and the DEK is sealed with AES-256-GCM under a key-encryption key (KEK) from the
configuration, which never enters the database. Both seals take associated data that names the
row (tenant, mode, object id): a ciphertext copied onto another row fails to open. Every blob is
stored with the id of the KEK that wrapped it.

Rotation: the vault holds one current KEK, which seals, and optionally previous KEKs, which only
open. ``rewrap`` moves a blob's DEK from a previous KEK to the current one without touching the
secret's own ciphertext; `farthing vault rotate` does that to every row. A vault whose keys came
from a key file re-reads the file when it changes, so running servers follow a rotation without
a restart.

Fingerprints are HMAC-SHA256 of (tenant, PAN) under a fingerprint key: equal cards of one tenant
compare equal, and without the key nobody can test guessed numbers against them (a plain hash of
a 16-digit PAN with a known prefix is brute-forced in minutes). The fingerprint key is derived
from the first KEK and kept, as such, across rotations, so fingerprints never change; it can
fingerprint, not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "FINGERPRINT_LENGTH",
    "KEY_ID_LENGTH",
    "PREVIOUS_KEYS_MAX",
    "VAULT_BLOB_BYTES_MAX",
    "Sealed",
    "Vault",
    "VaultError",
    "VaultKeys",
    "associated_data",
    "key_id_of",
    "new_kek",
    "write_key_file",
]

_log = logging.getLogger("farthing.vault")

_KEY_BYTES = 32
_NONCE_BYTES = 12  # GCM's standard nonce; random nonces are safe since each DEK seals once.
_TAG_BYTES = 16
_VERSION = b"\x01"
_WRAPPED_DEK_BYTES = _NONCE_BYTES + _KEY_BYTES + _TAG_BYTES
# The largest secret the vault seals (a PAN has at most 19 digits; room for other card data).
SECRET_BYTES_MAX = 64
VAULT_BLOB_BYTES_MAX = len(_VERSION) + _WRAPPED_DEK_BYTES + _NONCE_BYTES + SECRET_BYTES_MAX + 16
KEY_ID_LENGTH = 16  # hex characters
FINGERPRINT_LENGTH = 16  # characters, like Stripe's card fingerprints
# A rotation needs one previous key; a few allow a rotation to start before the last is retired.
PREVIOUS_KEYS_MAX = 4
KEYS_TEXT_BYTES_MAX = 4096
# Separate labels keep the derived keys independent of each other and of the KEK's own use.
_LABEL_KEY_ID = b"farthing vault key id v1"
_LABEL_FINGERPRINT = b"farthing vault fingerprint v1"
_PREVIOUS = "previous:"
_FINGERPRINT = "fingerprint:"


class VaultError(Exception):
    """A blob did not open: wrong key, another row's associated data, or tampering."""


def _derive(kek: bytes, label: bytes) -> bytes:
    return hmac.new(kek, label, hashlib.sha256).digest()


def key_id_of(kek: bytes) -> str:
    """The public name of a KEK, stored next to each blob; reveals nothing about the key."""
    return _derive(kek, _LABEL_KEY_ID).hex()[:KEY_ID_LENGTH]


def associated_data(tenant_id: str, mode: str, object_id: str) -> bytes:
    """The row binding of a blob; the separator cannot occur in ids."""
    return f"{tenant_id}\x1f{mode}\x1f{object_id}".encode()


def _key_from_hex(text: str, what: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        msg = f"{what} is not hex"
        raise ValueError(msg) from None
    if len(key) != _KEY_BYTES:
        msg = f"{what} must be exactly {_KEY_BYTES} bytes ({2 * _KEY_BYTES} hex digits)"
        raise ValueError(msg)
    return key


@dataclass(frozen=True, slots=True, kw_only=True)
class VaultKeys:
    """The vault's keys: ``current`` seals (and opens), ``previous`` only open, ``fingerprint``
    keys fingerprints and digests (None: derived from ``current``, as before any rotation).
    ``path`` is the key file they came from, if any: a Vault re-reads it when it changes."""

    current: bytes
    previous: tuple[bytes, ...] = ()
    fingerprint: bytes | None = None
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        keys = (self.current, *self.previous)
        if any(len(key) != _KEY_BYTES for key in (*keys, self.fingerprint or self.current)):
            msg = f"vault keys are {_KEY_BYTES} bytes"
            raise ValueError(msg)
        if len(self.previous) > PREVIOUS_KEYS_MAX:
            msg = f"at most {PREVIOUS_KEYS_MAX} previous vault keys"
            raise ValueError(msg)
        if len({key_id_of(key) for key in keys}) != len(keys):
            msg = "a vault key is listed twice"
            raise ValueError(msg)

    def fingerprint_key(self) -> bytes:
        return self.fingerprint or _derive(self.current, _LABEL_FINGERPRINT)

    @classmethod
    def parse(cls, text: str, *, path: Path | None = None) -> VaultKeys:
        """``CURRENT [previous:HEX]... [fingerprint:HEX]``, hex keys separated by whitespace
        (newlines in a file); ``#`` starts a comment. One bare key is the format before rotation
        existed. ValueError names the problem, never a key."""
        if len(text) > KEYS_TEXT_BYTES_MAX:
            msg = f"vault keys take at most {KEYS_TEXT_BYTES_MAX} characters"
            raise ValueError(msg)
        words = [
            word for line in text.splitlines() for word in line.partition("#")[0].split()
        ]  # fmt: skip
        current = [word for word in words if ":" not in word]
        previous = [word.removeprefix(_PREVIOUS) for word in words if word.startswith(_PREVIOUS)]
        fingerprint = [
            word.removeprefix(_FINGERPRINT) for word in words if word.startswith(_FINGERPRINT)
        ]
        if len(current) != 1 or len(fingerprint) > 1:
            msg = "vault keys need exactly one current key and at most one fingerprint key"
            raise ValueError(msg)
        if len(current) + len(previous) + len(fingerprint) != len(words):
            msg = f"vault keys take only HEX, {_PREVIOUS}HEX and {_FINGERPRINT}HEX"
            raise ValueError(msg)
        return cls(
            current=_key_from_hex(current[0], "the current vault key"),
            previous=tuple(_key_from_hex(word, "a previous vault key") for word in previous),
            fingerprint=(
                _key_from_hex(fingerprint[0], "the fingerprint key") if fingerprint else None
            ),
            path=path,
        )

    def text(self) -> str:
        """The key file's contents (what ``parse`` reads)."""
        lines = [
            "# farthing vault keys: the first seals, previous: ones only open (until retired),",
            "# fingerprint: keys card fingerprints. Keep out of database backups.",
            self.current.hex(),
            *(_PREVIOUS + key.hex() for key in self.previous),
        ]
        if self.fingerprint is not None:
            lines.append(_FINGERPRINT + self.fingerprint.hex())
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Sealed:
    """A blob and the id of the KEK that wraps its data key: stored together, always."""

    key_id: str
    blob: bytes


@dataclass(frozen=True, slots=True)
class _Keyring:
    """One immutable set of keys; a reload swaps in a new one, so a call never sees a mix."""

    current_id: str
    keks: Mapping[str, AESGCM]
    fingerprint_key: bytes

    @classmethod
    def of(cls, keys: VaultKeys) -> _Keyring:
        keks = {key_id_of(key): AESGCM(key) for key in (keys.current, *keys.previous)}
        return cls(key_id_of(keys.current), MappingProxyType(keks), keys.fingerprint_key())


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is replaced or rewritten; None when it is gone."""
    try:
        status = path.stat()
    except OSError:
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_size)


class Vault:
    """Seals under the current KEK; opens under any configured KEK."""

    __slots__ = ("_lock", "_path", "_ring", "_stamp")

    def __init__(self, keys: VaultKeys | bytes) -> None:
        if isinstance(keys, bytes):
            if len(keys) != _KEY_BYTES:
                msg = f"the vault key must be {_KEY_BYTES} bytes"
                raise ValueError(msg)
            keys = VaultKeys(current=keys)
        self._ring = _Keyring.of(keys)
        self._path = keys.path
        self._stamp = None if keys.path is None else _stamp(keys.path)
        self._lock = threading.Lock()

    @property
    def key_id(self) -> str:
        """The current KEK's id (what ``seal`` uses now)."""
        return self._ring.current_id

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._ring.keks)

    def _fresh(self) -> _Keyring:
        """The keyring, re-read first if the key file changed: one stat per seal or open, so
        every process follows a rotation at its next use of the vault."""
        if self._path is None or _stamp(self._path) == self._stamp:
            return self._ring
        with self._lock:
            stamp = _stamp(self._path)
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    text = self._path.read_text()
                    self._ring = _Keyring.of(VaultKeys.parse(text, path=self._path))
                except (OSError, ValueError) as error:
                    # Keep serving with the keys we have; the message never contains a key.
                    _log.warning("vault key file %s not reloaded: %s", self._path, error)
                else:
                    _log.info("vault key file %s reloaded", self._path)
            return self._ring

    def seal(self, secret: bytes, aad: bytes, *, key_id: str | None = None) -> Sealed:
        """version | nonce, wrapped DEK, tag | nonce, ciphertext, tag; under the current KEK, or
        under ``key_id`` (a blob that must share its row's key id with another one)."""
        if not 0 < len(secret) <= SECRET_BYTES_MAX:
            msg = f"secrets have 1 to {SECRET_BYTES_MAX} bytes"
            raise ValueError(msg)
        ring = self._fresh()
        chosen = ring.current_id if key_id is None else key_id
        dek = AESGCM.generate_key(bit_length=_KEY_BYTES * 8)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = nonce + AESGCM(dek).encrypt(nonce, secret, _VERSION + aad)
        return Sealed(chosen, _VERSION + self._wrap(ring, chosen, dek, aad) + sealed)

    def _wrap(self, ring: _Keyring, key_id: str, dek: bytes, aad: bytes) -> bytes:
        kek = ring.keks.get(key_id)
        if kek is None:
            msg = f"vault key {key_id} is not configured"
            raise VaultError(msg)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + kek.encrypt(nonce, dek, _VERSION + aad)

    def _unseal(self, blob: bytes, aad: bytes, key_id: str) -> tuple[_Keyring, bytes, bytes]:
        """(keyring used, DEK, secret): both layers opened and authenticated."""
        ring = self._fresh()  # A rotation may have added this key, or retired it.
        kek = ring.keks.get(key_id)
        if kek is None:
            msg = f"blob sealed under vault key {key_id}, configured keys are {sorted(ring.keks)}"
            raise VaultError(msg)
        if not blob.startswith(_VERSION) or len(blob) > VAULT_BLOB_BYTES_MAX:
            msg = "unknown vault blob format"
            raise VaultError(msg)
        wrapped, sealed = blob[1 : 1 + _WRAPPED_DEK_BYTES], blob[1 + _WRAPPED_DEK_BYTES :]
        try:
            dek = kek.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _VERSION + aad)
            secret = AESGCM(dek).decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _VERSION + aad
            )
        except (InvalidTag, ValueError):
            # Deliberately vague: which part failed tells an attacker nothing useful either way.
            msg = "vault blob does not open under this key and row"
            raise VaultError(msg) from None
        return ring, dek, secret

    def open(self, blob: bytes, aad: bytes, *, key_id: str) -> bytes:
        return self._unseal(blob, aad, key_id)[2]

    def rewrap(self, blob: bytes, aad: bytes, *, key_id: str) -> Sealed:
        """The blob with its data key wrapped under the current KEK instead; the secret's
        ciphertext is kept byte for byte. A blob already under the current KEK is returned as
        is. The whole blob is opened first, so a damaged one is never carried over."""
        ring, dek, _secret = self._unseal(blob, aad, key_id)
        if key_id == ring.current_id:
            return Sealed(key_id, blob)
        rewrapped = self._wrap(ring, ring.current_id, dek, aad)
        return Sealed(ring.current_id, _VERSION + rewrapped + blob[1 + _WRAPPED_DEK_BYTES :])

    def fingerprint(self, tenant_id: str, secret: str) -> str:
        """Keyed, per tenant: equal secrets of one tenant give equal fingerprints."""
        mac = hmac.new(
            self._ring.fingerprint_key, f"{tenant_id}\x1f{secret}".encode(), hashlib.sha256
        ).digest()
        return base64.b32encode(mac).decode()[:FINGERPRINT_LENGTH]

    def keyed_digest(self, secret: str) -> str:
        """A stand-in for a secret in places that only compare values (idempotency fingerprints),
        never reversible without the fingerprint key."""
        return hmac.new(self._ring.fingerprint_key, secret.encode(), hashlib.sha256).hexdigest()


def new_kek() -> bytes:
    return secrets.token_bytes(_KEY_BYTES)


def write_key_file(path: Path, keys: VaultKeys) -> None:
    """Replace the key file atomically (mode 0600): readers see the old file or the new one,
    never half of one, and a crash leaves one of the two."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(keys.text())
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
