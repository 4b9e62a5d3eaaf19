"""PaymentMethod operations: each takes the caller's scope and a connection in its transaction."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from farthing.http._errors import ApiError
from farthing.stripe_api._lists import ListQuery, list_table
from farthing.stripe_api._params import merge_metadata
from farthing.stripe_api._request import Partition
from farthing.stripe_api.customers import _repository as customers
from farthing.stripe_api.events import emit
from farthing.stripe_api.payment_methods import _repository as repository
from farthing.stripe_api.payment_methods._schemas import (
    CardInput,
    Fields,
    card_error,
    payment_method_object,
)
from farthing.stripe_api.test_cards import PRESETS, TEST_CARDS_BY_NUMBER, brand_of
from farthing.vault import Vault, associated_data

__all__ = [
    "LIST_URL",
    "attach",
    "card_number",
    "create",
    "detach",
    "list_payment_methods",
    "resolve",
    "retrieve",
    "update",
]

LIST_URL = "/v1/payment_methods"
ID_BYTES = 18  # pm_ + 24 characters, 144 bits of entropy, like customer ids.
_LAST4 = 4
# Presets have no expiry of their own; Stripe gives them a date a few years ahead.
PRESET_EXP_MONTH = 12
PRESET_EXP_YEARS_AHEAD = 3


def _new_id() -> str:
    return "pm_" + secrets.token_urlsafe(ID_BYTES).replace("-", "0").replace("_", "1")


def _missing(method_id: str, param: str = "id") -> ApiError:
    return ApiError(
        404,
        type_="invalid_request_error",
        code="resource_missing",
        message=f"No such PaymentMethod: '{method_id}'",
        param=param,
    )


def _store(
    connection: sa.Connection, scope: Partition, vault: Vault, card: CardInput, fields: Fields
) -> repository.PaymentMethodRow:
    """Seal the number and insert the row; only masked data leaves this function."""
    test_card = TEST_CARDS_BY_NUMBER.get(card.number)
    if test_card is not None and scope.livemode:
        raise card_error(
            "card_declined",
            "Your card was declined. Your request was in live mode, but used a known test card.",
            "number",
        )
    row = repository.PaymentMethodRow(
        id=_new_id(),
        created=int(time.time()),
        type="card",
        customer_id=None,
        brand=brand_of(card.number),
        last4=card.number[-_LAST4:],
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        funding="unknown" if test_card is None else test_card.funding,
        country=None if test_card is None else test_card.country,
        fingerprint=vault.fingerprint(scope.tenant_id, card.number),
        billing_name=fields.billing.get("name"),
        billing_email=fields.billing.get("email"),
        metadata_=merge_metadata({}, fields.metadata),
    )
    sealed = vault.seal(card.number.encode(), associated_data(scope.tenant_id, scope.mode, row.id))
    repository.insert(connection, scope, row, vault_key_id=sealed.key_id, pan_sealed=sealed.blob)
    return row


def create(
    connection: sa.Connection, scope: Partition, vault: Vault, card: CardInput, fields: Fields
) -> dict[str, Any]:
    row = _store(connection, scope, vault, card, fields)
    return payment_method_object(row, livemode=scope.livemode)


def _materialise(
    connection: sa.Connection, scope: Partition, vault: Vault, preset: str
) -> repository.PaymentMethodRow:
    """A new pm_ for a test-card preset, as Stripe's test mode does on every use of the name."""
    if scope.livemode:
        raise ApiError(
            404,
            type_="invalid_request_error",
            code="resource_missing",
            message=f"No such PaymentMethod: '{preset}'; test-card presets exist only in test "
            "mode, but a live mode key was used to make this request.",
            param="id",
        )
    card = CardInput(
        number=PRESETS[preset].number,
        exp_month=PRESET_EXP_MONTH,
        exp_year=time.gmtime().tm_year + PRESET_EXP_YEARS_AHEAD,
    )
    return _store(connection, scope, vault, card, Fields(billing={}, metadata=None))


