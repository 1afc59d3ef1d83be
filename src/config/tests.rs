//! Tests of configuration loading: every problem named, secrets never echoed.

use super::*;
use crate::auth::policy::Rpc;

fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[test]
fn a_minimal_config_needs_only_the_key() {
    let config = Config::load("", env(&[("WORKOS_API_KEY", "sk_test_abcdef")])).expect("valid");
    assert_eq!(config.workos.base_url.as_str(), "https://api.workos.com/");
    assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
}

#[test]
fn every_problem_is_reported_once_and_the_key_is_never_echoed() {
    let text = r#"
listen = "nowhere"
[workos]
request_timeout = "soon"
[portal]
return_url = "http://app.example.com/"
[portal.intents.payroll]
return_url = "https://app.example.com/"
"#;
    let error = Config::load(text, env(&[("WORKOS_API_KEY", "pk_live_secret_value")]))
        .expect_err("invalid");
    let lines = error.problems.join("\n");
    for setting in [
        "listen:",
        "workos.request_timeout:",
        "portal.return_url:",
        "portal.intents.payroll:",
        "WORKOS_API_KEY:",
    ] {
        assert!(lines.contains(setting), "{setting} missing from {lines}");
    }
    assert!(!lines.contains("pk_live_secret_value"));
}

#[test]
fn unknown_keys_and_a_missing_key_are_refused() {
    let error = Config::load("lisen = \"0.0.0.0:1\"", env(&[])).expect_err("invalid");
    assert!(error.problems[0].contains("lisen"), "{error}");
    let error = Config::load("", env(&[])).expect_err("invalid");
    assert!(error.problems[0].starts_with("WORKOS_API_KEY"), "{error}");
}

#[test]
fn the_proxy_comes_from_the_file_or_the_environment_and_no_proxy_exempts_the_host() {
    let key = ("WORKOS_API_KEY", "sk_test_abcdef");
    let proxy_of = |text: &str, vars: &[(&str, &str)]| {
        let mut pairs = vec![key];
        pairs.extend_from_slice(vars);
        Config::load(text, env(&pairs))
            .expect("valid")
            .workos
            .proxy
            .map(|p| format!("{p:?}"))
    };
    assert_eq!(proxy_of("", &[]), None);
    let from_env = proxy_of("", &[("HTTPS_PROXY", "http://egress.internal:3128")]);
    assert!(
        from_env
            .as_deref()
            .is_some_and(|p| p.contains("egress.internal:3128")),
        "{from_env:?}"
    );
    let lower = proxy_of("", &[("https_proxy", "http://lower.internal:8080")]);
    assert!(lower.is_some_and(|p| p.contains("lower.internal:8080")));
    // An http:// base URL uses HTTP_PROXY, not HTTPS_PROXY.
    let plain = "[workos]\nbase_url = \"http://emulator.internal:4100\"\n";
    assert_eq!(
        proxy_of(plain, &[("HTTPS_PROXY", "http://egress.internal:3128")]),
        None
    );
    let via = proxy_of(plain, &[("HTTP_PROXY", "http://egress.internal:3128")]);
    assert!(via.is_some_and(|p| p.contains("egress.internal")));
    // The environment's proxy never applies to this machine.
    for local in [
        "http://127.0.0.1:4100",
        "http://localhost:4100",
        "http://[::1]:4100",
    ] {
        let text = format!("[workos]\nbase_url = {local:?}\n");
        assert_eq!(
            proxy_of(&text, &[("HTTP_PROXY", "http://egress.internal:3128")]),
            None,
            "{local}"
        );
    }
    // NO_PROXY goes to reqwest with the proxy, which decides per request (tested in
    // workos::transport).
    let exempted = proxy_of(
        "",
        &[
            ("HTTPS_PROXY", "http://egress.internal:3128"),
            ("NO_PROXY", "x, .workos.com"),
        ],
    );
    assert!(
        exempted.is_some_and(|p| p.contains("x, .workos.com")),
        "NO_PROXY is kept with the proxy"
    );
    let everything = proxy_of(
        "",
        &[
            ("HTTPS_PROXY", "http://egress.internal:3128"),
            ("NO_PROXY", "x, *"),
        ],
    );
    assert_eq!(everything, None, "NO_PROXY=* exempts every host");
    // The file wins over the environment, and an empty value turns the proxy off.
    let file = "[workos]\nproxy = \"http://file.internal:3128\"\n";
    let chosen = proxy_of(file, &[("HTTPS_PROXY", "http://egress.internal:3128")]);
    assert!(chosen.is_some_and(|p| p.contains("file.internal")));
    let off = "[workos]\nproxy = \"\"\n";
    assert_eq!(
        proxy_of(off, &[("HTTPS_PROXY", "http://egress.internal:3128")]),
        None
    );
}

