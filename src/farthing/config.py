"""Configuration from the environment, read once at start-up.

| variable | default | meaning |
| --- | --- | --- |
| FARTHING_DATABASE_URL | sqlite:///var/farthing.db | where the ledger lives |
| FARTHING_JOURNAL_KEY | (unset) | hex key (>= 32 bytes) of the journal's HMAC chain |
| FARTHING_JOURNAL_KEY_FILE | var/journal.key | file holding that key; `farthing init` creates it |
| FARTHING_VAULT_KEY | (unset) | hex key (32 bytes) that wraps the card vault's data keys |
| FARTHING_VAULT_KEY_FILE | var/vault.key | file holding that key; `farthing init` creates it, |
| | | `farthing vault rotate` rewrites it (see farthing.vault.VaultKeys for rotation's format) |
| FARTHING_PRICING | (unset) | per currency ``usd:290:30,eur:250:25`` (basis points:fixed minor) |
| FARTHING_FEE_BPS | 290 | percentage part of the fee for other currencies, in basis points (2.9%) |
| FARTHING_FEE_FIXED_MINOR | 30 | fixed part of the fee for other currencies, in minor units |
| FARTHING_AVAILABLE_DELAY_S | 172800 | seconds until a charge's funds are available (0 allowed) |
| FARTHING_AUTHORIZATION_TTL_S | 604800 | an uncaptured authorisation expires after this (7 days) |
| FARTHING_RATE_LIMIT_PER_S | 1000 | requests per second per API key, on average (429 beyond) |
| FARTHING_RATE_LIMIT_BURST | 2000 | requests per API key at once |
| FARTHING_AUTH_FAILURES_PER_S | 5 | failed authentications per second per client address, on |
| | | average (429 beyond); also the audit trail's budget for failed requests without a key |
| FARTHING_AUTH_FAILURE_BURST | 50 | failed authentications per client address at once |
| FARTHING_REDIS_URL | (unset) | Redis shared by every server process for the rate-limit buckets |
| FARTHING_REDIS_KEY_PREFIX | farthing:ratelimit: | prefix of those buckets' Redis keys |
| FARTHING_WEBHOOK_ALLOW_LOOPBACK | (unset) | `1`: test-mode webhooks may go to loopback URLs |
| FARTHING_SERVE_WORKER | (unset) | `1`: `farthing serve` also runs the worker (webhooks, stream) |
| FARTHING_NATS_URL | (unset) | NATS server: `farthing worker` also publishes events to JetStream |
| FARTHING_NATS_STREAM | FARTHING_EVENTS | the JetStream stream |
| FARTHING_NATS_SUBJECTS | farthing.events | its subject prefix (`{prefix}.{mode}.{acct}.{type}`) |
| FARTHING_PAYOUT_DELAY_S | 0 | seconds a payout spends in each simulated bank-rail state |
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from farthing._errors import ConfigurationError
from farthing.ledger import JOURNAL_KEY_LENGTH_MIN, TIMEOUT_S_MAX, is_currency
from farthing.vault import VaultKeys

__all__ = [
    "DEFAULT_DATABASE_URL",
    "VAULT_KEY_LENGTH",
    "PaymentsSettings",
    "Price",
    "Settings",
    "ensure_journal_key_file",
    "ensure_vault_key_file",
    "load_journal_key",
    "load_vault_key",
    "load_vault_keys",
    "vault_key_file",
]

DEFAULT_DATABASE_URL = "sqlite:///var/farthing.db"
DEFAULT_JOURNAL_KEY_FILE = "var/journal.key"
DEFAULT_VAULT_KEY_FILE = "var/vault.key"
# AES-256: the key-encryption key is exactly 32 bytes.
VAULT_KEY_LENGTH = 32


BPS_PER_UNIT = 10_000
FEE_BPS_MAX = 5_000  # A fee above 50% is a configuration mistake, not a price.
FEE_FIXED_MINOR_MAX = 10**6
DELAY_S_MAX = 90 * 24 * 3600
PRICING_ENTRIES_MAX = 200
DEFAULT_FEE_BPS = 290
DEFAULT_FEE_FIXED_MINOR = 30
DEFAULT_AVAILABLE_DELAY_S = 2 * 24 * 3600
DEFAULT_AUTHORIZATION_TTL_S = 7 * 24 * 3600
DEFAULT_RATE_LIMIT_PER_S = 1_000
DEFAULT_RATE_LIMIT_BURST = 2_000
RATE_LIMIT_MAX = 10**6
# Failed authentications (missing or invalid key) per client address; see farthing.http._auth.
DEFAULT_AUTH_FAILURES_PER_S = 5
DEFAULT_AUTH_FAILURE_BURST = 50
DEFAULT_REDIS_KEY_PREFIX = "farthing:ratelimit:"
REDIS_KEY_PREFIX_LENGTH_MAX = 100
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True, slots=True)
class Price:
    """What a successful card charge costs: a percentage (basis points) plus a fixed part."""

    bps: int
    fixed_minor: int

    def __post_init__(self) -> None:
        assert 0 <= self.bps <= FEE_BPS_MAX
        assert 0 <= self.fixed_minor <= FEE_FIXED_MINOR_MAX

    def fee_for(self, amount_minor: int) -> int:
        """The fee on ``amount_minor``, rounded half up, never more than the amount itself."""
        assert amount_minor > 0
        percentage = (amount_minor * self.bps + BPS_PER_UNIT // 2) // BPS_PER_UNIT
        fee = min(percentage + self.fixed_minor, amount_minor)
        assert 0 <= fee <= amount_minor
        return fee


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentsSettings:
    default_price: Price = Price(DEFAULT_FEE_BPS, DEFAULT_FEE_FIXED_MINOR)
    prices: Mapping[str, Price] = field(default_factory=lambda: MappingProxyType({}))
    available_delay_s: int = DEFAULT_AVAILABLE_DELAY_S
    authorization_ttl_s: int = DEFAULT_AUTHORIZATION_TTL_S
    payout_delay_s: int = 0

    def __post_init__(self) -> None:
        assert 0 <= self.available_delay_s <= DELAY_S_MAX
        assert 0 < self.authorization_ttl_s <= min(DELAY_S_MAX, TIMEOUT_S_MAX)
        assert 0 <= self.payout_delay_s <= DELAY_S_MAX

    def price(self, currency: str) -> Price:
        """Pricing for a lower-case API currency code."""
        return self.prices.get(currency, self.default_price)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> PaymentsSettings:
        try:
            return cls(
                default_price=Price(
                    _integer(environ, "FARTHING_FEE_BPS", DEFAULT_FEE_BPS),
                    _integer(environ, "FARTHING_FEE_FIXED_MINOR", DEFAULT_FEE_FIXED_MINOR),
                ),
                prices=MappingProxyType(_pricing(environ.get("FARTHING_PRICING", ""))),
                available_delay_s=_integer(
                    environ, "FARTHING_AVAILABLE_DELAY_S", DEFAULT_AVAILABLE_DELAY_S
                ),
                authorization_ttl_s=_integer(
                    environ, "FARTHING_AUTHORIZATION_TTL_S", DEFAULT_AUTHORIZATION_TTL_S
                ),
                payout_delay_s=_integer(environ, "FARTHING_PAYOUT_DELAY_S", 0),
            )
        except AssertionError:
            msg = "a payments setting is out of range (see farthing.stripe_api.payments)"
            raise ConfigurationError(msg) from None


def _integer(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name)
    if text is None:
        return default
    if not text.strip().isdecimal():
        msg = f"{name} must be a non-negative integer"
        raise ConfigurationError(msg)
    return int(text)


def _pricing(text: str) -> dict[str, Price]:
    prices: dict[str, Price] = {}
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if len(entries) > PRICING_ENTRIES_MAX:
        msg = f"FARTHING_PRICING has more than {PRICING_ENTRIES_MAX} entries"
        raise ConfigurationError(msg)
    for entry in entries:
        parts = entry.split(":")
        if (
            len(parts) != 3
            or not is_currency(parts[0].upper())
            or not (parts[1].isdecimal() and parts[2].isdecimal())
        ):
            msg = f"FARTHING_PRICING entry {entry!r} is not currency:basis_points:fixed_minor"
            raise ConfigurationError(msg)
        prices[parts[0].lower()] = Price(int(parts[1]), int(parts[2]))
    return prices


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: str
    journal_key: bytes
    # None when no vault key is configured: the server runs, card endpoints answer 503.
    vault_key: VaultKeys | None = None
    payments: PaymentsSettings = field(default_factory=PaymentsSettings)
    # Per API key: requests per second on average, and at once.
    rate_limit_per_s: int = DEFAULT_RATE_LIMIT_PER_S
    rate_limit_burst: int = DEFAULT_RATE_LIMIT_BURST
    # Per client address: failed authentications per second on average, and at once.
    auth_failures_per_s: int = DEFAULT_AUTH_FAILURES_PER_S
    auth_failure_burst: int = DEFAULT_AUTH_FAILURE_BURST
    # Redis holding the rate-limit buckets of every server process; None: per process.
    redis_url: str | None = None
    redis_key_prefix: str = DEFAULT_REDIS_KEY_PREFIX
    # Test mode only: webhooks may go to loopback receivers (the test suite's).
    webhook_allow_loopback: bool = False
    # Run the worker (webhooks, event stream) inside `farthing serve` too.
    serve_worker: bool = False
    # NATS server for the event stream; None: no stream.
    nats_url: str | None = None
    nats_stream: str = "FARTHING_EVENTS"
    nats_subject_prefix: str = "farthing.events"

    def __post_init__(self) -> None:
        if not (
            0 < self.rate_limit_per_s <= RATE_LIMIT_MAX
            and 0 < self.rate_limit_burst <= RATE_LIMIT_MAX
            and 0 < self.auth_failures_per_s <= RATE_LIMIT_MAX
            and 0 < self.auth_failure_burst <= RATE_LIMIT_MAX
        ):
            msg = f"rate limits must be between 1 and {RATE_LIMIT_MAX}"
            raise ConfigurationError(msg)
        if self.redis_url is not None and not self.redis_url.startswith(REDIS_URL_SCHEMES):
            # Not echoed: the URL may carry a password.
            msg = "FARTHING_REDIS_URL must start with redis://, rediss:// or unix://"
            raise ConfigurationError(msg)
        if not 0 < len(self.redis_key_prefix) <= REDIS_KEY_PREFIX_LENGTH_MAX:
            msg = f"FARTHING_REDIS_KEY_PREFIX takes 1 to {REDIS_KEY_PREFIX_LENGTH_MAX} characters"
            raise ConfigurationError(msg)

    @classmethod
    def from_env(cls, *, database_url: str | None = None) -> Settings:
        url = database_url or os.environ.get("FARTHING_DATABASE_URL") or DEFAULT_DATABASE_URL
        return cls(
            database_url=url,
            journal_key=load_journal_key(),
            vault_key=load_vault_keys(),
            payments=PaymentsSettings.from_env(),
            rate_limit_per_s=_integer(
                os.environ, "FARTHING_RATE_LIMIT_PER_S", DEFAULT_RATE_LIMIT_PER_S
            ),
            rate_limit_burst=_integer(
                os.environ, "FARTHING_RATE_LIMIT_BURST", DEFAULT_RATE_LIMIT_BURST
            ),
            auth_failures_per_s=_integer(
                os.environ, "FARTHING_AUTH_FAILURES_PER_S", DEFAULT_AUTH_FAILURES_PER_S
            ),
            auth_failure_burst=_integer(
                os.environ, "FARTHING_AUTH_FAILURE_BURST", DEFAULT_AUTH_FAILURE_BURST
            ),
            redis_url=os.environ.get("FARTHING_REDIS_URL") or None,
            redis_key_prefix=os.environ.get("FARTHING_REDIS_KEY_PREFIX")
            or DEFAULT_REDIS_KEY_PREFIX,
            webhook_allow_loopback=os.environ.get("FARTHING_WEBHOOK_ALLOW_LOOPBACK") == "1",
            serve_worker=os.environ.get("FARTHING_SERVE_WORKER") == "1",
            nats_url=os.environ.get("FARTHING_NATS_URL") or None,
            nats_stream=os.environ.get("FARTHING_NATS_STREAM") or "FARTHING_EVENTS",
            nats_subject_prefix=os.environ.get("FARTHING_NATS_SUBJECTS") or "farthing.events",
        )


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
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # Secrets: owner only.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(JOURNAL_KEY_LENGTH_MIN) + "\n")


def vault_key_file() -> Path:
    """Where the vault's keys live when FARTHING_VAULT_KEY is not set."""
    return Path(os.environ.get("FARTHING_VAULT_KEY_FILE", DEFAULT_VAULT_KEY_FILE))


