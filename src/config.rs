//! Configuration: defaults, then a TOML file, then the environment, validated once into typed
//! values. Every problem is reported (one line each), not only the first.
//!
//! **Invariant:** nothing outside this module and `main.rs` reads the process environment.
//! [`Config::load`] takes the environment as a lookup function, so tests pass a map.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::Deserialize;
use url::Url;

use crate::{
    auth::{
        audit::AuditTarget,
        identity::{JwksSource, JwtSettings, MeshSettings, TokenDigest},
        policy::{OrganizationScope, OriginRule, Pattern, Policy, Rpc, Rule},
    },
    domain::{Intent, OrganizationId, RedirectUrl},
    gateway::{PortalSettings, UrlDefaults},
    workos::{
        self,
        quota::QuotaSettings,
        resilience::{BreakerSettings, RetrySettings},
    },
};

/// The WorkOS production API.
pub const DEFAULT_WORKOS_BASE_URL: &str = "https://api.workos.com";
/// Where the gateway listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// How to reach WorkOS.
    pub workos: workos::Settings,
    /// Portal link defaults and URL rules.
    pub portal: PortalSettings,
    /// Server behaviour.
    pub server: ServerSettings,
    /// How callers prove who they are.
    pub auth: AuthSettings,
    /// Who may do what.
    pub policy: Policy,
    /// The file the policy is reloaded from (on SIGHUP or when it changes), if any.
    pub policy_source: Option<PolicySource>,
    /// How often the policy file is checked for changes.
    pub policy_reload_interval: Duration,
    /// Where audit records go.
    pub audit: AuditTarget,
    /// Where `/metrics` and `/healthz` are served, if anywhere.
    pub admin_listen: Option<SocketAddr>,
}

/// How callers prove who they are.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// Static tokens (digests only).
    pub tokens: Vec<TokenDigest>,
    /// JWT verification.
    pub jwt: Option<JwtSettings>,
    /// Trusted mesh proxies.
    pub mesh: MeshSettings,
    /// mTLS termination by the gateway itself.
    pub tls: Option<TlsSettings>,
}

/// The gateway's own TLS (and optional client-certificate verification).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Server certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// Server private key, PEM.
    pub key_pem: SecretSlice<u8>,
    /// CA that client certificates must chain to; `None` serves TLS without client certificates.
    pub client_ca_pem: Option<Vec<u8>>,
    /// Required SPIFFE trust domain of client certificates.
    pub trust_domain: Option<String>,
}

/// Where the policy lives, for reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// The file.
    pub path: PathBuf,
    /// `true` for a dedicated policy file (`callers` at the top), `false` for the `[policy]`
    /// table of the main configuration file.
    pub dedicated: bool,
    /// Whether origins may be plain-http loopback (from `portal.allow_http_loopback`).
    pub allow_http_loopback: bool,
}

/// Server behaviour.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The longest an RPC may run: the deadline of calls that set none, and the cap of those
    /// that set a longer one.
    pub request_timeout: Duration,
    /// How long in-flight RPCs may run after the server stops accepting.
    pub shutdown_grace: Duration,
    /// How long the server keeps serving, NOT_SERVING, after a shutdown signal, so load
    /// balancers notice before connections are refused.
    pub drain_delay: Duration,
    /// Concurrent RPCs beyond which new ones are refused at once (RESOURCE_EXHAUSTED).
    pub max_in_flight: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(30),
            drain_delay: Duration::from_secs(5),
            max_in_flight: 1024,
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// One line per problem, each naming the setting.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    #[serde(default)]
    workos: RawWorkos,
    #[serde(default)]
    portal: RawPortal,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    auth: RawAuth,
    tls: Option<RawTls>,
    #[serde(default)]
    audit: RawAudit,
    policy_file: Option<String>,
    policy: Option<RawPolicy>,
    admin: Option<RawAdmin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    tokens: Vec<RawToken>,
    jwt: Option<RawJwt>,
    mesh: Option<RawMesh>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    identity: String,
    sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    jwks_file: Option<String>,
    jwks_url: Option<String>,
    issuer: String,
    audience: String,
    #[serde(default)]
    algorithms: Vec<String>,
    leeway: Option<String>,
    refresh_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMesh {
    #[serde(default)]
    trusted_proxies: Vec<String>,
    trust_domain: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: String,
    key_file: String,
    client_ca_file: Option<String>,
    trust_domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    callers: Vec<RawRule>,
    reload_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default)]
    identities: Vec<String>,
    rpcs: Option<Vec<String>>,
    intents: Option<Vec<String>>,
    organizations: Option<Vec<String>>,
    #[serde(default)]
    return_origins: Vec<String>,
    #[serde(default)]
    require_acting_user: bool,
    requests_per_minute: Option<u32>,
}

