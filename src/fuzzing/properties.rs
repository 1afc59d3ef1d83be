//! Property tests: the checks of [`crate::fuzzing`] fed by proptest strategies that know what
//! each parser's input looks like (URLs, mesh headers, tokens, configuration and policy files),
//! so `cargo test` exercises the same promises as the fuzzers, on shapes a blind fuzzer is slow
//! to find. Configuration and policy files (`files`) and request messages (`messages`) have
//! files of their own.
//!
//! Every property runs a few dozen cases, so the whole file takes well under a second. The seed
//! is fixed, so a run is reproducible; `PROPTEST_RNG_SEED=<n> cargo test --lib properties`
//! explores others.

mod files;
mod messages;

use proptest::{
    prelude::*,
    sample::{Index, select, subsequence},
    test_runner::{Config as ProptestConfig, RngSeed},
};

use super::*;

/// `cases` cases, from a fixed seed unless `PROPTEST_RNG_SEED` names one, and no regression
/// files written into the source tree: a failure found is kept as a unit test instead.
pub(crate) fn cases(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(cases);
    config.failure_persistence = None;
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(0x0a11_ce5e_ed00_0001);
    }
    config
}

/// One of `items`.
pub(crate) fn one_of(items: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
    select(items).prop_map(str::to_owned)
}

/// Characters that mean something to one parser or another, and any character at all.
fn edit_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => select(&[
            '/', ':', '@', '%', '#', '?', '\\', '.', '[', ']', '"', ',', ';', '=', '*', ' ', '\n',
            '\t', '\0', '\'', '{', '}', '-', '_', 'A', '0', '\u{202e}', 'é',
        ][..]),
        1 => any::<char>(),
    ]
}

/// A few edits to `text`: characters inserted, removed or replaced.
pub(crate) fn mutated(text: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    let edits = prop::collection::vec((any::<Index>(), 0u8..3, edit_char()), 0..4);
    (text, edits).prop_map(|(text, edits)| {
        let mut chars: Vec<char> = text.chars().collect();
        for (at, kind, c) in edits {
            let at = at.index(chars.len() + 1);
            match kind {
                0 => chars.insert(at, c),
                1 if at < chars.len() => {
                    chars.remove(at);
                }
                _ if at < chars.len() => chars[at] = c,
                _ => chars.push(c),
            }
        }
        chars.into_iter().collect()
    })
}

/// A few whole-line edits to `text`: lines dropped, repeated or swapped for one of `lines`.
fn lines_mutated(
    text: impl Strategy<Value = String>,
    lines: &'static [&'static str],
) -> impl Strategy<Value = String> {
    let edits = prop::collection::vec((any::<Index>(), 0u8..3, select(lines)), 0..3);
    (text, edits).prop_map(|(text, edits)| {
        let mut all: Vec<String> = text.lines().map(str::to_owned).collect();
        for (at, kind, line) in edits {
            let at = at.index(all.len() + 1);
            match kind {
                0 if at < all.len() => {
                    all.remove(at);
                }
                1 if at < all.len() => {
                    let copy = all[at].clone();
                    all.insert(at, copy);
                }
                _ => all.insert(at.min(all.len()), line.to_owned()),
            }
        }
        all.join("\n") + "\n"
    })
}

// === URLs ===

fn url_like() -> impl Strategy<Value = String> {
    let scheme = one_of(&["https", "http", "HTTPS", "ftp", "javascript", "", "https+x"]);
    let separator = one_of(&["://", ":/", ":", ":///", ":\\\\", "//"]);
    let userinfo = one_of(&["", "", "", "user@", "user:pass@", "@", "a%40b@", ":@"]);
    let host = prop_oneof![
        one_of(&[
            "app.example.com",
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1",
            "0x7f.0.0.1",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "[::]",
            "0.0.0.0",
            "10.0.0.1",
            "example.com.",
            "xn--bcher-kva.example",
            "bücher.example",
            "%65xample.com",
            "exa mple.com",
            "",
            "localhost.",
        ]),
        "[a-z0-9.-]{0,12}",
    ];
    let port = one_of(&["", "", ":443", ":8443", ":0", ":99999", ":"]);
    let path = prop_oneof![
        one_of(&[
            "",
            "/",
            "/settings",
            "/a/../b",
            "//evil.example",
            "/%2e%2e/",
            "/settings/",
        ]),
        "[/a-z%.]{0,10}",
    ];
    let query = one_of(&["", "", "?a=1", "?", "?next=https://evil.example"]);
    let fragment = one_of(&["", "", "", "#x", "#"]);
    (
        scheme, separator, userinfo, host, port, path, query, fragment,
    )
        .prop_map(
            |(scheme, separator, userinfo, host, port, path, query, fragment)| {
                format!("{scheme}{separator}{userinfo}{host}{port}{path}{query}{fragment}")
            },
        )
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn url_validation_keeps_its_promises(input in prop_oneof![
        4 => url_like(),
        2 => mutated(url_like()),
        1 => any::<String>(),
    ]) {
        redirect_url(&input);
    }
}

