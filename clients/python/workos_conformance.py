"""Drives the portal-gateway WorkOS emulator with the official WorkOS Python SDK.

Every call goes through the SDK's own models, so a missing key, a wrong type or a wrong status
code in the emulator fails here the way it would fail for a real service. Usage:

    python workos_conformance.py http://127.0.0.1:PORT [API_KEY]

Prints one line per check and a closing `N passed, N failed` line; exits non-zero on any failure.
"""

import json
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone

from workos import WorkOSClient
from workos.common.models import InviteItContactIntents
from workos.organizations.models import OrganizationDomainData
from workos._errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    RateLimitExceededError,
    UnprocessableEntityError,
)

BASE = sys.argv[1].rstrip("/")
KEY = sys.argv[2] if len(sys.argv) > 2 else "sk_test_emulator"
INTENTS = [
    "sso",
    "dsync",
    "audit_logs",
    "log_streams",
    "domain_verification",
    "certificate_renewal",
    "bring_your_own_key",
]

client = WorkOSClient(api_key=KEY, base_url=BASE, max_retries=0)
results = {"passed": 0, "failed": 0}


def check(name, condition, detail=""):
    if condition:
        results["passed"] += 1
        print(f"ok   {name}")
    else:
        results["failed"] += 1
        print(f"FAIL {name} {detail}")


def raises(name, error_type, call):
    try:
        call()
    except error_type as error:
        check(name, True)
        return error
    except Exception as error:  # noqa: BLE001 - a wrong error type is a failure to report
        check(name, False, f"raised {type(error).__name__}: {error}")
        return None
    check(name, False, "did not raise")
    return None


