//! Tests of caller identity: tokens, mesh headers, SPIFFE ids.

use super::*;

#[test]
fn xfcc_takes_the_single_uri_of_the_last_element() {
    let header = r#"By=spiffe://cluster.local/ns/gw/sa/gw;Hash=abc;Subject="CN=a,O=b";URI=spiffe://cluster.local/ns/billing/sa/billing"#;
    assert_eq!(
        spiffe_id_from_xfcc(header, Some("cluster.local")).as_deref(),
        Ok("spiffe://cluster.local/ns/billing/sa/billing")
    );
    let two = "URI=spiffe://cluster.local/ns/a/sa/a;URI=spiffe://cluster.local/ns/b/sa/b";
    assert!(spiffe_id_from_xfcc(two, None).is_err());
    assert!(
        spiffe_id_from_xfcc("URI=spiffe://evil.example/ns/a/sa/a", Some("cluster.local")).is_err()
    );
    assert!(spiffe_id_from_xfcc("Hash=abc", None).is_err());
    let chained = "URI=spiffe://cluster.local/ns/x/sa/x,URI=spiffe://cluster.local/ns/y/sa/y";
    assert_eq!(
        spiffe_id_from_xfcc(chained, None).as_deref(),
        Ok("spiffe://cluster.local/ns/y/sa/y")
    );
}
