"""The Python client against the real gateway: links, errors with their details, retries."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from adminportal.v1 import portal_pb2

from portal_gateway_client import Client, GatewayError

GENERATE_LINK = "POST /portal/generate_link"
CREATE_ORGANIZATION = "POST /organizations"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_mint_link_opens_the_portal_and_is_minted_for_the_acting_user(gateway):
    target = gateway.target
    with Client(target, token="dev") as admin:
        acme, _ = admin.ensure_organization("acme", "Acme Inc")

    # snippet:python-mint-start
    with Client(target, token="dev") as client:
        link = client.mint_link("acme", "sso", acting_user="admin-42", request_id="req-42")
    # snippet:python-mint-end

    assert link.link.startswith(gateway.emulator.origin + "/")
    assert link.organization_id == acme.id
    assert link.intent == portal_pb2.INTENT_SSO
    expires = link.expire_time.ToDatetime(tzinfo=timezone.utc) - datetime.now(timezone.utc)
    assert timedelta(minutes=4) < expires <= timedelta(minutes=5, seconds=5)
    mints = [r for r in gateway.emulator.requests()["recent"] if r["route"] == GENERATE_LINK]
    assert [r["request_id"] for r in mints] == ["req-42"]
    assert gateway.emulator.request("GET", link.link)[0] == 200
    # x-acting-user became the link's external_user_id: revoking that user's links cuts it off.
    with Client(target, token="dev") as admin:
        revoke = portal_pb2.RevokeLinksRequest(external_id="acme", external_user_id="admin-42")
        admin.call(admin.portal.RevokeLinks, revoke)
    assert gateway.emulator.request("GET", link.link)[0] == 410


def test_invalid_argument_names_every_bad_field_and_reaches_no_one(gateway, client):
    with pytest.raises(GatewayError) as caught:
        client.mint_link("acme", 0, return_url="ftp://files.example/")
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_ARGUMENT"
    assert set(error.fields) == {"intent", "return_url"}
    assert gateway.emulator.requests()["total"] == 0


def test_not_found_carries_the_resource(client):
    customer = unique("nobody")
    # snippet:python-errors-start
    try:
        client.mint_link(customer, "sso")
    except GatewayError as error:
        code, reason, resource = error.code, error.reason, error.resource  # also .fields, .retry_after
    # snippet:python-errors-end
    assert code == grpc.StatusCode.NOT_FOUND
    assert reason == "ORGANIZATION_NOT_FOUND"
    assert resource is not None and resource.type == "organization"
    assert customer in resource.name


@pytest.mark.parametrize(
    ("org", "intent", "acting_user", "reason"),
    [
        ("cust-acme", "dsync", "admin-42", "INTENT_NOT_ALLOWED"),
        ("globex", "sso", "admin-42", "ORGANIZATION_NOT_ALLOWED"),
        ("cust-acme", "sso", None, "ACTING_USER_REQUIRED"),
    ],
)
def test_permission_denied_names_the_rule_that_refused(restricted, org, intent, acting_user, reason):
    with Client(restricted.target, token=restricted.token) as client:
        # The same caller may mint what its rule allows.
        allowed = client.mint_link("cust-acme", "sso", acting_user="admin-42")
        assert allowed.link.startswith(restricted.emulator.origin + "/")
        mints = restricted.emulator.count(GENERATE_LINK)
        with pytest.raises(GatewayError) as caught:
            client.mint_link(org, intent, acting_user=acting_user)
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.reason == reason
    assert restricted.emulator.count(GENERATE_LINK) == mints


def test_unavailable_is_retried_by_the_service_config(gateway, client):
    org, _ = client.ensure_organization(unique("retry"), "Retry Inc")
    # Every attempt the gateway makes for the first call fails (dev makes 3), so only a second
    # call, made by the channel's retry policy, can succeed.
    gateway.emulator.fault(GENERATE_LINK, status=503, count=3)
    link = client.mint_link(org.id, "sso")
    assert link.organization_id == org.id
    assert gateway.emulator.count(GENERATE_LINK) == 4
    assert gateway.metric("portal_gateway_rpc_requests_total", method="GenerateLink", code="UNAVAILABLE") == 1
    assert gateway.metric("portal_gateway_rpc_requests_total", method="GenerateLink", code="OK") == 1


def test_without_the_service_config_unavailable_reaches_the_caller(gateway):
    with Client(gateway.target, token="dev", config=json.dumps({"methodConfig": []})) as client:
        org, _ = client.ensure_organization(unique("retry"), "Retry Inc")
        gateway.emulator.fault(GENERATE_LINK, status=503, count=3)
        with pytest.raises(GatewayError) as caught:
            client.mint_link(org.id, "sso")
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert caught.value.reason == "WORKOS_UNAVAILABLE"
    assert caught.value.retry_after is not None and caught.value.retry_after > 0
    assert gateway.emulator.count(GENERATE_LINK) == 3


def test_deadline_exceeded_when_workos_is_slow(gateway, client):
    org, _ = client.ensure_organization(unique("slow"), "Slow Inc")
    gateway.emulator.fault(GENERATE_LINK, delay_ms=5000)
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        client.mint_link(org.id, "sso", timeout=0.5)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2.5
    assert gateway.emulator.count(GENERATE_LINK) == 1


def test_resource_exhausted_is_retried_when_retry_info_says_when(gateway, client):
    org, _ = client.ensure_organization(unique("busy"), "Busy Inc")
    # WorkOS answers 429 with Retry-After: 1 to all three of the gateway's attempts, so the
    # gateway answers RESOURCE_EXHAUSTED with RetryInfo, and the helper waits and calls again.
    gateway.emulator.fault(GENERATE_LINK, status=429, retry_after=1, count=3)
    link = client.mint_link(org.id, "sso", timeout=10)
    assert link.organization_id == org.id
    assert gateway.emulator.count(GENERATE_LINK) == 4
    assert (
        gateway.metric("portal_gateway_rpc_requests_total", method="GenerateLink", code="RESOURCE_EXHAUSTED")
        == 1
    )


def test_create_organization_is_retried_only_with_a_request_id(gateway, client):
    # The gateway sends a create once (WorkOS would make it twice); the client repeats it.
    gateway.emulator.fault(CREATE_ORGANIZATION, status=503, count=2)
    created = client.create_organization(
        "Initech", external_id=unique("initech"), request_id=unique("create")
    )
    assert client.get_organization(created.id).name == "Initech"
    assert gateway.emulator.count(CREATE_ORGANIZATION) == 3

    gateway.emulator.fault(CREATE_ORGANIZATION, status=503, count=1)
    with pytest.raises(GatewayError) as caught:
        client.create_organization("Hooli", external_id=unique("hooli"))
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert gateway.emulator.count(CREATE_ORGANIZATION) == 4