def load_vault_keys() -> VaultKeys | None:
    """The vault's keys from FARTHING_VAULT_KEY, else from the key file (which a running vault
    then re-reads when it changes); None when neither exists. Keys that are configured but
    malformed stop start-up (ConfigurationError). Either holds one hex key, or the rotation
    format of farthing.vault.VaultKeys (``CURRENT previous:HEX fingerprint:HEX``)."""
    text = os.environ.get("FARTHING_VAULT_KEY")
    source, path = "FARTHING_VAULT_KEY", None
    if text is None:
        path = vault_key_file()
        if not path.exists():
            return None
        text = path.read_text()
        source = str(path)
    try:
        return VaultKeys.parse(text, path=path)
    except ValueError as error:
        msg = f"vault key in {source}: {error}"
        raise ConfigurationError(msg) from None


def load_vault_key() -> bytes | None:
    """The current key-encryption key alone (see load_vault_keys)."""
    keys = load_vault_keys()
    return None if keys is None else keys.current


def ensure_vault_key_file() -> None:
    """Create the vault key file (mode 0600) unless a key is configured already."""
    if "FARTHING_VAULT_KEY" in os.environ:
        return
    path = vault_key_file()
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # Secrets: owner only.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(VAULT_KEY_LENGTH) + "\n")