def control(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        BASE + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


def http_get(url):
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


control("POST", "/_emulator/reset", {"seed": 7})
orgs = client.organizations
domains_api = client.organization_domains
portal = client.admin_portal

# Organizations: create, get, get by external id.
acme = orgs.create_organization(
    name="Acme",
    domain_data=[OrganizationDomainData(domain="acme.example", state="verified")],
    external_id="acme-1",
    metadata={"tier": "gold"},
)
check("create returns an org_ id", acme.id.startswith("org_") and len(acme.id) == 30, acme.id)
check("create keeps metadata", acme.metadata == {"tier": "gold"}, acme.metadata)
check("create keeps domains", [d.domain for d in acme.domains] == ["acme.example"])
check("verified domain_data is manual", acme.domains[0].verification_strategy == "manual")
check("get returns the org", orgs.get_organization(acme.id).name == "Acme")
check("get by external id", orgs.get_organization_by_external_id("acme-1").id == acme.id)
legacy = orgs.create_organization(name="Legacy", domains=["legacy.example"])
check("deprecated domains are legacy_verified", legacy.domains[0].state == "legacy_verified")
check("external_id defaults to None", legacy.external_id is None)
check("metadata defaults to {}", legacy.metadata == {})

# List: pagination both ways, order, and the domains filter.
created = [acme.id, legacy.id]
for i in range(5):
    created.append(orgs.create_organization(name=f"Page {i}", external_id=f"page-{i}").id)
page = orgs.list_organizations(limit=3, order="asc")
check("first page has three", [o.id for o in page.data] == created[:3])
check("first page has more", page.has_more() and page.list_metadata.before is None)
second = orgs.list_organizations(limit=3, order="asc", after=page.list_metadata.after)
check("after gives the next page", [o.id for o in second.data] == created[3:6])
back = orgs.list_organizations(limit=3, order="asc", before=second.list_metadata.before)
check("before gives the page back", [o.id for o in back.data] == created[:3])
everything = [o.id for o in orgs.list_organizations(limit=2, order="asc").auto_paging_iter()]
check("auto paging sees every org", everything == created, everything)
newest = orgs.list_organizations(limit=2)
check("default order is newest first", [o.id for o in newest.data] == created[::-1][:2])
filtered = orgs.list_organizations(domains=["acme.example", "legacy.example"])
check("domains filter (comma-joined)", sorted(o.id for o in filtered.data) == sorted(created[:2]))
raises("limit over 100 is unprocessable", UnprocessableEntityError, lambda: orgs.list_organizations(limit=101))

# Update and delete.
updated = orgs.update_organization(
    acme.id, name="Acme Corp", metadata={"tier": "platinum"}, stripe_customer_id="cus_1"
)
check("update changes name and metadata", updated.name == "Acme Corp" and updated.metadata == {"tier": "platinum"})
check("update sets stripe id", updated.stripe_customer_id == "cus_1")
check("update keeps domains", [d.domain for d in updated.domains] == ["acme.example"])
orgs.delete_organization(legacy.id)
raises("deleted org is not found", NotFoundError, lambda: orgs.get_organization(legacy.id))

# Organization domains.
domain = domains_api.create_organization_domain(domain="new.example", organization_id=acme.id)
check("domain starts pending", domain.state == "pending" and domain.organization_id == acme.id)
check("domain get", domains_api.get_organization_domain(domain.id).domain == "new.example")
verified = domains_api.verify_organization_domain(domain.id)
check("domain verify", verified.state == "verified")
raises("duplicate domain conflicts", ConflictError,
       lambda: domains_api.create_organization_domain(domain="new.example", organization_id=acme.id))
domains_api.delete_organization_domain(domain.id)
raises("deleted domain is not found", NotFoundError, lambda: domains_api.get_organization_domain(domain.id))

# What a portal setup leaves behind, made through the control API and read through the SDK's
# own models: connections, directories, events and the audit log configuration.
setup_org = orgs.create_organization(
    name="Setup Co",
    domain_data=[OrganizationDomainData(domain="setup.example", state="pending")],
)


def setup(body):
    return control("POST", f"/_emulator/organizations/{setup_org.id}/setup", body)


sso = client.sso
first = setup({"intent": "sso", "action": "configure", "provider": "OktaSAML"})["connection"]["id"]
setup({"intent": "sso", "action": "activate"})
second = setup({"intent": "sso", "action": "configure", "provider": "GoogleSAML"})["connection"]["id"]
connections = sso.list_connections(organization_id=setup_org.id)
check("list_connections by organization", [c.id for c in connections.data] == [second, first],
      [c.id for c in connections.data])
check("connection states", [c.state for c in connections.data] == ["validating", "active"],
      [c.state for c in connections.data])
connection = sso.get_connection(first)
check("get_connection", connection.connection_type == "OktaSAML" and connection.name == "Setup Co"
      and [d.domain for d in connection.domains] == ["setup.example"])
one = sso.list_connections(organization_id=setup_org.id, limit=1)
check("connections page with after", one.has_more() and
      [c.id for c in sso.list_connections(organization_id=setup_org.id, limit=1, after=one.list_metadata.after).data] == [first])
check("connections auto paging", [c.id for c in one.auto_paging_iter()] == [second, first])
check("connection_type filter", [c.id for c in sso.list_connections(connection_type="GoogleSAML").data] == [second])
sso.delete_connection(second)
raises("deleted connection is not found", NotFoundError, lambda: sso.get_connection(second))

directory_sync = client.directory_sync
directory = setup({"intent": "dsync", "action": "activate", "provider": "okta scim v2.0"})["directory"]["id"]
directories = directory_sync.list_directories(organization_id=setup_org.id)
check("list_directories by organization", [d.id for d in directories.data] == [directory])
check("directories use the REST vocabulary", directories.data[0].state == "linked", directories.data[0].state)
check("directory metadata", directories.data[0].metadata.users.active == 0 and directories.data[0].external_key)
for action, state in [("invalid_credentials", "invalid_credentials"), ("unlink", "unlinked")]:
    setup({"intent": "dsync", "action": action})
    fetched = directory_sync.get_directory(directory)
    check(f"get_directory after {action}", fetched.state == state, fetched.state)
directory_sync.delete_directory(directory)
raises("deleted directory is not found", NotFoundError, lambda: directory_sync.get_directory(directory))

setup({"intent": "domain_verification", "action": "fail", "domain": "setup.example"})
setup({"intent": "domain_verification", "action": "verify", "domain": "setup.example"})
setup({"intent": "certificate_renewal", "action": "renewal_required", "days_until_expiry": 10})
setup({"intent": "certificate_renewal", "action": "renewed"})
setup({"intent": "bring_your_own_key", "action": "verify", "key_provider": "AZURE_KEY_VAULT"})
setup({"intent": "bring_your_own_key", "action": "delete"})
setup({"intent": "sso", "action": "deactivate"})
expected = [
    "organization_domain.created",
    "connection.activated",
    "connection.deleted",
    "dsync.activated",
    "dsync.deleted",
    "organization_domain.verification_failed",
    "organization_domain.verified",
    "connection.saml_certificate_renewal_required",
    "connection.saml_certificate_renewed",
    "vault.byok_key.verification_completed",
    "vault.byok_key.deleted",
    "connection.deactivated",
]
events_api = client.events
walked = []
after = None
while True:
    page = events_api.list_events(events=expected, organization_id=setup_org.id, limit=5, after=after)
    if not page.data:
        check("an empty page ends the walk", page.list_metadata.after is None, page.list_metadata)
        break
    walked.extend(page.data)
    after = page.list_metadata.after
check("list_events pages with after, oldest first", [e.event for e in walked] == expected,
      [e.event for e in walked])
check("every event parses as its own model",
      all(type(e).__name__ != "EventSchemaUnknown" for e in walked),
      [type(e).__name__ for e in walked])
check("auto paging sees every event",
      [e.id for e in events_api.list_events(events=expected, organization_id=setup_org.id, limit=4).auto_paging_iter()]
      == [e.id for e in walked])
activated = walked[1].data
check("connection.activated payload", activated.status == "linked" and activated.external_key
      and [d.domain for d in activated.domains] == ["setup.example"])
check("dsync.activated uses the event vocabulary", walked[3].data.state == "active", walked[3].data.state)
check("verification_failed has a reason", walked[5].data.reason == "domain_verification_period_expired")
check("byok verification payload", walked[9].data.verified is True and walked[9].data.key_provider == "AZURE_KEY_VAULT")
since = events_api.list_events(events=["connection.activated"], range_start=datetime(2000, 1, 1, tzinfo=timezone.utc))
check("range_start as a datetime", [e.id for e in since.data] == [walked[1].id], [e.id for e in since.data])
others = events_api.list_events(events=["organization_domain.created"], organization_id=acme.id)
check("organization_id filters events", [e.data.domain for e in others.data] == ["acme.example", "new.example"],
      [e.data.domain for e in others.data])
raises("unknown event names are a bad request", BadRequestError,
       lambda: events_api.list_events(events=["user.teleported"]))
raises("no event names is unprocessable", UnprocessableEntityError, lambda: events_api.list_events(events=[]))

raises("no audit log configuration yet", NotFoundError, lambda: orgs.get_audit_log_configuration(setup_org.id))
setup({"intent": "audit_logs", "action": "enable"})
config = orgs.get_audit_log_configuration(setup_org.id)
check("audit log configuration", config.state == "active" and config.retention_period_in_days == 30
      and config.log_stream is None, config)
setup({"intent": "log_streams", "action": "create", "destination": "Datadog"})
stream = orgs.get_audit_log_configuration(setup_org.id).log_stream
check("log stream", stream is not None and stream.id.startswith("als_") and stream.type == "Datadog"
      and stream.state == "active" and stream.last_synced_at is None, stream)

# Admin Portal: every intent, the page behind the link, revocation.
for intent in INTENTS:
    link = portal.generate_link(
        organization=acme.id,
        intent=intent,
        return_url="https://app.example/back",
        success_url="https://app.example/done",
        external_user_id="admin-7",
        it_contact_emails=["it@acme.example"],
    ).link
    status, page_html = http_get(link)
    check(f"generate_link {intent}", status == 200 and intent in page_html and "Acme Corp" in page_html, status)
check("portal page links back", "https://app.example/back" in page_html and "https://app.example/done" in page_html)
portal.revoke_link(organization=acme.id, external_user_id="admin-7")
status, _ = http_get(link)
check("revoked link stops working", status == 410, status)
menu = portal.generate_link(organization=acme.id).link
status, page_html = http_get(menu)
check("a link without an intent opens the menu", status == 200 and 'id="intent-dsync"' in page_html, status)
fresh = portal.generate_link(organization=acme.id, intent="sso").link
control("POST", "/_emulator/clock", {"advance_seconds": 301})
status, page_html = http_get(fresh)
check("link expires after five minutes", status == 410 and "expired" in page_html, status)
status, _ = http_get(BASE + "/portal/launch?secret=nope")
check("unknown link is not found", status == 404, status)

# IT contacts and their e-mailed invitations; the outbox shows what was sent.
control("DELETE", "/_emulator/outbox")
ada = orgs.create_it_contact(acme.id, email="ada@acme.example")
check("create_it_contact", ada.object == "it_contact" and ada.email == "ada@acme.example"
      and ada.id.startswith("it_contact_") and ada.created_at.tzinfo is not None, ada)
bob = orgs.create_it_contact(acme.id, email="bob@acme.example")
contacts = orgs.list_it_contacts(acme.id)
check("list_it_contacts, newest first", [c.id for c in contacts.data] == [bob.id, ada.id]
      and contacts.list_metadata.after is None, contacts)
error = raises("a known address conflicts", ConflictError,
               lambda: orgs.create_it_contact(acme.id, email="ADA@acme.example"))
check("it_contact_already_exists", error is not None and error.code == "it_contact_already_exists",
      getattr(error, "code", None))
raises("a bad address is unprocessable", UnprocessableEntityError,
       lambda: orgs.create_it_contact(acme.id, email="ada"))
raises("contacts of an unknown org are not found", NotFoundError,
       lambda: orgs.list_it_contacts("org_01AAAAAAAAAAAAAAAAAAAAAAAA"))
sent = orgs.invite_it_contact(acme.id, ada.id, intents=["sso", "directory_sync"])
check("invite_it_contact returns nothing", sent is None, sent)
messages = control("GET", "/_emulator/outbox")["messages"]
check("the invitation is in the outbox", len(messages) == 1 and messages[0]["to"] == "ada@acme.example"
      and messages[0]["intents"] == ["sso", "directory_sync"] and not messages[0]["revoked"], messages)
invitation = messages[0]["link"]
status, page_html = http_get(invitation)
check("the invitation opens a menu of its intents", status == 200 and 'id="intent-dsync"' in page_html
      and 'id="intent-log_streams"' not in page_html, status)
error = raises("a second invitation conflicts", ConflictError,
               lambda: orgs.invite_it_contact(acme.id, bob.id, intents=["log_streams"]))
check("it_contact_invitation_already_active",
      error is not None and error.code == "it_contact_invitation_already_active", getattr(error, "code", None))
raises("an unknown intent is unprocessable", UnprocessableEntityError,
       lambda: orgs.invite_it_contact(acme.id, bob.id, intents=["dsync"]))
raises("revoking without an invitation is not found", NotFoundError,
       lambda: orgs.revoke_it_contact(acme.id, bob.id))
check("revoke_it_contact returns nothing", orgs.revoke_it_contact(acme.id, ada.id) is None)
status, _ = http_get(invitation)
check("a revoked invitation stops working", status == 410, status)
orgs.invite_it_contact(acme.id, bob.id, intents=[InviteItContactIntents.LOG_STREAMS])
invitation = control("GET", "/_emulator/outbox")["messages"][-1]["link"]
status, page_html = http_get(invitation)
check("invited again, for one intent", status == 200 and 'id="log-stream-form"' in page_html, status)
check("delete_it_contact returns nothing", orgs.delete_it_contact(acme.id, bob.id) is None)
status, _ = http_get(invitation)
check("removing the contact revokes its invitation", status == 410, status)
check("the outbox says so", control("GET", "/_emulator/outbox")["messages"][-1]["revoked"] is True)
check("the contact is gone", [c.id for c in orgs.list_it_contacts(acme.id).data] == [ada.id])
raises("a removed contact is not found", NotFoundError, lambda: orgs.delete_it_contact(acme.id, bob.id))

# Typed errors.
raises("unknown org link is not found", NotFoundError,
       lambda: portal.generate_link(organization="org_01AAAAAAAAAAAAAAAAAAAAAAAA", intent="sso"))
raises("bad intent is unprocessable", UnprocessableEntityError,
       lambda: portal.generate_link(organization=acme.id, intent="payroll"))
raises("21 contacts are unprocessable", UnprocessableEntityError,
       lambda: portal.generate_link(organization=acme.id, intent="sso",
                                    it_contact_emails=[f"it{i}@acme.example" for i in range(21)]))
raises("duplicate external id is a bad request", BadRequestError,
       lambda: orgs.create_organization(name="Again", external_id="acme-1"))
raises("eleven metadata keys are a bad request", BadRequestError,
       lambda: orgs.create_organization(name="Meta", metadata={f"k{i}": "v" for i in range(11)}))
raises("wrong key is an authentication error", AuthenticationError,
       lambda: WorkOSClient(api_key="sk_test_wrong", base_url=BASE, max_retries=0)
       .organizations.get_organization(acme.id))
control("POST", "/_emulator/faults", {"route": "GET /organizations/{id}", "status": 429, "retry_after": 7, "count": 1})
error = raises("injected 429 is rate limited", RateLimitExceededError, lambda: orgs.get_organization(acme.id))
check("retry_after comes from Retry-After", error is not None and float(error.retry_after) == 7.0,
      getattr(error, "retry_after", None))
check("the fault was used once", orgs.get_organization(acme.id).id == acme.id)
counts = control("GET", "/_emulator/requests")["counts"]
check("request counts per route", counts.get("GET /organizations/{id}", 0) >= 4, counts)

print("official WorkOS Python SDK against the emulator:")
print(f"{results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