#[test]
fn a_bad_proxy_is_named_and_its_password_never_shown() {
    for (text, vars, setting) in [
        (
            "[workos]\nproxy = \"https://user:hunter2-canary@proxy:3128\"\n",
            vec![],
            "workos.proxy:",
        ),
        (
            "",
            vec![("HTTPS_PROXY", "socks5://user:hunter2-canary@proxy:1080")],
            "HTTPS_PROXY:",
        ),
        (
            "[workos]\nproxy = \"http://user:hunter2-canary@proxy:3128/path\"\n",
            vec![],
            "workos.proxy:",
        ),
    ] {
        let mut pairs = vec![("WORKOS_API_KEY", "sk_test_abcdef")];
        pairs.extend(vars);
        let error = Config::load(text, env(&pairs)).expect_err("invalid");
        let lines = error.problems.join("\n");
        assert!(lines.starts_with(setting), "{lines}");
        assert!(!lines.contains("hunter2-canary"), "{lines}");
    }
    let config = Config::load(
        "[workos]\nproxy = \"http://user:hunter2-canary@proxy.internal:3128\"\n",
        env(&[("WORKOS_API_KEY", "sk_test_abcdef")]),
    )
    .expect("valid");
    let debug = format!("{config:?}");
    assert!(debug.contains("proxy.internal:3128"), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
    assert!(!debug.contains("hunter2-canary"), "{debug}");
    assert!(
        !debug.contains("dXNlcjpodW50ZXIyLWNhbmFyeQ"),
        "no base64 of it either"
    );
}

#[test]
fn debug_output_hides_the_key() {
    let config =
        Config::load("", env(&[("WORKOS_API_KEY", "sk_test_canary_debug")])).expect("valid");
    assert!(!format!("{config:?}").contains("canary"));
}

#[test]
fn a_policy_with_mistakes_names_each_one() {
    let text = r#"
[auth]
tokens = [{ identity = "billing", sha256 = "billing-token-in-clear" }]
[auth.jwt]
issuer = "https://kubernetes.default.svc"
audience = ""
algorithms = ["HS256"]
[auth.mesh]
trusted_proxies = ["10.0.0.0/33"]
[[policy.callers]]
name = "billing"
identities = ["token:billing"]
rpcs = ["GenerateLink", "MintEverything"]
intents = ["sso", "payroll"]
organizations = ["org_nope", "external:"]
return_origins = ["http://billing.example.com", "https://billing.example.com/?x=1"]
[[policy.callers]]
name = "billing"
identities = ["billing", "token:billing"]
"#;
    let error =
        Config::load(text, env(&[("WORKOS_API_KEY", "sk_test_abcdef")])).expect_err("invalid");
    let expected = [
        "auth.tokens[0].sha256:",
        "auth.jwt: set exactly one of jwks_file or jwks_url",
        "auth.jwt.audience:",
        "auth.jwt.algorithms[0]:",
        "auth.mesh.trusted_proxies[0]:",
        "policy.callers[0].rpcs[1]: unknown RPC \"MintEverything\"",
        "policy.callers[0].intents[1]: unknown intent \"payroll\"",
        "policy.callers[0].organizations[0]:",
        "policy.callers[0].organizations[1]: empty external-id pattern",
        "policy.callers[0].return_origins[0]:",
        "policy.callers[0].return_origins[1]:",
        "policy.callers[1].name:",
        "policy.callers[1].identities[0]: \"billing\" does not say how it is proven",
        "policy.callers[1].identities[1]: \"token:billing\" already belongs to another rule",
        "policy.callers[1].rpcs: required",
        "policy.callers[1].intents: required",
        "policy.callers[1].organizations: required",
    ];
    for problem in expected {
        assert!(
            error.problems.iter().any(|p| p.starts_with(problem)),
            "{problem} missing from {error}"
        );
    }
    assert_eq!(error.problems.len(), expected.len(), "{error}");
    assert!(
        !error.to_string().contains("billing-token-in-clear\""),
        "{error}"
    );
}

#[test]
fn development_config_allows_the_dev_token_everything() {
    let config = Config::development(
        "127.0.0.1:0".parse().expect("addr"),
        Url::parse("http://127.0.0.1:4100").expect("url"),
        SecretString::from("sk_test_emulator"),
    );
    assert_eq!(config.auth.tokens[0].sha256, sha256(DEVELOPMENT_TOKEN));
    let decision = config.policy.authorize(
        DEVELOPMENT_IDENTITY,
        &crate::auth::policy::AccessRequest::new(Rpc::DeleteOrganization),
    );
    assert!(decision.allowed());
}

#[test]
fn a_syntax_error_is_located_without_echoing_the_line_that_may_hold_a_secret() {
    let text = "[workos]\nproxy = \"http://user:hunter2-canary@proxy.internal:3128\" oops\n";
    let error = Config::load(text, env(&[("WORKOS_API_KEY", "sk_test_abcdef")])).expect_err("bad");
    let lines = error.problems.join("\n");
    assert!(lines.starts_with("config file: line 2, column "), "{lines}");
    assert!(!lines.contains("hunter2-canary"), "{lines}");
}

#[test]
fn trusting_everyone_or_a_long_token_leeway_is_refused() {
    let text = "[auth.mesh]\ntrusted_proxies = [\"0.0.0.0/0\"]\n[auth.jwt]\njwks_file = \"/nonexistent\"\nissuer = \"i\"\naudience = \"a\"\nleeway = \"1h\"\n";
    let error = Config::load(text, env(&[("WORKOS_API_KEY", "sk_test_abcdef")])).expect_err("bad");
    let lines = error.problems.join("\n");
    assert!(
        lines.contains("auth.mesh.trusted_proxies[0]: \"0.0.0.0/0\" trusts too much"),
        "{lines}"
    );
    assert!(
        lines.contains("auth.jwt.leeway: must be at most 5m"),
        "{lines}"
    );
}

#[test]
fn the_server_bounds_take_counts_from_one_to_a_million() {
    let key = env(&[("WORKOS_API_KEY", "sk_test_abcdef")]);
    let config = Config::load("[server]\nmax_unfinished_requests = 64\n", &key).expect("valid");
    assert_eq!(config.server.max_unfinished_requests, 64);
    let default = Config::load("", &key).expect("valid");
    assert_eq!(default.server.max_unfinished_requests, 1024);
    let text =
        "[server]\nmax_unfinished_requests = 0\nmax_in_flight = 2000000\nmax_connections = 0\n";
    let error = Config::load(text, &key).expect_err("bad");
    assert_eq!(
        error.problems,
        [
            "server.max_in_flight: must be between 1 and 1000000",
            "server.max_connections: must be between 1 and 1000000",
            "server.max_unfinished_requests: must be between 1 and 1000000",
        ]
    );
    // Not a count at all: located (the TOML layer reports where, not which key).
    let error = Config::load("[server]\nmax_unfinished_requests = -1\n", &key).expect_err("bad");
    assert!(
        error.problems[0].starts_with("config file: line 2, column "),
        "{error}"
    );
}
