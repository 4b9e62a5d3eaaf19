"""The pure ledger core: double-entry accounts and transfers with no I/O.

Everything here is deterministic: given a ``LedgerSlice`` and events, the engine returns one
result per event and the rows to commit. Storage, time and HTTP live in ``farthing.ledger_service``.
"""

from __future__ import annotations

from farthing.ledger._currency import CURRENCY_EXPONENTS, currency_exponent, is_currency
from farthing.ledger._engine import (
    EXPIRY_ID_PREFIX,
    LedgerSlice,
    LiveAccount,
    SetLimitResult,
    StoredTransfer,
    apply_limit_change,
    create_accounts,
    create_transfers,
    expire_due_holds,
)
from farthing.ledger._journal import (
    GENESIS_MAC,
    JOURNAL_KEY_LENGTH_MIN,
    digest_records,
    encode_field,
    encode_metadata,
    encode_record,
    entry_mac,
    has_separator,
)
from farthing.ledger._limits import (
    ACCOUNT_CODE_MAX,
    AMOUNT_MAX,
    BALANCE_MAX,
    BATCH_EVENTS_MAX,
    EXPIRIES_PER_COMMIT_MAX,
    ID_LENGTH_MAX,
    METADATA_KEY_LENGTH_MAX,
    METADATA_KEYS_MAX,
    METADATA_VALUE_LENGTH_MAX,
    PAGE_SIZE_MAX,
    TIMEOUT_S_MAX,
    TRANSFER_CODE_MAX,
)
from farthing.ledger._model import (
    Account,
    AccountEvent,
    AccountFlags,
    Balances,
    HoldState,
    LimitChange,
    Metadata,
    Transfer,
    TransferEvent,
    TransferFlags,
    is_valid_id,
    is_valid_metadata,
)
from farthing.ledger._results import (
    TRANSIENT_TRANSFER_RESULTS,
    CreateAccountResult,
    CreateTransferResult,
)

__all__ = [
    "ACCOUNT_CODE_MAX",
    "AMOUNT_MAX",
    "BALANCE_MAX",
    "BATCH_EVENTS_MAX",
    "CURRENCY_EXPONENTS",
    "EXPIRIES_PER_COMMIT_MAX",
    "EXPIRY_ID_PREFIX",
    "GENESIS_MAC",
    "ID_LENGTH_MAX",
    "JOURNAL_KEY_LENGTH_MIN",
    "METADATA_KEYS_MAX",
    "METADATA_KEY_LENGTH_MAX",
    "METADATA_VALUE_LENGTH_MAX",
    "PAGE_SIZE_MAX",
    "TIMEOUT_S_MAX",
    "TRANSFER_CODE_MAX",
    "TRANSIENT_TRANSFER_RESULTS",
    "Account",
    "AccountEvent",
    "AccountFlags",
    "Balances",
    "CreateAccountResult",
    "CreateTransferResult",
    "HoldState",
    "LedgerSlice",
    "LimitChange",
    "LiveAccount",
    "Metadata",
    "SetLimitResult",
    "StoredTransfer",
    "Transfer",
    "TransferEvent",
    "TransferFlags",
    "apply_limit_change",
    "create_accounts",
    "create_transfers",
    "currency_exponent",
    "digest_records",
    "encode_field",
    "encode_metadata",
    "encode_record",
    "entry_mac",
    "expire_due_holds",
    "has_separator",
    "is_currency",
    "is_valid_id",
    "is_valid_metadata",
]