/// The `[policy]` table of a main configuration file, ignoring everything else in it.
#[derive(Debug, Deserialize)]
struct PolicyOnly {
    #[serde(default)]
    policy: RawPolicy,
    #[serde(flatten)]
    _rest: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkos {
    base_url: Option<String>,
    proxy: Option<String>,
    request_timeout: Option<String>,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    breaker: RawBreaker,
    #[serde(default)]
    quota: RawQuota,
    #[serde(default)]
    cache: RawCache,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<u32>,
    backoff_base: Option<String>,
    backoff_max: Option<String>,
    budget_ratio: Option<f64>,
    budget_min_per_second: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    failure_threshold: Option<u32>,
    open_for: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    requests_per_minute: Option<u32>,
    burst: Option<u32>,
    deletes_per_minute: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    ttl: Option<String>,
    max_entries: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPortal {
    #[serde(default)]
    allow_http_loopback: bool,
    return_url: Option<String>,
    success_url: Option<String>,
    #[serde(default)]
    intents: BTreeMap<String, RawIntentDefaults>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntentDefaults {
    return_url: Option<String>,
    success_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    request_timeout: Option<String>,
    shutdown_grace: Option<String>,
    drain_delay: Option<String>,
    max_in_flight: Option<usize>,
}

/// Collects problems while converting raw settings.
#[derive(Debug, Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, problem: String) {
        self.0.push(problem);
    }

    fn check<T>(&mut self, setting: &str, parsed: Result<T, String>) -> Option<T> {
        parsed
            .map_err(|problem| self.0.push(format!("{setting}: {problem}")))
            .ok()
    }

    fn duration(&mut self, setting: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(value) = value else { return default };
        self.check(
            setting,
            humantime::parse_duration(value)
                .map_err(|_| format!("{value:?} is not a duration such as \"10s\" or \"500ms\""))
                .and_then(|d| {
                    if d.is_zero() {
                        Err("must be more than zero".into())
                    } else {
                        Ok(d)
                    }
                }),
        )
        .unwrap_or(default)
    }

    fn zero_or_duration(
        &mut self,
        setting: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        match value {
            Some("0") | Some("0s") => Duration::ZERO,
            other => self.duration(setting, other, default),
        }
    }

    fn url(
        &mut self,
        setting: &str,
        value: Option<&str>,
        allow_http_loopback: bool,
    ) -> Option<RedirectUrl> {
        value.and_then(|v| self.check(setting, RedirectUrl::parse(v, allow_http_loopback)))
    }
}

impl Config {
    /// Builds the configuration from a TOML document and an environment lookup.
    ///
    /// Environment: `WORKOS_API_KEY` (required, `sk_...`), `WORKOS_BASE_URL` (overrides the
    /// file's `workos.base_url`), and the usual proxy variables (`HTTPS_PROXY`, or `HTTP_PROXY`
    /// for an `http://` base URL, either case, with `NO_PROXY`) unless the file sets
    /// `workos.proxy`.
    pub fn load(
        toml_text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(toml_text).map_err(|e| ConfigError {
            problems: vec![format!(
                "config file: {}",
                e.to_string().trim().replace('\n', " ")
            )],
        })?;
        let from_env = |name: &str| env(name).or_else(|| env(&name.to_ascii_lowercase()));
        let environment = Environment {
            api_key: env("WORKOS_API_KEY").map(SecretString::from),
            base_url: env("WORKOS_BASE_URL"),
            https_proxy: from_env("HTTPS_PROXY"),
            http_proxy: from_env("HTTP_PROXY"),
            no_proxy: from_env("NO_PROXY"),
        };
        Self::from_raw(raw, environment)
    }

