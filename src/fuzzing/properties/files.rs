//! Configuration and policy files: edited seeds (lines dropped, repeated or swapped, characters
//! changed) and policies built rule by rule, through [`crate::fuzzing::config`] and
//! [`crate::fuzzing::policy`]; and the external-id glob against a plain matcher.

use proptest::{prelude::*, sample::select};

use super::{cases, lines_mutated, mutated, one_of};
use crate::{
    auth::policy::Pattern,
    config::Config,
    fuzzing::{API_KEY, config, names_a_rule_field, policy},
};

// === Configuration ===

/// Configurations that load without a policy, and one with an inline policy; the properties
/// edit them.
const CONFIGS: &[&str] = &[
    r#"listen = "127.0.0.1:50051"
[workos]
request_timeout = "5s"
[server]
request_timeout = "10s"
max_in_flight = 100
[portal]
allow_http_loopback = true
return_url = "https://app.example.com/settings"
[auth]
[[auth.tokens]]
identity = "billing"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[auth.mesh]
trusted_proxies = ["127.0.0.1/32"]
trust_domain = "cluster.local"
"#,
    r#"[portal]
return_url = "https://app.example.com/"
[policy]
[[policy.callers]]
name = "billing"
identities = ["token:billing"]
rpcs = ["GenerateLink"]
intents = ["sso"]
organizations = ["*"]
return_origins = ["https://app.example.com"]
"#,
];

const CONFIG_LINES: &[&str] = &[
    "[workos]",
    "[server]",
    "[portal]",
    "[[auth.tokens]]",
    "[policy]",
    "[[policy.callers]]",
    "request_timeout = \"0s\"",
    "request_timeout = \"1000000h\"",
    "request_timeout = 5",
    "max_in_flight = 0",
    "listen = \"nowhere\"",
    "base_url = \"ftp://x\"",
    "proxy = \"http://user:secret@proxy.example:3128\"",
    "return_url = \"http://app.example.com/\"",
    "trusted_proxies = [\"0.0.0.0/0\"]",
    "sha256 = \"zz\"",
    "identities = [\"\"]",
    "organizations = [\"external:\"]",
    "\"unknown\\r\\nkey\" = 1",
    "name = \"\"",
];

proptest! {
    #![proptest_config(cases(96))]

    #[test]
    fn a_configuration_loads_or_names_each_problem_on_one_line(text in prop_oneof![
        3 => lines_mutated(select(CONFIGS).prop_map(str::to_owned), CONFIG_LINES),
        2 => mutated(select(CONFIGS).prop_map(str::to_owned)),
        1 => any::<String>(),
    ]) {
        config(&text);
    }
}

#[test]
fn the_configuration_the_properties_edit_loads() {
    let env = |name: &str| (name == "WORKOS_API_KEY").then(|| API_KEY.to_owned());
    Config::load(CONFIGS[0], env).expect("the first seed configuration loads");
}

// === Policy ===

const POLICY: &str = r#"[[callers]]
name = "billing"
identities = ["token:billing", "spiffe://cluster.local/ns/billing/sa/billing"]
rpcs = ["GenerateLink", "RevokeLinks"]
intents = ["sso", "dsync"]
organizations = ["external:acme-*", "org_01EHWNCE74X7JSDV0X3SZ3KJNY"]
return_origins = ["https://app.example.com/settings"]
require_acting_user = true
requests_per_minute = 60
invite_email_domains = ["organization", "*.acme.com"]

[[callers]]
name = "support"
identities = ["token:support", "jwt:support", "linkerd:support.default.serviceaccount"]
rpcs = ["*"]
intents = ["*"]
organizations = ["*"]
"#;

const POLICY_LINES: &[&str] = &[
    "[[callers]]",
    "name = \"billing\"",
    "identities = [\"token:billing\"]",
    "identities = [\"billing\"]",
    "identities = [\"jwt:\"]",
    "identities = []",
    "rpcs = [\"Nope\"]",
    "rpcs = []",
    "intents = [\"payroll\"]",
    "organizations = [\"org_bad\"]",
    "organizations = [\"external:\"]",
    "return_origins = [\"http://app.example.com\"]",
    "return_origins = [\"https://app.example.com/?q=1\"]",
    "requests_per_minute = 0",
    "max_watchers = 4294967296",
    "invite_email_domains = []",
    "invite_email_domains = [\"*.\"]",
    "surprise = 1",
    "reload_interval = \"2s\"",
];

