//! Tests of the domain types' parsing.

use super::*;

#[test]
fn organization_ids_must_be_org_and_a_ulid() {
    assert!(OrganizationId::parse("org_01EHWNCE74X7JSDV0X3SZ3KJNY").is_ok());
    for bad in [
        "",
        "org_",
        "org_01EHWNCE74X7JSDV0X3SZ3KJN",
        "user_01EHWNCE74X7JSDV0X3SZ3KJNY",
        "org_01EHWNCE74X7JSDV0X3SZ3KJNI",
        "org_../../x",
    ] {
        assert!(OrganizationId::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn redirect_urls_need_https_unless_loopback_is_allowed() {
    assert!(RedirectUrl::parse("https://app.example.com/back", false).is_ok());
    assert!(RedirectUrl::parse("http://localhost:3000/back", true).is_ok());
    assert!(RedirectUrl::parse("http://localhost:3000/back", false).is_err());
    assert!(RedirectUrl::parse("http://app.example.com/", true).is_err());
    for bad in [
        "javascript:alert(1)",
        "https://user:pw@app.example.com/",
        "/relative",
        "https://app.example.com/#x",
        "https://app.example.com\\@evil.com/",
        "data:text/html,hi",
    ] {
        assert!(RedirectUrl::parse(bad, true).is_err(), "{bad}");
    }
}

#[test]
fn metadata_limits_are_enforced() {
    assert!(Metadata::parse((0..10).map(|i| (format!("k{i}"), "v".into()))).is_ok());
    assert!(Metadata::parse((0..11).map(|i| (format!("k{i}"), "v".into()))).is_err());
    assert!(Metadata::parse([("k".repeat(41), "v".into())]).is_err());
    assert!(Metadata::parse([("k".into(), "v".repeat(601))]).is_err());
}

#[test]
fn emails_and_domains_are_checked_for_shape() {
    assert!(Email::parse("it@acme.example").is_ok());
    for bad in [
        "it",
        "@acme.example",
        "it@acme",
        "it@@acme.example",
        "it @acme.example",
    ] {
        assert!(Email::parse(bad).is_err(), "{bad}");
    }
    assert!(DomainClaim::parse("Acme.Example", true).is_ok_and(|d| d.domain == "acme.example"));
    assert!(DomainClaim::parse("acme", false).is_err());
}
