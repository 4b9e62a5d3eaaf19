"""The card vault: card numbers (PANs) encrypted at rest with envelope encryption.

Each secret gets its own random 256-bit data key (DEK). The secret is sealed with AES-256-GCM under
the DEK, and the DEK is sealed with AES-256-GCM under the key-encryption key (KEK) from the
configuration, which never enters the database. Both seals take associated data that names the
row (tenant, mode, object id): a ciphertext copied onto another row fails to open. Every blob is
stored with the id of the KEK that wrapped it, so a later rotation can find what to re-wrap.

Fingerprints are HMAC-SHA256 of (tenant, PAN) under a key derived from the KEK: equal cards of
one tenant compare equal, and without the KEK nobody can test guessed numbers against them (a
plain hash of a 16-digit PAN with a known prefix is brute-forced in minutes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "FINGERPRINT_LENGTH",
    "KEY_ID_LENGTH",
    "VAULT_BLOB_BYTES_MAX",
    "Vault",
    "VaultError",
    "associated_data",
]

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
# Separate labels keep the derived keys independent of each other and of the KEK's own use.
_LABEL_KEY_ID = b"farthing vault key id v1"
_LABEL_FINGERPRINT = b"farthing vault fingerprint v1"


class VaultError(Exception):
    """A blob did not open: wrong key, another row's associated data, or tampering."""


def _derive(kek: bytes, label: bytes) -> bytes:
    return hmac.new(kek, label, hashlib.sha256).digest()


def associated_data(tenant_id: str, mode: str, object_id: str) -> bytes:
    """The row binding of a blob; the separator cannot occur in ids."""
    return f"{tenant_id}\x1f{mode}\x1f{object_id}".encode()


class Vault:
    """Seals and opens secrets under one key-encryption key."""

    __slots__ = ("_fingerprint_key", "_kek", "key_id")

    def __init__(self, kek: bytes) -> None:
        if len(kek) != _KEY_BYTES:
            msg = f"the vault key must be {_KEY_BYTES} bytes"
            raise ValueError(msg)
        self._kek = AESGCM(kek)
        self._fingerprint_key = _derive(kek, _LABEL_FINGERPRINT)
        # Public: names the KEK next to each blob without revealing anything about it.
        self.key_id = _derive(kek, _LABEL_KEY_ID).hex()[:KEY_ID_LENGTH]

    def seal(self, secret: bytes, aad: bytes) -> bytes:
        """version | nonce, wrapped DEK, tag | nonce, ciphertext, tag."""
        if not 0 < len(secret) <= SECRET_BYTES_MAX:
            msg = f"secrets have 1 to {SECRET_BYTES_MAX} bytes"
            raise ValueError(msg)
        dek = AESGCM.generate_key(bit_length=_KEY_BYTES * 8)
        dek_nonce = secrets.token_bytes(_NONCE_BYTES)
        wrapped = dek_nonce + self._kek.encrypt(dek_nonce, dek, _VERSION + aad)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = nonce + AESGCM(dek).encrypt(nonce, secret, _VERSION + aad)
        return _VERSION + wrapped + sealed

    def open(self, blob: bytes, aad: bytes, *, key_id: str) -> bytes:
        if key_id != self.key_id:
            msg = f"blob sealed under vault key {key_id}, configured key is {self.key_id}"
            raise VaultError(msg)
        if not blob.startswith(_VERSION) or len(blob) > VAULT_BLOB_BYTES_MAX:
            msg = "unknown vault blob format"
            raise VaultError(msg)
        wrapped, sealed = blob[1 : 1 + _WRAPPED_DEK_BYTES], blob[1 + _WRAPPED_DEK_BYTES :]
        try:
            dek = self._kek.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _VERSION + aad)
            return AESGCM(dek).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _VERSION + aad)
        except (InvalidTag, ValueError):
            # Deliberately vague: which part failed tells an attacker nothing useful either way.
            msg = "vault blob does not open under this key and row"
            raise VaultError(msg) from None

    def fingerprint(self, tenant_id: str, secret: str) -> str:
        """Keyed, per tenant: equal secrets of one tenant give equal fingerprints."""
        mac = hmac.new(
            self._fingerprint_key, f"{tenant_id}\x1f{secret}".encode(), hashlib.sha256
        ).digest()
        return base64.b32encode(mac).decode()[:FINGERPRINT_LENGTH]

    def keyed_digest(self, secret: str) -> str:
        """A stand-in for a secret in places that only compare values (idempotency fingerprints),
        never reversible without the KEK."""
        return hmac.new(self._fingerprint_key, secret.encode(), hashlib.sha256).hexdigest()
