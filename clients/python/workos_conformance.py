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

from workos import WorkOSClient
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
fresh = portal.generate_link(organization=acme.id, intent="sso").link
control("POST", "/_emulator/clock", {"advance_seconds": 301})
status, page_html = http_get(fresh)
check("link expires after five minutes", status == 410 and "expired" in page_html, status)
status, _ = http_get(BASE + "/portal/launch?secret=nope")
check("unknown link is not found", status == 404, status)

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