    /// Reads and loads a configuration file. An inline `[policy]` is reloaded from this file.
    pub fn load_file(
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![format!(
                "config file {}: cannot be read: {e}",
                path.display()
            )],
        })?;
        let mut config = Self::load(&text, env)?;
        if config.policy_source.is_none() && text_has_policy(&text) {
            config.policy_source = Some(PolicySource {
                path: path.to_owned(),
                dedicated: false,
                allow_http_loopback: config.portal.allow_http_loopback,
            });
        }
        Ok(config)
    }

    /// The configuration `dev` runs with: the embedded emulator's URL and key, plain-http
    /// loopback return URLs allowed.
    pub fn development(listen: SocketAddr, emulator_url: Url, emulator_key: SecretString) -> Self {
        Self {
            listen,
            workos: workos::Settings::new(emulator_url, emulator_key),
            portal: PortalSettings {
                allow_http_loopback: true,
                ..PortalSettings::default()
            },
            // Nothing balances load in front of `dev`: stop at once on Ctrl-C.
            server: ServerSettings {
                drain_delay: Duration::ZERO,
                ..ServerSettings::default()
            },
            auth: AuthSettings {
                tokens: vec![TokenDigest {
                    identity: DEVELOPMENT_IDENTITY.to_owned(),
                    sha256: sha256(DEVELOPMENT_TOKEN),
                }],
                ..AuthSettings::default()
            },
            policy: Policy {
                rules: vec![Rule {
                    name: "development".to_owned(),
                    identities: [DEVELOPMENT_IDENTITY.to_owned()].into(),
                    rpcs: None,
                    intents: None,
                    organizations: OrganizationScope::All,
                    return_origins: vec![OriginRule::Any],
                    require_acting_user: false,
                    requests_per_minute: None,
                }],
            },
            policy_source: None,
            policy_reload_interval: Duration::from_secs(2),
            audit: AuditTarget::Stdout,
            admin_listen: None,
        }
    }

    fn from_raw(raw: RawConfig, environment: Environment) -> Result<Self, ConfigError> {
        let api_key = environment.api_key.clone();
        let mut problems = Problems::default();
        let listen = problems.check(
            "listen",
            raw.listen
                .as_deref()
                .unwrap_or(DEFAULT_LISTEN)
                .parse::<SocketAddr>()
                .map_err(|_| "must be an address such as 0.0.0.0:50051".into()),
        );
        let api_key = match api_key {
            None => {
                problems
                    .0
                    .push("WORKOS_API_KEY: is not set; export the WorkOS API key (sk_...)".into());
                SecretString::from(String::new())
            }
            Some(key) => {
                let exposed = key.expose_secret();
                if !exposed.starts_with("sk_")
                    || exposed.len() < 8
                    || exposed.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    // Never echo the value: it may be a real key pasted in the wrong place.
                    problems.0.push(
                        "WORKOS_API_KEY: is not shaped like a WorkOS API key (sk_...)".into(),
                    );
                }
                key
            }
        };
        let (base_url_setting, base_url_value) = match (&environment.base_url, &raw.workos.base_url)
        {
            (Some(env), _) => ("WORKOS_BASE_URL", env.as_str()),
            (None, Some(file)) => ("workos.base_url", file.as_str()),
            (None, None) => ("workos.base_url", DEFAULT_WORKOS_BASE_URL),
        };
        let base_url = problems.check(
            base_url_setting,
            Url::parse(base_url_value)
                .map_err(|_| format!("{base_url_value:?} is not an absolute URL"))
                .and_then(|u| match u.scheme() {
                    "https" | "http" if u.host().is_some() => Ok(u),
                    _ => Err("must be an http(s) URL".into()),
                }),
        );
        let proxy = base_url.as_ref().and_then(|url| {
            proxy(
                &mut problems,
                raw.workos.proxy.as_deref(),
                &environment,
                url,
            )
        });
        let request_timeout = problems.duration(
            "workos.request_timeout",
            raw.workos.request_timeout.as_deref(),
            Duration::from_secs(10),
        );
        let defaults = ServerSettings::default();
        let server = ServerSettings {
            request_timeout: problems.duration(
                "server.request_timeout",
                raw.server.request_timeout.as_deref(),
                defaults.request_timeout,
            ),
            shutdown_grace: problems.duration(
                "server.shutdown_grace",
                raw.server.shutdown_grace.as_deref(),
                defaults.shutdown_grace,
            ),
            drain_delay: problems.zero_or_duration(
                "server.drain_delay",
                raw.server.drain_delay.as_deref(),
                defaults.drain_delay,
            ),
            max_in_flight: match raw.server.max_in_flight {
                Some(0) => {
                    problems.push("server.max_in_flight: must be at least 1".into());
                    defaults.max_in_flight
                }
                Some(n) => n,
                None => defaults.max_in_flight,
            },
        };
        let workos_extra = workos_resilience(&mut problems, &raw.workos);
        if request_timeout > server.request_timeout {
            problems.0.push(format!(
                "workos.request_timeout: must not be longer than server.request_timeout ({})",
                humantime::format_duration(server.request_timeout)
            ));
        }
        let loopback = raw.portal.allow_http_loopback;
        let mut portal = PortalSettings {
            allow_http_loopback: loopback,
            defaults: UrlDefaults {
                return_url: problems.url(
                    "portal.return_url",
                    raw.portal.return_url.as_deref(),
                    loopback,
                ),
                success_url: problems.url(
                    "portal.success_url",
                    raw.portal.success_url.as_deref(),
                    loopback,
                ),
            },
            intent_defaults: BTreeMap::new(),
        };
        for (name, urls) in &raw.portal.intents {
            let Some(intent) = Intent::from_workos_name(name) else {
                let known: Vec<&str> = Intent::ALL.iter().map(|i| i.workos_name()).collect();
                problems.0.push(format!(
                    "portal.intents.{name}: unknown intent; use one of {}",
                    known.join(", ")
                ));
                continue;
            };
            let defaults = UrlDefaults {
                return_url: problems.url(
                    &format!("portal.intents.{name}.return_url"),
                    urls.return_url.as_deref(),
                    loopback,
                ),
                success_url: problems.url(
                    &format!("portal.intents.{name}.success_url"),
                    urls.success_url.as_deref(),
                    loopback,
                ),
            };
            portal.intent_defaults.insert(intent, defaults);
        }
        let auth = auth_settings(&mut problems, raw.auth, raw.tls);
        let admin_listen = raw.admin.and_then(|admin| {
            problems.check(
                "admin.listen",
                admin
                    .listen
                    .parse::<SocketAddr>()
                    .map_err(|_| "must be an address such as 0.0.0.0:9090".into()),
            )
        });
        let audit = match raw.audit.file {
            None => AuditTarget::Stdout,
            Some(path) => AuditTarget::File(PathBuf::from(path)),
        };
        let (policy, policy_source, reload) = match (raw.policy_file, raw.policy) {
            (Some(_), Some(_)) => {
                problems.push(
                    "policy_file: set either policy_file or an inline [policy], not both".into(),
                );
                (Policy::default(), None, None)
            }
            (Some(file), None) => {
                let source = PolicySource {
                    path: PathBuf::from(&file),
                    dedicated: true,
                    allow_http_loopback: loopback,
                };
                match read_policy(&source) {
                    Ok((policy, reload)) => (policy, Some(source), reload),
                    Err(error) => {
                        problems.0.extend(error.problems);
                        (Policy::default(), None, None)
                    }
                }
            }
            (None, Some(raw_policy)) => {
                let reload = raw_policy.reload_interval.clone();
                (
                    policy_from_raw(&mut problems, "policy.", raw_policy, loopback),
                    None,
                    reload,
                )
            }
            (None, None) => (Policy::default(), None, None),
        };
        let policy_reload_interval = problems.duration(
            "policy.reload_interval",
            reload.as_deref(),
            Duration::from_secs(2),
        );
        match (listen, base_url) {
            (Some(listen), Some(base_url)) if problems.0.is_empty() => Ok(Self {
                listen,
                workos: workos::Settings {
                    request_timeout,
                    proxy,
                    ..workos_extra.into_settings(base_url, api_key)
                },
                portal,
                server,
                auth,
                policy,
                policy_source,
                policy_reload_interval,
                audit,
                admin_listen,
            }),
            _ => Err(ConfigError {
                problems: problems.0,
            }),
        }
    }
}

