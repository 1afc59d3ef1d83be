//! Configuration: defaults, then a TOML file, then the environment, validated once into typed
//! values. Every problem is reported (one line each), not only the first.
//!
//! **Invariant:** nothing outside this module and `main.rs` reads the process environment.
//! [`Config::load`] takes the environment as a lookup function, so tests pass a map.

use std::{collections::BTreeMap, fmt, net::SocketAddr, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::{
    domain::{Intent, RedirectUrl},
    gateway::{PortalSettings, UrlDefaults},
    workos,
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
}

/// Server behaviour.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The longest an RPC may run when the caller sets no deadline.
    pub request_timeout: Duration,
    /// How long in-flight RPCs may run after a shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(30),
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkos {
    base_url: Option<String>,
    request_timeout: Option<String>,
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
}

/// Collects problems while converting raw settings.
#[derive(Debug, Default)]
struct Problems(Vec<String>);

impl Problems {
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
    /// Environment: `WORKOS_API_KEY` (required, `sk_...`) and `WORKOS_BASE_URL` (overrides the
    /// file's `workos.base_url`).
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
        let api_key = env("WORKOS_API_KEY").map(SecretString::from);
        Self::from_raw(raw, api_key, env("WORKOS_BASE_URL"))
    }

    /// The configuration `dev` runs with: the embedded emulator's URL and key, plain-http
    /// loopback return URLs allowed.
    pub fn development(listen: SocketAddr, emulator_url: Url, emulator_key: SecretString) -> Self {
        Self {
            listen,
            workos: workos::Settings {
                base_url: emulator_url,
                api_key: emulator_key,
                request_timeout: Duration::from_secs(10),
            },
            portal: PortalSettings {
                allow_http_loopback: true,
                ..PortalSettings::default()
            },
            server: ServerSettings::default(),
        }
    }

    fn from_raw(
        raw: RawConfig,
        api_key: Option<SecretString>,
        base_url_env: Option<String>,
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
        let (base_url_setting, base_url_value) = match (&base_url_env, &raw.workos.base_url) {
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
        };
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
        match (listen, base_url) {
            (Some(listen), Some(base_url)) if problems.0.is_empty() => Ok(Self {
                listen,
                workos: workos::Settings {
                    base_url,
                    api_key,
                    request_timeout,
                },
                portal,
                server,
            }),
            _ => Err(ConfigError {
                problems: problems.0,
            }),
        }
    }
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
    fn debug_output_hides_the_key() {
        let config =
            Config::load("", env(&[("WORKOS_API_KEY", "sk_test_canary_debug")])).expect("valid");
        assert!(!format!("{config:?}").contains("canary"));
    }
}