def _load(
    connection: sa.Connection,
    scope: Partition,
    vault: Vault | None,
    method_id: str,
    *,
    for_update: bool = False,
) -> repository.PaymentMethodRow:
    if method_id in PRESETS and vault is not None:
        return _materialise(connection, scope, vault, method_id)
    row = repository.load(connection, scope, method_id, for_update=for_update)
    if row is None:
        raise _missing(method_id)
    return row


def resolve(
    connection: sa.Connection, scope: Partition, vault: Vault, method_id: str, param: str
) -> repository.PaymentMethodRow:
    """A payment method named in another request (a preset materialises a new one)."""
    try:
        return _load(connection, scope, vault, method_id)
    except ApiError as error:
        raise _missing(method_id, param) from error


def card_number(connection: sa.Connection, scope: Partition, vault: Vault, method_id: str) -> str:
    """The card number, opened from the vault for the card processor; never logged or stored."""
    sealed = repository.sealed_number(connection, scope, method_id)
    assert sealed is not None, method_id
    key_id, blob = sealed
    aad = associated_data(scope.tenant_id, scope.mode, method_id)
    return vault.open(blob, aad, key_id=key_id).decode()


def retrieve(
    connection: sa.Connection, scope: Partition, vault: Vault | None, method_id: str
) -> dict[str, Any]:
    """`vault` is needed only to materialise a preset; the router refuses presets without one."""
    return payment_method_object(
        _load(connection, scope, vault, method_id), livemode=scope.livemode
    )


def update(
    connection: sa.Connection, scope: Partition, method_id: str, fields: Fields
) -> dict[str, Any]:
    row = _load(connection, scope, None, method_id, for_update=True)
    row = replace(
        row,
        billing_name=fields.billing.get("name", row.billing_name),
        billing_email=fields.billing.get("email", row.billing_email),
        metadata_=merge_metadata(row.metadata_, fields.metadata),
    )
    repository.update(connection, scope, row)
    return payment_method_object(row, livemode=scope.livemode)


def _unexpected_state(message: str) -> ApiError:
    return ApiError(
        400,
        type_="invalid_request_error",
        code="payment_method_unexpected_state",
        message=message,
    )


def attach(
    connection: sa.Connection, scope: Partition, vault: Vault, method_id: str, customer_id: str
) -> dict[str, Any]:
    if customers.load(connection, scope, customer_id) is None:
        raise ApiError(
            404,
            type_="invalid_request_error",
            code="resource_missing",
            message=f"No such customer: '{customer_id}'",
            param="customer",
        )
    row = _load(connection, scope, vault, method_id, for_update=True)
    if row.customer_id is not None:
        raise _unexpected_state(
            "The payment method you provided is already attached to a customer."
        )
    row = replace(row, customer_id=customer_id)
    repository.update(connection, scope, row)
    obj = payment_method_object(row, livemode=scope.livemode)
    emit(connection, scope, "payment_method.attached", obj)
    return obj


def detach(connection: sa.Connection, scope: Partition, method_id: str) -> dict[str, Any]:
    row = _load(connection, scope, None, method_id, for_update=True)
    if row.customer_id is None:
        raise _unexpected_state("The payment method you provided is not attached to a customer.")
    previous = {"customer": row.customer_id}
    row = replace(row, customer_id=None)
    repository.update(connection, scope, row)
    obj = payment_method_object(row, livemode=scope.livemode)
    emit(connection, scope, "payment_method.detached", obj, previous=previous)
    return obj


def list_payment_methods(
    connection: sa.Connection,
    scope: Partition,
    query: ListQuery,
    filters: repository.Filters,
    url: str = LIST_URL,
) -> dict[str, Any]:
    if (
        filters.customer_id is not None
        and customers.load(connection, scope, filters.customer_id) is None
    ):
        raise ApiError(
            404,
            type_="invalid_request_error",
            code="resource_missing",
            message=f"No such customer: '{filters.customer_id}'",
            param="customer",
        )
    return list_table(
        connection,
        repository.listing(scope, filters),
        query,
        url=url,
        missing=_missing,
        render=lambda row: payment_method_object(repository.decode(row), livemode=scope.livemode),
    )
