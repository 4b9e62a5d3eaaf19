"""Farthing's 3-D Secure challenge page (test mode): the cardholder approves or fails.

The page is reached by the ``next_action.redirect_to_url.url`` of an intent in
``requires_action``; its random token is the sole credential, so the page needs no API key. The
page checks the token against a SHA-256, but the token itself is part of that URL, which the
merchant must be able to read (as Stripe's redirect URLs are): it is in the intent's
``next_action``, its ``payment_intent.requires_action`` event and an idempotent replay, so
whoever may read those may answer the challenge. After the challenge the intent continues
(charge or decline) and the browser goes to the intent's ``return_url`` when it has one.
"""

from __future__ import annotations

import html
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from farthing.db.engine import begin_write
from farthing.db.schema import stripe_payment_intents as intents
from farthing.db.schema import tenants
from farthing.stripe_api._form import parse_form
from farthing.stripe_api._request import Partition
from farthing.stripe_api.payment_intents import _service as service
from farthing.stripe_api.payments import payments_of

__all__ = ["router"]

router = APIRouter(prefix="/3ds", include_in_schema=False)
TOKEN_LENGTH_MAX = 128
FORM_BYTES_MAX = 1024
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; style-src 'unsafe-inline'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Farthing 3-D Secure test page</title></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 4rem auto">
<h1>3-D Secure test payment</h1>
<p>Test mode: approve or fail the authentication of payment <code>{intent}</code>.</p>
<form method="post" action="/3ds/{intent}">
<input type="hidden" name="token" value="{token}">
<button type="submit" name="result" value="approve">Complete authentication</button>
<button type="submit" name="result" value="fail">Fail authentication</button>
</form></body></html>
"""
_DONE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authentication {result}</title></head>
<body><p>Authentication {result}. You can close this window.</p></body></html>
"""


def _not_found() -> HTMLResponse:
    return HTMLResponse("<p>This authentication link is not valid.</p>", 404, headers=_HEADERS)


def _scope_of(connection: sa.Connection, intent_id: str, token: str) -> Partition | None:
    """The intent's scope when the token is its current challenge's, else None."""
    row = (
        connection.execute(
            sa.select(intents, tenants.c.parent_id)
            .join(tenants, tenants.c.id == intents.c.tenant_id)
            .where(intents.c.id == intent_id)
        )
        .mappings()
        .one_or_none()
    )
    if row is None or not service.challenge_matches(dict(row), token):
        return None
    return Partition(
        tenant_id=row["tenant_id"],
        mode=row["mode"],
        platform_id=row["parent_id"] or row["tenant_id"],
    )


@router.get("/{intent_id}")
async def challenge_page(request: Request, intent_id: str, token: str = "") -> Response:
    engine: sa.Engine = request.app.state.engine
    if not 0 < len(token) <= TOKEN_LENGTH_MAX:
        return _not_found()

    def check() -> Partition | None:
        with engine.connect() as connection:
            return _scope_of(connection, intent_id, token)

    if await run_in_threadpool(check) is None:
        return _not_found()
    page = _PAGE.format(intent=html.escape(intent_id), token=html.escape(token))
    return HTMLResponse(page, headers=_HEADERS)


@router.post("/{intent_id}")
async def challenge_answer(request: Request, intent_id: str) -> Response:
    body = await request.body()
    if len(body) > FORM_BYTES_MAX:
        return _not_found()
    form = parse_form(body.decode(errors="replace"))
    token, result = form.get("token"), form.get("result")
    if not isinstance(token, str) or not 0 < len(token) <= TOKEN_LENGTH_MAX:
        return _not_found()
    if result not in {"approve", "fail"}:
        return _not_found()
    payments = payments_of(request)
    engine: sa.Engine = request.app.state.engine
    origin = str(request.base_url)

    def answer() -> str | None:
        with begin_write(engine) as connection:
            scope = _scope_of(connection, intent_id, token)
            if scope is None:
                return None
            ctx = service.context(connection, payments, scope, origin)
            outcome = service.complete_challenge(
                ctx, intent_id, token, approved=result == "approve"
            )
            if outcome is None:
                return None
            return service.load_intent(ctx, intent_id).get("return_url") or ""

    return_url = await run_in_threadpool(answer)
    if return_url is None:
        return _not_found()
    if return_url:
        separator = "&" if "?" in return_url else "?"
        query = urlencode({"payment_intent": intent_id})
        return RedirectResponse(return_url + separator + query, status_code=303)
    done = "completed" if result == "approve" else "failed"
    return HTMLResponse(_DONE.format(result=done), headers=_HEADERS)
