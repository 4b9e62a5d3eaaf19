"""Stripe's Idempotency-Key for POST requests.

The first request with a key claims it (a row with no result, committed at once); its effect and
its result (status and body) then commit in one transaction, so a result is stored exactly when
the effect happened. A later request with the key and the same parameters gets that result again
with ``Idempotent-Replayed: true``; with other parameters, 400 ``idempotency_error``; while the
first is still executing, 409 ``idempotency_error``. Keys belong to (tenant, mode) and expire
after 24 hours. Validation that fails before execution stores nothing, because this module only
runs once the endpoint has parsed its parameters.

A claim whose request died (a crash between claim and commit) is taken over by a retry after
``IDEMPOTENCY_CLAIM_TIMEOUT_NS``. Each claim carries a random token and the result is stored only
under the token of the current claim, in the effect's own transaction: a request whose claim was
taken over rolls its effect back instead of committing it twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa
from starlette.responses import JSONResponse

from farthing.db.engine import begin_write
from farthing.db.schema import stripe_idempotency_keys as keys
from farthing.http._errors import ApiError
from farthing.stripe_api._request import Params, Partition

__all__ = [
    "IDEMPOTENCY_CLAIM_TIMEOUT_NS",
    "IDEMPOTENCY_KEY_LENGTH_MAX",
    "IDEMPOTENCY_TTL_NS",
    "Effect",
    "Outcome",
    "hide_secrets",
    "run_idempotent",
]

IDEMPOTENCY_KEY_LENGTH_MAX = 255
IDEMPOTENCY_TTL_NS = 24 * 3600 * 10**9
# An unfinished claim older than this belongs to a request that died; a retry may take it over.
IDEMPOTENCY_CLAIM_TIMEOUT_NS = 60 * 10**9
_CLAIM_TOKEN_BYTES = 16
# Claiming loses at most one race (an insert that a concurrent claim committed first).
_CLAIM_ATTEMPTS_MAX = 2

Outcome = tuple[int, dict[str, Any]]
Effect = Callable[[sa.Connection], Outcome]


def _idempotency_error(status: int, message: str) -> ApiError:
    return ApiError(status, type_="idempotency_error", code="idempotency_error", message=message)


def _fingerprint(method: str, path: str, params: Params) -> str:
    canonical = orjson.dumps([method, path, params], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _scoped(scope: Partition, key: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        keys.c.tenant_id == scope.tenant_id, keys.c.mode == scope.mode, keys.c.key == key
    )


def _live(row: sa.Row[Any], now: int) -> bool:
    """Whether a stored key still counts: a result for 24 h, an unfinished claim for a minute."""
    if row.status is None:
        return bool(row.created_at_ns > now - IDEMPOTENCY_CLAIM_TIMEOUT_NS)
    return bool(row.created_at_ns > now - IDEMPOTENCY_TTL_NS)


def _claim(
    engine: sa.Engine, scope: Partition, key: str, fingerprint: str
) -> tuple[str | None, sa.Row[Any] | None]:
    """(our claim token, None) if this request now owns the key, else (None, the owner's row)."""
    for _attempt in range(_CLAIM_ATTEMPTS_MAX):
        now = time.time_ns()
        token = secrets.token_hex(_CLAIM_TOKEN_BYTES)
        try:
            with begin_write(engine) as connection:
                row = connection.execute(sa.select(keys).where(_scoped(scope, key))).one_or_none()
                if row is not None and _live(row, now):
                    return None, row
                if row is not None:  # Expired, or abandoned by a request that died.
                    # Only the row as read: its request may be committing its result right now
                    # (PostgreSQL then re-checks this DELETE against the committed row).
                    same = (
                        keys.c.status.is_(None) if row.status is None else keys.c.status.isnot(None)
                    )
                    gone = connection.execute(
                        keys.delete().where(_scoped(scope, key), keys.c.claim == row.claim, same)
                    ).rowcount
                    if gone != 1:
                        continue  # It changed meanwhile: read it again.
                connection.execute(
                    keys.insert().values(
                        tenant_id=scope.tenant_id,
                        mode=scope.mode,
                        key=key,
                        claim=token,
                        fingerprint=fingerprint,
                        created_at_ns=now,
                    )
                )
        except sa.exc.IntegrityError:
            continue  # A concurrent request claimed it first (PostgreSQL); read its row.
        return token, None
    raise _idempotency_error(409, "A request with this Idempotency-Key is being processed.")


def _response(outcome: Outcome, *, replayed: bool) -> JSONResponse:
    status, body = outcome
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(body, status_code=status, headers=headers)


class _ClaimLostError(Exception):
    """Our claim timed out and another request took the key over."""


def _store(
    connection: sa.Connection, scope: Partition, key: str, token: str, outcome: Outcome
) -> None:
    status, body = outcome
    stored = connection.execute(
        keys.update()
        .where(_scoped(scope, key), keys.c.claim == token, keys.c.status.is_(None))
        .values(status=status, body=orjson.dumps(body).decode())
    )
    if stored.rowcount != 1:
        raise _ClaimLostError


def hide_secrets(
    params: Params, container: str, names: frozenset[str], digest: Callable[[str], str]
) -> Params:
    """The parameters as the idempotency layer may keep them: its fingerprint is a plain
    SHA-256, so secrets (a card number, a CVC, a bank account number) under
    ``params[container]`` enter it only as keyed digests (the vault's)."""
    nested = params.get(container)
    if not isinstance(nested, dict):
        return params
    hidden = {
        name: digest(value) if name in names and isinstance(value, str) else value
        for name, value in nested.items()
    }
    return params | {container: hidden}


def run_idempotent(  # noqa: PLR0913
    engine: sa.Engine,
    scope: Partition,
    key: str | None,
    *,
    method: str,
    path: str,
    params: Params,
    effect: Effect,
    stored: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> JSONResponse:
    """Run `effect` in a write transaction, at most once per idempotency key. ``stored`` trims
    the body kept for replays: a secret shown once (a webhook signing secret) is not kept."""
    if key is None:
        with begin_write(engine) as connection:
            return _response(effect(connection), replayed=False)
    if not 0 < len(key) <= IDEMPOTENCY_KEY_LENGTH_MAX:
        raise ApiError(
            400,
            type_="invalid_request_error",
            code="parameter_invalid",
            message=f"Idempotency-Key must have 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} characters.",
        )
    fingerprint = _fingerprint(method, path, params)
    token, existing = _claim(engine, scope, key, fingerprint)
    if existing is not None:
        if existing.fingerprint != fingerprint:
            raise _idempotency_error(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                "were first used with.",
            )
        if existing.status is None:
            raise _idempotency_error(409, "A request with this Idempotency-Key is being processed.")
        return _response((existing.status, orjson.loads(existing.body)), replayed=True)
    assert token is not None
    return _execute(engine, scope, key, token, effect, stored or (lambda body: body))


def _execute(  # noqa: PLR0913
    engine: sa.Engine,
    scope: Partition,
    key: str,
    token: str,
    effect: Effect,
    stored: Callable[[dict[str, Any]], dict[str, Any]],
) -> JSONResponse:
    try:
        with begin_write(engine) as connection:
            outcome = effect(connection)
            _store(connection, scope, key, token, (outcome[0], stored(outcome[1])))
    except _ClaimLostError:
        # The effect's transaction rolled back: the request that took the key over owns it.
        raise _idempotency_error(
            409, "A request with this Idempotency-Key is being processed."
        ) from None
    except ApiError as error:
        if error.param == "expand":
            # The answer could not take the asked shape (a field this object lacks): nothing
            # was committed and it is no outcome of the request, so the key keeps nothing.
            _release(engine, scope, key, token)
            raise
        # The endpoint began executing and refused (e.g. no such object): Stripe stores that
        # answer too, so a retry cannot succeed later with the same key.
        body: dict[str, Any] = {"type": error.type, "code": error.code, "message": error.message}
        if error.param is not None:
            body["param"] = error.param
        with contextlib.suppress(_ClaimLostError), begin_write(engine) as connection:
            _store(connection, scope, key, token, (error.status, {"error": body}))
        raise
    except BaseException:
        # Unexpected failure: nothing was committed, so release the key and let a retry run.
        _release(engine, scope, key, token)
        raise
    return _response(outcome, replayed=False)


def _release(engine: sa.Engine, scope: Partition, key: str, token: str) -> None:
    with begin_write(engine) as connection:
        connection.execute(
            keys.delete().where(_scoped(scope, key), keys.c.claim == token, keys.c.status.is_(None))
        )
