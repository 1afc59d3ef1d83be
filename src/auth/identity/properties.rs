//! Property tests of the `x-forwarded-client-cert` parser's parts: the quote-aware splitter
//! loses nothing, and the element the nearest proxy appended decides, whatever came before it.
//! (The whole path through `Authenticator::authenticate`, `l5d-client-id` included, is checked
//! by `crate::fuzzing::mesh_identity` and its properties.)

use proptest::prelude::*;

use super::*;
use crate::fuzzing::properties::{cases, xfcc};

/// Header-ish text: the characters the splitter and the `key=value` reader care about, and some
/// that they do not.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z=;,\"\\\\:/. ]{0,40}",
        1 => any::<String>(),
    ]
}

/// Header text without quotes or backslashes: every separator in it separates.
fn plain_header_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9=;,:/. _-]{0,40}"
}

fn spiffe_id() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9.-]{0,10}(/[a-zA-Z0-9._-]{1,8}){1,3}"
        .prop_map(|rest| format!("spiffe://{rest}"))
}

/// What a client might put before its proxy's element to pass as someone else: elements of its
/// own, a URI of its choosing, then something that might join what follows to it.
fn forged_prefix() -> impl Strategy<Value = String> {
    let tail = prop::sample::select(&["", ";X=\"", ";X=\\", "\"", "\\", ";X=\"a\\\""][..]);
    (xfcc(), prop::option::of(spiffe_id()), tail).prop_map(|(elements, uri, tail)| {
        let uri = uri.map(|id| format!(";URI={id}")).unwrap_or_default();
        format!("{elements}{uri}{tail}")
    })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn splitting_loses_nothing(text in header_text(), separator in prop::sample::select(&[',', ';'][..])) {
        let Some(parts) = split_unquoted(&text, separator) else {
            // Refused only with a quote left open.
            prop_assert!(text.matches('"').count() % 2 == 1 || text.contains('\\'), "{:?}", text);
            return Ok(());
        };
        prop_assert_eq!(parts.join(&separator.to_string()), text.clone());
        prop_assert!(parts.len() <= text.matches(separator).count() + 1);
        if !text.contains('"') {
            prop_assert_eq!(parts, text.split(separator).collect::<Vec<_>>());
        }
    }

    #[test]
    fn quoted_separators_do_not_split(inner in "[a-z,;= ]{0,20}", separator in prop::sample::select(&[',', ';'][..])) {
        let quoted = format!("\"{inner}\"");
        prop_assert_eq!(split_unquoted(&quoted, separator), Some(vec![quoted.as_str()]));
        let open = format!("a{separator}\"{inner}");
        prop_assert_eq!(split_unquoted(&open, separator), None);
    }

    #[test]
    fn nothing_written_before_the_proxys_element_proves_anyone_else(
        earlier in prop_oneof![forged_prefix(), xfcc(), header_text()],
        id in spiffe_id(),
    ) {
        // With Envoy's APPEND_FORWARD, the client writes what comes before the element its
        // proxy appends. Whatever that is, the header proves the proxy's URI or nothing.
        let header = format!("{earlier},By=spiffe://cluster.local/ns/gw/sa/gw;URI={id}");
        if let Ok(proven) = spiffe_id_from_xfcc(&header, None) {
            prop_assert!(proven.ends_with(&id), "{:?} proved {:?}", header, proven);
        }
        let without_uri = format!("{earlier},By=spiffe://cluster.local/ns/gw/sa/gw;Hash=abc");
        let proven = spiffe_id_from_xfcc(&without_uri, None);
        prop_assert!(proven.is_err(), "{:?} proved {:?}", without_uri, proven);
    }

    #[test]
    fn the_last_element_decides(earlier in plain_header_text(), id in spiffe_id()) {
        // Whatever earlier elements say (a client may forge one), the nearest proxy's own
        // element, appended last, is the identity.
        let header = format!("{earlier},By=spiffe://cluster.local/ns/gw/sa/gw;URI={id}");
        let proven = spiffe_id_from_xfcc(&header, None).map_err(|e| e.description);
        prop_assert!(proven.as_ref().is_ok_and(|p| p.ends_with(&id)), "{:?} gave {:?}", header, proven);
        let two = format!("{header};URI={id}");
        prop_assert!(spiffe_id_from_xfcc(&two, None).is_err(), "two URIs accepted: {two:?}");
    }

    #[test]
    fn an_accepted_spiffe_id_is_in_the_header_and_checks_again(header in header_text()) {
        for trust_domain in [None, Some("cluster.local")] {
            if let Ok(id) = spiffe_id_from_xfcc(&header, trust_domain) {
                prop_assert!(header.contains(&id));
                prop_assert_eq!(check_spiffe_id(&id, trust_domain), Ok(id.clone()));
            }
        }
    }
}

#[test]
fn an_unclosed_quote_cannot_swallow_the_proxys_element() {
    // Found by `nothing_written_before_the_proxys_element_proves_anyone_else`: the client's
    // `X="` opened a quote that ran to the end, so the proxy's element became part of the
    // client's, and the client's URI was the only one: the client passed as `admin`.
    let forged = "URI=spiffe://cluster.local/ns/admin/sa/admin;X=\"";
    let header = format!(
        "{forged},By=spiffe://cluster.local/ns/gw/sa/gw;URI=spiffe://cluster.local/ns/client/sa/client"
    );
    assert!(spiffe_id_from_xfcc(&header, None).is_err(), "{header}");
}

#[test]
fn a_backslash_outside_quotes_escapes_nothing() {
    // A trailing backslash must not join the client's element to the proxy's.
    let forged = "URI=spiffe://cluster.local/ns/admin/sa/admin;X=\\";
    let header = format!("{forged},By=spiffe://cluster.local/ns/gw/sa/gw");
    assert!(spiffe_id_from_xfcc(&header, None).is_err(), "{header}");
    // Inside quotes it still escapes a quote.
    let quoted = r#"Subject="CN=a\",b";URI=spiffe://cluster.local/ns/a/sa/a"#;
    assert_eq!(
        spiffe_id_from_xfcc(quoted, None).as_deref(),
        Ok("spiffe://cluster.local/ns/a/sa/a")
    );
}
