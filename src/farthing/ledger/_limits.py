"""Every bound of the ledger core, in one place (TigerBeetle style: a limit on everything)."""

from __future__ import annotations

__all__ = [
    "ACCOUNT_CODE_MAX",
    "AMOUNT_MAX",
    "BALANCE_MAX",
    "BATCH_EVENTS_MAX",
    "EXPIRIES_PER_COMMIT_MAX",
    "ID_LENGTH_MAX",
    "METADATA_KEYS_MAX",
    "METADATA_KEY_LENGTH_MAX",
    "METADATA_VALUE_LENGTH_MAX",
    "PAGE_SIZE_MAX",
    "TIMEOUT_S_MAX",
    "TRANSFER_CODE_MAX",
]

# Events in one create_accounts / create_transfers batch (TigerBeetle's request size).
BATCH_EVENTS_MAX = 8189
# Amounts and balances are stored as signed 64-bit integers; a balance may never pass this.
BALANCE_MAX = 2**63 - 1
AMOUNT_MAX = BALANCE_MAX
# Client-chosen ids: 1..64 characters of [A-Za-z0-9_.-].
ID_LENGTH_MAX = 64
ACCOUNT_CODE_MAX = 65535
TRANSFER_CODE_MAX = 65535
# Stripe's metadata limits: 50 keys, keys up to 40 characters, values up to 500.
METADATA_KEYS_MAX = 50
METADATA_KEY_LENGTH_MAX = 40
METADATA_VALUE_LENGTH_MAX = 500
# A pending transfer may hold funds for at most about 68 years.
TIMEOUT_S_MAX = 2**31 - 1
# Expired holds released by one commit; the rest go in the next commit.
EXPIRIES_PER_COMMIT_MAX = 1024
# Rows in one page of a list query.
PAGE_SIZE_MAX = 1000