/// The identity `dev` gives its development token.
pub const DEVELOPMENT_IDENTITY: &str = "dev";
/// The development bearer token: `authorization: Bearer dev`.
pub const DEVELOPMENT_TOKEN: &str = "dev";

/// SHA-256 of a token, as configured for static tokens.
pub fn sha256(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

fn text_has_policy(text: &str) -> bool {
    toml::from_str::<PolicyOnly>(text).is_ok_and(|p| !p.policy.callers.is_empty())
}

/// Reads the policy from its source. Reloads use this too, so a reload applies exactly the rules
/// a restart would.
pub fn read_policy(source: &PolicySource) -> Result<(Policy, Option<String>), ConfigError> {
    let name = source.path.display().to_string();
    let text = std::fs::read_to_string(&source.path).map_err(|e| ConfigError {
        problems: vec![format!("policy file {name}: cannot be read: {e}")],
    })?;
    let flat = |e: toml::de::Error| e.to_string().trim().replace('\n', " ");
    let (raw, prefix) = if source.dedicated {
        let raw: RawPolicy = toml::from_str(&text).map_err(|e| ConfigError {
            problems: vec![format!("policy file {name}: {}", flat(e))],
        })?;
        (raw, "")
    } else {
        let raw: PolicyOnly = toml::from_str(&text).map_err(|e| ConfigError {
            problems: vec![format!("config file {name}: {}", flat(e))],
        })?;
        (raw.policy, "policy.")
    };
    let reload = raw.reload_interval.clone();
    let mut problems = Problems::default();
    let policy = policy_from_raw(&mut problems, prefix, raw, source.allow_http_loopback);
    if problems.0.is_empty() {
        Ok((policy, reload))
    } else {
        Err(ConfigError {
            problems: problems.0,
        })
    }
}

fn names_to_set<T: Ord + Copy>(
    problems: &mut Problems,
    at: &str,
    names: &[String],
    all: &[T],
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
) -> BTreeSet<T> {
    let mut set = BTreeSet::new();
    for (j, name) in names.iter().enumerate() {
        if name == "*" {
            set.extend(all.iter().copied());
        } else {
            match parse(name) {
                Some(value) => {
                    set.insert(value);
                }
                None => problems.push(format!("{at}[{j}]: unknown {what} {name:?}")),
            }
        }
    }
    set
}

fn policy_from_raw(
    problems: &mut Problems,
    prefix: &str,
    raw: RawPolicy,
    loopback: bool,
) -> Policy {
    let mut rules = Vec::with_capacity(raw.callers.len());
    let mut seen_identities = BTreeSet::new();
    let mut seen_names = BTreeSet::new();
    for (i, caller) in raw.callers.into_iter().enumerate() {
        let at = format!("{prefix}callers[{i}]");
        if caller.name.trim().is_empty() {
            problems.push(format!("{at}.name: must not be empty"));
        } else if !seen_names.insert(caller.name.clone()) {
            problems.push(format!(
                "{at}.name: {:?} is used by another rule",
                caller.name
            ));
        }
        if caller.identities.is_empty() {
            problems.push(format!("{at}.identities: must list at least one identity"));
        }
        for identity in &caller.identities {
            if identity.trim().is_empty() {
                problems.push(format!(
                    "{at}.identities: must not contain an empty identity"
                ));
            } else if !seen_identities.insert(identity.clone()) {
                problems.push(format!(
                    "{at}.identities: {identity:?} already belongs to another rule"
                ));
            }
        }
        let rpcs = caller.rpcs.map(|names| {
            names_to_set(
                problems,
                &format!("{at}.rpcs"),
                &names,
                &Rpc::ALL,
                Rpc::from_name,
                "RPC",
            )
        });
        let intents = caller.intents.map(|names| {
            names_to_set(
                problems,
                &format!("{at}.intents"),
                &names,
                &Intent::ALL,
                Intent::from_workos_name,
                "intent",
            )
        });
        let organizations = match caller.organizations {
            None => {
                problems.push(format!(
                    "{at}.organizations: required; list WorkOS ids, \"external:<pattern>\" entries, or \"*\""
                ));
                OrganizationScope::Listed {
                    ids: BTreeSet::new(),
                    external_ids: Vec::new(),
                }
            }
            Some(entries) if entries.iter().any(|e| e == "*") => OrganizationScope::All,
            Some(entries) => {
                let mut ids = BTreeSet::new();
                let mut external_ids = Vec::new();
                for (j, entry) in entries.iter().enumerate() {
                    if let Some(pattern) = entry.strip_prefix("external:") {
                        if pattern.is_empty() {
                            problems.push(format!(
                                "{at}.organizations[{j}]: empty external-id pattern"
                            ));
                        }
                        external_ids.push(Pattern::new(pattern));
                    } else if OrganizationId::parse(entry).is_ok() {
                        ids.insert(entry.clone());
                    } else {
                        problems.push(format!(
                            "{at}.organizations[{j}]: {entry:?} is neither an organization id nor external:<pattern>"
                        ));
                    }
                }
                OrganizationScope::Listed { ids, external_ids }
            }
        };
        let return_origins = caller
            .return_origins
            .iter()
            .enumerate()
            .filter_map(|(j, origin)| {
                problems.check(
                    &format!("{at}.return_origins[{j}]"),
                    OriginRule::parse(origin, loopback),
                )
            })
            .collect();
        rules.push(Rule {
            name: caller.name,
            identities: caller.identities.into_iter().collect(),
            rpcs,
            intents,
            organizations,
            return_origins,
            require_acting_user: caller.require_acting_user,
            requests_per_minute: caller.requests_per_minute,
        });
        if caller.requests_per_minute == Some(0) {
            problems.push(format!("{at}.requests_per_minute: must be at least 1"));
        }
    }
    Policy { rules }
}

fn jwt_algorithm(name: &str) -> Option<jsonwebtoken::Algorithm> {
    use jsonwebtoken::Algorithm as A;
    Some(match name {
        "RS256" => A::RS256,
        "RS384" => A::RS384,
        "RS512" => A::RS512,
        "PS256" => A::PS256,
        "PS384" => A::PS384,
        "PS512" => A::PS512,
        "ES256" => A::ES256,
        "ES384" => A::ES384,
        "EdDSA" => A::EdDSA,
        _ => return None,
    })
}

fn jwt_settings(problems: &mut Problems, jwt: RawJwt) -> Option<JwtSettings> {
    let jwks = match (jwt.jwks_file, jwt.jwks_url) {
        (Some(file), None) => Some(JwksSource::File(PathBuf::from(file))),
        (None, Some(url)) => problems.check(
            "auth.jwt.jwks_url",
            Url::parse(&url)
                .map_err(|_| format!("{url:?} is not an absolute URL"))
                .and_then(|u| match u.scheme() {
                    "https" | "http" => Ok(JwksSource::Url(u)),
                    _ => Err("must be an http(s) URL".into()),
                }),
        ),
        _ => {
            problems.push("auth.jwt: set exactly one of jwks_file or jwks_url".into());
            None
        }
    };
    if jwt.issuer.is_empty() {
        problems.push("auth.jwt.issuer: must not be empty".into());
    }
    if jwt.audience.is_empty() {
        problems.push("auth.jwt.audience: must not be empty".into());
    }
    let names = if jwt.algorithms.is_empty() {
        vec!["RS256".to_owned()]
    } else {
        jwt.algorithms
    };
    let mut algorithms = Vec::new();
    for (j, name) in names.iter().enumerate() {
        match jwt_algorithm(name) {
            Some(a) => algorithms.push(a),
            None => problems.push(format!(
                "auth.jwt.algorithms[{j}]: {name:?} is not an asymmetric JWS algorithm (RS256, ES256, EdDSA, ...)"
            )),
        }
    }
    let leeway = problems.duration(
        "auth.jwt.leeway",
        jwt.leeway.as_deref(),
        Duration::from_secs(30),
    );
    let refresh_interval = problems.duration(
        "auth.jwt.refresh_interval",
        jwt.refresh_interval.as_deref(),
        Duration::from_secs(60),
    );
    jwks.map(|jwks| JwtSettings {
        jwks,
        issuer: jwt.issuer,
        audience: jwt.audience,
        algorithms,
        leeway,
        refresh_interval,
    })
}

fn auth_settings(problems: &mut Problems, raw: RawAuth, tls: Option<RawTls>) -> AuthSettings {
    let mut tokens = Vec::with_capacity(raw.tokens.len());
    for (i, token) in raw.tokens.iter().enumerate() {
        let at = format!("auth.tokens[{i}]");
        if token.identity.trim().is_empty() {
            problems.push(format!("{at}.identity: must not be empty"));
        }
        match decode_hex32(&token.sha256) {
            Some(sha256) => tokens.push(TokenDigest { identity: token.identity.clone(), sha256 }),
            None => problems.push(format!(
                "{at}.sha256: must be the 64-hex-digit SHA-256 of the token (never the token itself)"
            )),
        }
    }
    let jwt = raw.jwt.and_then(|jwt| jwt_settings(problems, jwt));
    let mesh = raw.mesh.unwrap_or_default();
    let trusted_proxies = mesh
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, cidr)| {
            problems.check(
                &format!("auth.mesh.trusted_proxies[{i}]"),
                cidr.parse::<ipnet::IpNet>()
                    .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("{cidr:?} is not an address or CIDR such as 127.0.0.1/32")
                    }),
            )
        })
        .collect();
    let tls = tls.and_then(|tls| tls_settings(problems, tls));
    AuthSettings {
        tokens,
        jwt,
        mesh: MeshSettings {
            trusted_proxies,
            trust_domain: mesh.trust_domain,
        },
        tls,
    }
}