#[test]
fn the_url_check_catches_a_url_accepted_against_the_rules() {
    // A property is only as good as its check: this one must refuse plain http where it is
    // not allowed.
    let http = RedirectUrl::parse("http://localhost:3000/", true).expect("allowed for loopback");
    accepted_url("http://localhost:3000/", &http, true);
    let caught = std::panic::catch_unwind(|| accepted_url("http://localhost:3000/", &http, false));
    assert!(caught.is_err());
}

// === Mesh identity ===

fn spiffe_id() -> impl Strategy<Value = String> {
    prop_oneof![
        one_of(&[
            "spiffe://cluster.local/ns/billing/sa/billing",
            "spiffe://cluster.local/ns/a/sa/a",
            "spiffe://evil.example/ns/a/sa/a",
            "spiffe://Cluster.local/ns/a",
            "spiffe://cluster.local",
            "spiffe://cluster.local/",
            "spiffe://cluster.local//x",
            "spiffe:///x",
            "https://cluster.local/ns/a",
            "",
        ]),
        ("[a-z0-9.-]{1,12}", "[a-z0-9._/-]{1,16}").prop_map(|(d, p)| format!("spiffe://{d}/{p}")),
    ]
}

/// `x-forwarded-client-cert`-like text: elements of `key=value` pairs, values quoted or not,
/// SPIFFE ids good and bad, and quotes and backslashes where they do harm.
pub(crate) fn xfcc() -> impl Strategy<Value = String> {
    xfcc_from(&[
        "\"CN=a,O=b;c\"",
        "abc123",
        "\"unterminated",
        "\\\"",
        "\"a\\\"b\"",
        "",
    ])
}

/// Like [`xfcc`], but every quote closed, as a proxy writes it.
fn well_formed_xfcc() -> impl Strategy<Value = String> {
    xfcc_from(&["\"CN=a,O=b;c\"", "abc123", "\"a\\\"b\"", ""])
}

fn xfcc_from(values: &'static [&'static str]) -> impl Strategy<Value = String> {
    let key = one_of(&[
        "By", "Hash", "Subject", "URI", "uri", "Uri", " URI", "DNS", "Cert",
    ]);
    let value = prop_oneof![
        spiffe_id(),
        spiffe_id().prop_map(|id| format!("\"{id}\"")),
        one_of(values),
    ];
    let pair = (key, value).prop_map(|(k, v)| format!("{k}={v}"));
    let element = prop::collection::vec(pair, 0..4).prop_map(|pairs| pairs.join(";"));
    prop::collection::vec(element, 1..4).prop_map(|elements| elements.join(","))
}

fn linkerd_id() -> impl Strategy<Value = String> {
    prop_oneof![
        one_of(&[
            "billing.default.serviceaccount.identity.linkerd.cluster.local",
            "",
            "a b",
            "-",
            "spiffe://cluster.local/ns/a/sa/a",
        ]),
        "[a-zA-Z0-9.-]{0,20}",
        "[a-z.]{250,256}",
    ]
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn mesh_headers_prove_what_they_carry_or_nothing(value in prop_oneof![
        3 => xfcc().prop_map(String::into_bytes),
        2 => mutated(xfcc()).prop_map(String::into_bytes),
        2 => linkerd_id().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]) {
        mesh_identity(&value);
    }

    #[test]
    fn a_well_formed_header_from_a_trusted_proxy_proves_its_spiffe_id(
        before in prop::collection::vec(well_formed_xfcc(), 0..2),
        path in "[a-z0-9][a-z0-9._-]{0,10}(/[a-z0-9._-]{1,8}){0,3}",
        quoted in any::<bool>(),
    ) {
        let id = format!("spiffe://cluster.local/{path}");
        let uri = if quoted { format!("\"{id}\"") } else { id.clone() };
        let mut elements = before;
        elements.push(format!("By=spiffe://cluster.local/ns/gw/sa/gw;Hash=abc;URI={uri}"));
        let header = elements.join(",");
        let caller = authenticate_mesh(
            "x-forwarded-client-cert",
            header.as_bytes(),
            Some("cluster.local"),
            true,
        )
        .expect("a header value");
        let caller = caller.map_err(|e| e.description);
        prop_assert!(
            caller.as_ref().is_ok_and(|c| c.identity.ends_with(&id)),
            "{header:?} gave {caller:?}"
        );
        let untrusted = authenticate_mesh("x-forwarded-client-cert", header.as_bytes(), None, false)
            .expect("a header value");
        prop_assert!(untrusted.is_err());
    }
}

