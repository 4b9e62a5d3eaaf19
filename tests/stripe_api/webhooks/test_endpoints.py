"""/v1/webhook_endpoints: the signing secret shown once and sealed at rest, the URL guard against
server-side request forgery, one queued delivery per matching endpoint with each event, and
signatures that stripe.Webhook.construct_event verifies."""

from __future__ import annotations

import json
import time
from typing import Any, cast

import pytest
import sqlalchemy as sa
import stripe

from farthing.db.schema import (
    stripe_idempotency_keys,
    stripe_webhook_deliveries,
    stripe_webhook_endpoints,
)
from farthing.stripe_api.webhooks import signature_header
from farthing.stripe_api.webhooks._urls import pinned
from tests.http.conftest import Server
from tests.stripe_api.conftest import Account

PUBLIC_URL = "https://93.184.216.34/hooks"  # A literal public address: no DNS needed.


def _create(account: Account, url: str = PUBLIC_URL, **extra: Any) -> stripe.WebhookEndpoint:
    params = {"url": url, "enabled_events": ["customer.created"]} | extra
    return account.test.v1.webhook_endpoints.create(params=cast("Any", params))


def test_secret_is_shown_once_and_sealed(v1_server: Server, account: Account) -> None:
    created = _create(account, description="orders", metadata={"team": "shop"})
    assert created.id.startswith("we_")
    assert created.secret is not None
    assert created.secret.startswith("whsec_")
    assert created.status == "enabled"
    fetched = account.test.v1.webhook_endpoints.retrieve(created.id)
    assert "secret" not in fetched
    assert fetched.url == PUBLIC_URL
    assert fetched.enabled_events == ["customer.created"]
    with v1_server.engine.connect() as connection:
        rows = connection.execute(sa.select(stripe_webhook_endpoints)).all()
    assert created.secret.encode() not in repr(rows).encode()
    assert all(created.secret not in str(value) for row in rows for value in row)


def test_update_list_delete(account: Account) -> None:
    first = _create(account)
    second = _create(account, enabled_events=["*"])
    updated = account.test.v1.webhook_endpoints.update(
        first.id, params={"disabled": True, "enabled_events": ["charge.succeeded"]}
    )
    assert (updated.status, updated.enabled_events) == ("disabled", ["charge.succeeded"])
    listed = account.test.v1.webhook_endpoints.list().data
    assert [endpoint.id for endpoint in listed] == [second.id, first.id]
    deleted = account.test.v1.webhook_endpoints.delete(first.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.webhook_endpoints.retrieve(first.id)
    assert [endpoint.id for endpoint in account.test.v1.webhook_endpoints.list().data] == [
        second.id
    ]
    with pytest.raises(stripe.InvalidRequestError):
        account.live.v1.webhook_endpoints.retrieve(second.id)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.1/hook",
        "http://172.16.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://[2002:7f00:1::1]/hook",  # 6to4 wrapping 127.0.0.1
        "http://[2002:a9fe:a9fe::1]/hook",  # 6to4 wrapping 169.254.169.254
        "http://[64:ff9b:1::a00:7]/hook",  # local-use NAT64
        "http://[fec0::1]/hook",  # site-local
        "http://192.88.99.1/hook",  # 6to4 relay anycast
        "http://93.184.216.34/ctl\x01x",  # a control character no client would send
        "http://93.184.216.34/a b",
        "ftp://93.184.216.34/hook",
        "https://user:pass@93.184.216.34/hook",
        "/relative",
    ],
)
def test_forbidden_urls_are_refused(account: Account, url: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        _create(account, url=url)
    assert refused.value.param == "url"
    assert account.test.v1.webhook_endpoints.list().data == []


def test_live_mode_needs_https(account: Account) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        account.live.v1.webhook_endpoints.create(
            params={"url": "http://93.184.216.34/hook", "enabled_events": ["*"]}
        )
    https = account.live.v1.webhook_endpoints.create(
        params={"url": PUBLIC_URL, "enabled_events": ["*"]}
    )
    assert https.livemode is True


def test_each_event_queues_one_delivery_per_matching_endpoint(
    v1_server: Server, account: Account
) -> None:
    wanted = _create(account)
    everything = _create(account, enabled_events=["*"])
    _create(account, enabled_events=["charge.succeeded"])
    disabled = _create(account, enabled_events=["*"])
    account.test.v1.webhook_endpoints.update(disabled.id, params={"disabled": True})
    customer = account.test.v1.customers.create(params={"email": "ada@example.com"})
    event = account.test.v1.events.list(params={"type": "customer.created"}).data[0]
    assert cast("dict[str, Any]", event.data.object)["id"] == customer.id
    with v1_server.engine.connect() as connection:
        queued = connection.execute(
            sa.select(
                stripe_webhook_deliveries.c.endpoint_id, stripe_webhook_deliveries.c.status
            ).where(stripe_webhook_deliveries.c.event_id == event.id)
        ).all()
    assert sorted(queued) == sorted([(wanted.id, "pending"), (everything.id, "pending")])


def test_signatures_verify_with_the_stripe_sdk() -> None:
    payload = json.dumps({"id": "evt_1", "object": "event", "type": "customer.created"}).encode()
    now = int(time.time())
    header = signature_header(["whsec_new", "whsec_old"], timestamp_s=now, payload=payload)
    for secret in ("whsec_new", "whsec_old"):  # Both sign during a secret's overlap period.
        event = stripe.Webhook.construct_event(payload, header, secret)
        assert event.id == "evt_1"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload + b" ", header, "whsec_new")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, "whsec_other")
    old = signature_header(["whsec_new"], timestamp_s=now - 3_600, payload=payload)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, old, "whsec_new", tolerance=300)


def test_an_idempotent_replay_does_not_keep_the_secret(v1_server: Server, account: Account) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "hook-once"}
    params: Any = {"url": PUBLIC_URL, "enabled_events": ["*"]}
    first = account.test.v1.webhook_endpoints.create(params=params, options=options)
    again = account.test.v1.webhook_endpoints.create(params=params, options=options)
    assert again.id == first.id
    assert first.secret is not None
    assert "secret" not in again
    with v1_server.engine.connect() as connection:
        stored = connection.execute(sa.select(stripe_idempotency_keys.c.body)).scalars().all()
    assert all(first.secret not in (body or "") for body in stored)


@pytest.mark.parametrize(
    ("url", "address", "sent_to", "host", "sni"),
    [
        ("https://hooks.example.com/a?b=1", "93.184.216.34", "https://93.184.216.34/a?b=1",
         "hooks.example.com", "hooks.example.com"),
        ("http://hooks.example.com:8080/a", "2606:2800:220:1::1",
         "http://[2606:2800:220:1::1]:8080/a", "hooks.example.com:8080", None),
        ("https://bücher.example:8443/", "93.184.216.34", "https://93.184.216.34:8443/",
         "xn--bcher-kva.example:8443", "xn--bcher-kva.example"),
    ],
)  # fmt: skip
def test_a_pinned_request_keeps_the_name_for_host_and_tls(
    url: str, address: str, sent_to: str, host: str, sni: str | None
) -> None:
    """The worker connects to the checked address; the receiver still sees its name in the Host
    header, and TLS sends it as SNI and checks the certificate against it."""
    request = pinned(url, address)
    assert str(request.url) == sent_to
    assert request.host_header == host
    assert request.extensions.get("sni_hostname") == sni