fn tls_settings(problems: &mut Problems, tls: RawTls) -> Option<TlsSettings> {
    let mut read = |setting: &str, path: &str| {
        problems.check(
            setting,
            std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}")),
        )
    };
    let cert_pem = read("tls.cert_file", &tls.cert_file);
    let key_pem = read("tls.key_file", &tls.key_file);
    let client_ca_pem = tls
        .client_ca_file
        .as_deref()
        .and_then(|path| read("tls.client_ca_file", path));
    if tls.trust_domain.is_some() && tls.client_ca_file.is_none() {
        problems.push("tls.trust_domain: needs tls.client_ca_file (client certificates)".into());
    }
    Some(TlsSettings {
        cert_pem: cert_pem?,
        key_pem: SecretSlice::from(key_pem?),
        client_ca_pem,
        trust_domain: tls.trust_domain,
    })
}

/// What configuration reads from the environment.
struct Environment {
    api_key: Option<SecretString>,
    base_url: Option<String>,
    https_proxy: Option<String>,
    http_proxy: Option<String>,
    no_proxy: Option<String>,
}

/// The proxy to reach WorkOS through: the file's `workos.proxy` (an empty string means none), or
/// else the environment's variable for the base URL's scheme, unless `NO_PROXY` exempts the host
/// or the host is this machine (`localhost`, a loopback address), as Go's HTTP client does: a
/// shell's proxy variables must not send calls to a local emulator away.
fn proxy(
    problems: &mut Problems,
    file: Option<&str>,
    environment: &Environment,
    base_url: &Url,
) -> Option<crate::http::Proxy> {
    if let Some(value) = file {
        if value.trim().is_empty() {
            return None;
        }
        return problems.check("workos.proxy", crate::http::Proxy::parse(value));
    }
    let (name, value) = if base_url.scheme() == "http" {
        ("HTTP_PROXY", environment.http_proxy.as_deref())
    } else {
        ("HTTPS_PROXY", environment.https_proxy.as_deref())
    };
    let value = value.filter(|v| !v.trim().is_empty())?;
    let loopback = match base_url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    let exempt = loopback
        || environment.no_proxy.as_deref().is_some_and(|no_proxy| {
            base_url
                .host_str()
                .is_some_and(|host| crate::http::no_proxy_matches(no_proxy, host))
        });
    if exempt {
        return None;
    }
    problems.check(name, crate::http::Proxy::parse(value))
}

