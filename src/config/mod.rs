//! Configuration: defaults, then a TOML file, then the environment, validated once into typed
//! values. Each subsystem owns its raw table and its validation (`workos::settings`,
//! `auth::settings`, `auth::policy_file`, `gateway::RawPortal`, `server::RawServer`); they all
//! report to one [`Problems`] collector, so every problem is reported (one line each), not
//! only the first.
//!
//! **Invariant:** nothing outside this module, the subsystems' settings it calls, and `main.rs`
//! reads the process environment. [`Config::load`] takes the environment as a lookup function,
//! so tests pass a map.

mod problems;
#[cfg(test)]
mod tests;

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

pub use problems::{Problems, describe_toml_error};

use crate::{
    auth::{
        audit::AuditTarget,
        identity::TokenDigest,
        policy::{OrganizationScope, OriginRule, Policy, Rule},
        policy_file::{self, PolicySource, RawPolicy},
        settings::{AuthSettings, RawAudit, RawAuth, RawTls},
    },
    gateway::{PortalSettings, RawPortal, RawWatch, WatchSettings},
    server::{RawServer, ServerSettings},
    workos,
};

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
    /// The setup events poller and its watchers.
    pub setup: WatchSettings,
    /// Shared state with other replicas, when configured.
    pub cluster: Option<crate::cluster::ClusterSettings>,
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
    /// How often unauthenticated calls are summed up into audit records.
    pub audit_summary_every: Duration,
    /// Where `/metrics` and `/healthz` are served, if anywhere.
    pub admin_listen: Option<SocketAddr>,
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

/// The whole file; each table belongs to its subsystem.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    #[serde(default)]
    workos: workos::settings::Raw,
    #[serde(default)]
    portal: RawPortal,
    #[serde(default)]
    setup: RawWatch,
    #[serde(default)]
    cluster: crate::cluster::RawCluster,
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
                problems::describe_toml_error(toml_text, &e)
            )],
        })?;
        Self::from_raw(raw, workos::settings::Environment::read(env))
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
        policy_file::check_whole("config file", &path.display().to_string(), &text)?;
        let mut config = Self::load(&text, env)?;
        if config.policy_source.is_none() && policy_file::text_has_policy(&text) {
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
            // Quick to notice what a developer just clicked in the portal.
            setup: WatchSettings {
                poll_interval: Duration::from_millis(200),
                poll_max_interval: Duration::from_secs(2),
                ..WatchSettings::default()
            },
            cluster: None,
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
                    // Enough for a fan-out benchmark against `dev`.
                    max_watchers: 10_000,
                    // Even in development, invitations go only to the organization's own
                    // verified domains, so the rule that protects customers is the one seen.
                    invite_email_domains: crate::auth::policy::InviteDomains {
                        organization: true,
                        ..Default::default()
                    },
                }],
            },
            policy_source: None,
            policy_reload_interval: Duration::from_secs(2),
            audit: AuditTarget::Stdout,
            audit_summary_every: Duration::from_secs(10),
            admin_listen: None,
        }
    }

    fn from_raw(
        raw: RawConfig,
        environment: workos::settings::Environment,
    ) -> Result<Self, ConfigError> {
        let mut problems = Problems::default();
        let listen = problems.check(
            "listen",
            raw.listen
                .as_deref()
                .unwrap_or(DEFAULT_LISTEN)
                .parse::<SocketAddr>()
                .map_err(|_| "must be an address such as 0.0.0.0:50051".into()),
        );
        let workos = raw.workos.validate(environment, &mut problems);
        let server = raw.server.validate(&mut problems);
        if let Some(workos) = &workos
            && workos.request_timeout > server.request_timeout
        {
            problems.push(format!(
                "workos.request_timeout: must not be longer than server.request_timeout ({})",
                humantime::format_duration(server.request_timeout)
            ));
        }
        let loopback = raw.portal.allow_http_loopback();
        let portal = raw.portal.validate(&mut problems);
        let setup = raw.setup.validate(&mut problems);
        let cluster = raw.cluster.validate(&mut problems);
        let auth = raw.auth.validate(raw.tls, &mut problems);
        let admin_listen = raw.admin.and_then(|admin| {
            problems.check(
                "admin.listen",
                admin
                    .listen
                    .parse::<SocketAddr>()
                    .map_err(|_| "must be an address such as 0.0.0.0:9090".into()),
            )
        });
        let audit_summary_every = raw.audit.summary_every(&mut problems);
        let audit = raw.audit.target();
        let (policy, policy_source, reload) = match (raw.policy_file, raw.policy) {
            (Some(_), Some(_)) => {
                problems
                    .push("policy_file: set either policy_file or an inline [policy], not both");
                (Policy::default(), None, None)
            }
            (Some(file), None) => {
                let source = PolicySource {
                    path: PathBuf::from(&file),
                    dedicated: true,
                    allow_http_loopback: loopback,
                };
                match policy_file::read_policy(&source) {
                    Ok((policy, reload)) => (policy, Some(source), reload),
                    Err(error) => {
                        for problem in error.problems {
                            problems.push(problem);
                        }
                        (Policy::default(), None, None)
                    }
                }
            }
            (None, Some(raw_policy)) => {
                let reload = raw_policy.reload_interval().map(str::to_owned);
                let policy =
                    policy_file::policy_from_raw(&mut problems, "policy.", raw_policy, loopback);
                (policy, None, reload)
            }
            (None, None) => (Policy::default(), None, None),
        };
        let policy_reload_interval = problems.duration(
            "policy.reload_interval",
            reload.as_deref(),
            Duration::from_secs(2),
        );
        let problems = problems.into_problems();
        match (listen, workos) {
            (Some(listen), Some(workos)) if problems.is_empty() => Ok(Self {
                listen,
                workos,
                portal,
                setup,
                cluster,
                server,
                auth,
                policy,
                policy_source,
                policy_reload_interval,
                audit,
                audit_summary_every,
                admin_listen,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

/// The identity `dev` gives its development token.
pub const DEVELOPMENT_IDENTITY: &str = "token:dev";
/// The development bearer token: `authorization: Bearer dev`.
pub const DEVELOPMENT_TOKEN: &str = "dev";

/// SHA-256 of a token, as configured for static tokens.
pub fn sha256(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}
