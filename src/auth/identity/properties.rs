//! Property tests of the `x-forwarded-client-cert` parser's parts: the quote-aware splitter
//! loses nothing, and the element the nearest proxy appended decides, whatever came before it.

use super::*;

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
