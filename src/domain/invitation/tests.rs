//! Hostile addresses, the way the return-URL checks are tested.

use super::*;

#[test]
fn addresses_are_normalised_to_one_canonical_form() {
    let invitee = Invitee::parse("Admin@Acme.COM").expect("valid");
    assert_eq!(invitee.as_str(), "admin@acme.com");
    assert_eq!(invitee.domain(), "acme.com");
    let tagged = Invitee::parse("it+sso@acme.com").expect("sub-addressing is an address");
    assert_eq!(tagged.domain(), "acme.com");
    let idn = Invitee::parse("admin@bücher.example").expect("IDN domain");
    assert_eq!(idn.domain(), "xn--bcher-kva.example");
    // Full-width letters map to ASCII under IDNA: the mail goes to (and is checked as) acme.com.
    let wide = Invitee::parse("admin@ａｃｍｅ.com").expect("mapped");
    assert_eq!(wide.domain(), "acme.com");
    assert_eq!(
        Invitee::parse("admin@acme.com")
            .expect("valid")
            .fingerprint(),
        Invitee::parse("ADMIN@acme.com")
            .expect("valid")
            .fingerprint(),
    );
    assert!(
        !format!("{invitee:?}").contains("admin@"),
        "Debug hides the address"
    );
}

#[test]
fn hostile_addresses_are_refused_with_the_reason() {
    for (raw, why) in [
        ("", "required"),
        ("a@b@acme.com", "exactly one @"),
        ("\"evil@attacker.com\"@acme.com", "quoted"),
        ("\"admin\"@acme.com", "quoted"),
        ("admin\\@attacker.com@acme.com", "quoted"),
        ("admin@acme.com(attacker.com)", "comments"),
        ("admin(c)@acme.com", "comments"),
        ("Admin <admin@attacker.com>", "display name"),
        ("<admin@acme.com>", "display name"),
        ("admin @acme.com", "spaces"),
        ("admin@acme.com\n", "control"),
        ("admin@acme.com\u{202e}", "invisible"),
        ("jörg@acme.com", "ASCII letters"),
        (".admin@acme.com", "dot"),
        ("ad..min@acme.com", "dot"),
        ("admin@acme.com.", "ends with a dot"),
        ("admin@acme", "no dot"),
        ("admin@acme..com", "host name"),
        ("admin@-acme.com", "host name"),
        ("admin@acme_corp.com", "host name"),
        ("admin@127.0.0.1", "IP address"),
        ("admin@[127.0.0.1]", "host name"),
        ("admin@acme.com,evil@attacker.com", "exactly one @"),
        ("admin@acme.com;evil.com", "host name"),
        ("admin@ac\u{00AD}me.com", "invisible"),
        ("admin@ac\u{200B}me.com", "invisible"),
        ("admin@acme.com\u{FEFF}", "invisible"),
        ("admin@acme\u{FE0F}.com", "invisible"),
        ("admin%attacker.com@acme.com", "ASCII letters"),
        ("attacker.com!admin@acme.com", "ASCII letters"),
    ] {
        let error = Invitee::parse(raw).expect_err(raw);
        assert!(error.contains(why), "{raw:?}: {error}");
    }
    let long = format!("{}@acme.com", "a".repeat(250));
    assert!(Invitee::parse(&long).is_err());
    // Under the limit as written, over it in punycode.
    let label: String = (0..15)
        .filter_map(|i| char::from_u32(0x4e00 + i * 997))
        .collect();
    let grows = format!("{}@{label}.{label}.{label}.{label}.example", "a".repeat(60));
    assert!(grows.len() <= ADDRESS_MAX, "{}", grows.len());
    let error = Invitee::parse(&grows).expect_err("too long once in punycode");
    assert!(error.contains("punycode"), "{error}");
    // What the audit keeps of a refused address: a domain only when it is one.
    assert_eq!(raw_domain("alice.secret＠leakco.com"), None);
    assert_eq!(raw_domain("alice.secret leakco.com"), None);
    assert_eq!(raw_domain("\"x\"@Acme.COM").as_deref(), Some("acme.com"));
}

#[test]
fn patterns_match_exact_domains_or_strict_subdomains_never_look_alikes() {
    let exact = DomainPattern::parse("acme.com").expect("pattern");
    let sub = DomainPattern::parse("*.acme.com").expect("pattern");
    let domain = |raw: &str| Invitee::parse(raw).expect(raw).domain().to_owned();
    assert!(exact.matches(&domain("it@acme.com")));
    assert!(exact.matches(&domain("it@ACME.com")));
    for look_alike in [
        "it@acme.com.attacker.com",
        "it@evilacme.com",
        "it@acme.co",
        "it@аcme.com", // Cyrillic а
        "it@acrne.com",
        "it@x.acme.com",
    ] {
        assert!(!exact.matches(&domain(look_alike)), "{look_alike}");
    }
    assert!(sub.matches(&domain("it@eu.acme.com")));
    assert!(sub.matches(&domain("it@a.b.acme.com")));
    assert!(!sub.matches(&domain("it@acme.com")));
    assert!(!sub.matches(&domain("it@evilacme.com")));
    assert_eq!(
        DomainPattern::parse("Bücher.Example").expect("IDN pattern"),
        DomainPattern::parse("xn--bcher-kva.example").expect("punycode pattern")
    );
    for bad in ["*", "*.com.*", "acme.*", "a*b.com", "acme", ""] {
        assert!(DomainPattern::parse(bad).is_err(), "{bad:?}");
    }
}
