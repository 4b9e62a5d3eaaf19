"""Stripe-compatible API under ``/v1``: Stripe's form encoding, errors, lists, ids and
Idempotency-Key semantics, so the official SDKs work against Farthing unchanged."""

from __future__ import annotations

from fastapi import APIRouter

from farthing.stripe_api._form import (
    FORM_DEPTH_MAX,
    FORM_KEY_BYTES_MAX,
    FORM_KEYS_MAX,
    FORM_LIST_LENGTH_MAX,
    FormValue,
    parse_form,
)
from farthing.stripe_api._idempotency import IDEMPOTENCY_KEY_LENGTH_MAX, IDEMPOTENCY_TTL_NS
from farthing.stripe_api._lists import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX
from farthing.stripe_api._request import RequestIdMiddleware
from farthing.stripe_api.accounts import router as accounts_router
from farthing.stripe_api.balance import router as balance_router
from farthing.stripe_api.charges import router as charges_router
from farthing.stripe_api.customers import router as customers_router
from farthing.stripe_api.events._router import router as events_router
from farthing.stripe_api.payment_intents import challenge_router
from farthing.stripe_api.payment_intents import router as payment_intents_router
from farthing.stripe_api.payment_methods import router as payment_methods_router
from farthing.stripe_api.payouts import router as payouts_router
from farthing.stripe_api.refunds import router as refunds_router
from farthing.stripe_api.transfers import router as transfers_router
from farthing.stripe_api.webhooks._router import router as webhooks_router

__all__ = [
    "FORM_DEPTH_MAX",
    "FORM_KEYS_MAX",
    "FORM_KEY_BYTES_MAX",
    "FORM_LIST_LENGTH_MAX",
    "IDEMPOTENCY_KEY_LENGTH_MAX",
    "IDEMPOTENCY_TTL_NS",
    "LIST_LIMIT_DEFAULT",
    "LIST_LIMIT_MAX",
    "FormValue",
    "RequestIdMiddleware",
    "parse_form",
    "router",
]

router = APIRouter()
router.include_router(customers_router)
router.include_router(accounts_router)
router.include_router(payment_methods_router)
router.include_router(payment_intents_router)
router.include_router(charges_router)
router.include_router(challenge_router)
router.include_router(balance_router)
router.include_router(refunds_router)
router.include_router(events_router)
router.include_router(webhooks_router)
router.include_router(transfers_router)
router.include_router(payouts_router)