fn rule_field() -> impl Strategy<Value = String> {
    let list = |items: &'static [&'static str]| {
        prop::collection::vec(one_of(items), 0..3).prop_map(|v| {
            format!(
                "[{}]",
                v.iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    };
    prop_oneof![
        list(&[
            "token:billing",
            "jwt:billing",
            "linkerd:billing",
            "billing",
            "",
            "token: x",
            "spiffe://cluster.local/ns/a/sa/a",
        ])
        .prop_map(|v| format!("identities = {v}")),
        list(&[
            "GenerateLink",
            "*",
            "Nope",
            "adminportal.v1.PortalService/GenerateLink"
        ])
        .prop_map(|v| format!("rpcs = {v}")),
        list(&["sso", "*", "payroll", ""]).prop_map(|v| format!("intents = {v}")),
        list(&[
            "*",
            "external:acme-*",
            "external:",
            "org_01EHWNCE74X7JSDV0X3SZ3KJNY",
            "acme"
        ])
        .prop_map(|v| format!("organizations = {v}")),
        list(&[
            "*",
            "https://app.example.com",
            "http://localhost:3000",
            "ftp://x",
            "https://a.example/?q"
        ])
        .prop_map(|v| format!("return_origins = {v}")),
        list(&["organization", "*", "acme.com", "*.acme.com", "*.", "a..b"])
            .prop_map(|v| format!("invite_email_domains = {v}")),
        (0u64..3).prop_map(|n| format!("requests_per_minute = {n}")),
        any::<bool>().prop_map(|b| format!("require_acting_user = {b}")),
    ]
}

fn policy_text() -> impl Strategy<Value = String> {
    let name = one_of(&["billing", "support", "", "  "]);
    let rule = (name, prop::collection::vec(rule_field(), 0..6)).prop_map(|(name, fields)| {
        format!("[[callers]]\nname = {name:?}\n{}\n", fields.join("\n"))
    });
    prop::collection::vec(rule, 0..3).prop_map(|rules| rules.concat())
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn a_policy_reads_or_names_the_rule_and_field_of_each_problem(text in prop_oneof![
        3 => policy_text(),
        2 => lines_mutated(Just(POLICY.to_owned()), POLICY_LINES),
        2 => mutated(Just(POLICY.to_owned())),
        1 => any::<String>(),
    ]) {
        policy(&text);
    }

    #[test]
    fn external_id_patterns_match_like_a_glob(
        pattern in "[ab*]{0,8}",
        value in "[ab]{0,10}",
    ) {
        prop_assert_eq!(Pattern::new(&pattern).matches(&value), glob(&pattern, &value));
    }
}

/// A plain glob matcher to compare with: `*` matches any run of characters.
fn glob(pattern: &str, value: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let value: Vec<char> = value.chars().collect();
    // matches[i][j]: the first i pattern characters match the first j value characters.
    let mut matches = vec![vec![false; value.len() + 1]; pattern.len() + 1];
    matches[0][0] = true;
    for i in 1..=pattern.len() {
        for j in 0..=value.len() {
            matches[i][j] = if pattern[i - 1] == '*' {
                matches[i - 1][j] || (j > 0 && matches[i][j - 1])
            } else {
                j > 0 && matches[i - 1][j - 1] && pattern[i - 1] == value[j - 1]
            };
        }
    }
    matches[pattern.len()][value.len()]
}

#[test]
fn the_policy_check_refuses_problems_that_name_no_field() {
    assert!(names_a_rule_field(
        "callers[0].rpcs[1]: unknown RPC \"Nope\""
    ));
    assert!(names_a_rule_field("callers[12].organizations: required"));
    assert!(!names_a_rule_field("something went wrong"));
    assert!(!names_a_rule_field("callers[x].rpcs: unknown"));
    assert!(!names_a_rule_field("callers[0]: no field"));
}