#[test]
fn the_mesh_check_catches_a_header_whose_last_element_does_not_decide() {
    // What the parser once accepted: an open quote that swallows whatever a proxy appends.
    let swallowing = "URI=spiffe://cluster.local/ns/admin/sa/admin;X=\"";
    let caller = crate::auth::identity::Caller {
        identity: "spiffe://cluster.local/ns/admin/sa/admin".to_owned(),
        proof: Proof::ForwardedClientCert,
    };
    let caught = std::panic::catch_unwind(|| {
        proven_mesh_caller("x-forwarded-client-cert", swallowing, None, &caller)
    });
    assert!(caught.is_err());
    mesh_identity(swallowing.as_bytes());
}

// === Page tokens and resume cursors ===

fn organization_id() -> impl Strategy<Value = String> {
    "[0-9A-HJKMNP-TV-Z]{26}".prop_map(|ulid| format!("org_{ulid}"))
}

const FILTERS: &[&str] = &["a.example", "b.example", "c.example", "d.example"];

/// The token the gateway writes for the page after (or before) `id` of a query.
fn issued_token(id: &str, before: bool, order: i32, domains: &[String]) -> String {
    let query = convert::list_query(proto::ListOrganizationsRequest {
        page_size: 0,
        page_token: String::new(),
        domains: domains.to_vec(),
        order,
    })
    .expect("a valid query");
    let id = crate::domain::OrganizationId::parse(id).expect("a valid id");
    let page = OrganizationPage {
        organizations: Vec::new(),
        before: before.then(|| id.clone()),
        after: (!before).then_some(id),
    };
    let response = convert::list_response(page, &query);
    if before {
        response.previous_page_token
    } else {
        response.next_page_token
    }
}

fn query_with(token: &str, order: i32, domains: &[String]) -> Result<Option<Cursor>, Invalid> {
    convert::list_query(proto::ListOrganizationsRequest {
        page_size: 0,
        page_token: token.to_owned(),
        domains: domains.to_vec(),
        order,
    })
    .map(|query| query.cursor)
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn a_page_token_reads_back_only_for_its_own_query(
        id in organization_id(),
        before in any::<bool>(),
        order in 0i32..3,
        other_order in 0i32..3,
        domains in subsequence(FILTERS, 0..=3).prop_shuffle(),
        other_domains in subsequence(FILTERS, 0..=3).prop_shuffle(),
    ) {
        let domains: Vec<String> = domains.into_iter().map(str::to_owned).collect();
        let other_domains: Vec<String> = other_domains.into_iter().map(str::to_owned).collect();
        let token = issued_token(&id, before, order, &domains);
        let cursor = query_with(&token, order, &domains).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let expected = crate::domain::OrganizationId::parse(&id).expect("a valid id");
        prop_assert_eq!(
            cursor,
            Some(if before { Cursor::Before(expected) } else { Cursor::After(expected) })
        );
        // The same query, written in another order of filters or another case, is the same
        // query; another order or another set of filters is not.
        let shuffled: Vec<String> = domains.iter().rev().map(|d| d.to_uppercase()).collect();
        prop_assert!(query_with(&token, order, &shuffled).is_ok());
        let ascending = |order: i32| order == proto::ListOrder::Ascending as i32;
        let mut a = domains.clone();
        let mut b = other_domains.clone();
        a.sort();
        b.sort();
        let same_query = ascending(order) == ascending(other_order) && a == b;
        prop_assert_eq!(query_with(&token, other_order, &other_domains).is_ok(), same_query);
        page_token(&token);
    }

    #[test]
    fn page_tokens_and_resume_cursors_refuse_cleanly(text in prop_oneof![
        2 => any::<String>(),
        2 => "[A-Za-z0-9_-]{0,80}",
        2 => mutated(organization_id().prop_map(|id| {
            issued_token(&id, false, 1, &["a.example".to_owned()])
        })),
        1 => mutated(one_of(&["t1.1700000000000", "a1.event_01HX", "t1.", "a1."])),
        1 => "t1.[0-9]{15,25}",
    ]) {
        page_token(&text);
        resume_cursor(&text);
    }
}