/// Retry, breaker, quota and cache settings, validated.
struct WorkosResilience {
    retry: RetrySettings,
    breaker: BreakerSettings,
    quota: QuotaSettings,
    cache_ttl: Duration,
    cache_max_entries: usize,
}

impl WorkosResilience {
    fn into_settings(self, base_url: Url, api_key: SecretString) -> workos::Settings {
        workos::Settings {
            retry: self.retry,
            breaker: self.breaker,
            quota: self.quota,
            cache_ttl: self.cache_ttl,
            cache_max_entries: self.cache_max_entries,
            ..workos::Settings::new(base_url, api_key)
        }
    }
}

fn workos_resilience(problems: &mut Problems, raw: &RawWorkos) -> WorkosResilience {
    let retry_defaults = RetrySettings::default();
    let mut positive = |setting: &str, value: Option<u32>, default: u32| match value {
        Some(0) => {
            problems.push(format!("{setting}: must be at least 1"));
            default
        }
        Some(n) => n,
        None => default,
    };
    let max_attempts = positive(
        "workos.retry.max_attempts",
        raw.retry.max_attempts,
        retry_defaults.max_attempts,
    );
    let failure_threshold = positive(
        "workos.breaker.failure_threshold",
        raw.breaker.failure_threshold,
        5,
    );
    let quota_defaults = QuotaSettings::default();
    let requests_per_minute = positive(
        "workos.quota.requests_per_minute",
        raw.quota.requests_per_minute,
        quota_defaults.requests_per_minute,
    );
    let burst = positive("workos.quota.burst", raw.quota.burst, quota_defaults.burst);
    let deletes_per_minute = positive(
        "workos.quota.deletes_per_minute",
        raw.quota.deletes_per_minute,
        quota_defaults.deletes_per_minute,
    );
    let budget_ratio = match raw.retry.budget_ratio {
        Some(r) if (0.0..=1.0).contains(&r) => r,
        Some(_) => {
            problems.push("workos.retry.budget_ratio: must be between 0 and 1".into());
            retry_defaults.budget_ratio
        }
        None => retry_defaults.budget_ratio,
    };
    let retry = RetrySettings {
        max_attempts,
        backoff_base: problems.duration(
            "workos.retry.backoff_base",
            raw.retry.backoff_base.as_deref(),
            retry_defaults.backoff_base,
        ),
        backoff_max: problems.duration(
            "workos.retry.backoff_max",
            raw.retry.backoff_max.as_deref(),
            retry_defaults.backoff_max,
        ),
        budget_ratio,
        budget_min_per_second: raw
            .retry
            .budget_min_per_second
            .unwrap_or(retry_defaults.budget_min_per_second),
    };
    let breaker = BreakerSettings {
        failure_threshold,
        open_for: problems.duration(
            "workos.breaker.open_for",
            raw.breaker.open_for.as_deref(),
            Duration::from_secs(5),
        ),
    };
    WorkosResilience {
        retry,
        breaker,
        quota: QuotaSettings {
            requests_per_minute,
            burst,
            deletes_per_minute,
        },
        cache_ttl: problems.zero_or_duration(
            "workos.cache.ttl",
            raw.cache.ttl.as_deref(),
            Duration::from_secs(30),
        ),
        cache_max_entries: raw.cache.max_entries.unwrap_or(10_000).max(1),
    }
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for no_proxy in [
            "api.workos.com",
            ".workos.com",
            "workos.com:443",
            "*",
            "x, workos.com",
        ] {
            assert_eq!(
                proxy_of(
                    "",
                    &[
                        ("HTTPS_PROXY", "http://egress.internal:3128"),
                        ("NO_PROXY", no_proxy)
                    ]
                ),
                None,
                "NO_PROXY={no_proxy}"
            );
        }
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
identities = ["billing"]
rpcs = ["GenerateLink", "MintEverything"]
intents = ["sso", "payroll"]
organizations = ["org_nope", "external:"]
return_origins = ["http://billing.example.com", "https://billing.example.com/?x=1"]
[[policy.callers]]
name = "billing"
identities = ["billing"]
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
            "policy.callers[1].identities:",
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
}
