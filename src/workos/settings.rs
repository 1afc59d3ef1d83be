//! The WorkOS client's settings: the raw `[workos]` table as written in the configuration file,
//! its validation (problems go to the shared collector), and the typed values the client runs on.

use std::{fmt, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::config::Problems;

/// The WorkOS production API.
pub const DEFAULT_BASE_URL: &str = "https://api.workos.com";

/// What the client needs to talk to WorkOS.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `https://api.workos.com`, or an emulator.
    pub base_url: Url,
    /// The WorkOS API key.
    pub api_key: SecretString,
    /// The longest one HTTP attempt may take.
    pub request_timeout: Duration,
    /// Retries and their budget.
    pub retry: RetrySettings,
    /// The circuit breaker.
    pub breaker: BreakerSettings,
    /// The gateway's share of WorkOS's rate limits.
    pub quota: QuotaSettings,
    /// How long organizations stay cached; zero disables the cache.
    pub cache_ttl: Duration,
    /// The most organizations cached.
    pub cache_max_entries: u64,
    /// A forward proxy to reach WorkOS through, if any.
    pub proxy: Option<ProxySettings>,
}

impl Settings {
    /// Settings with defaults for everything but the address and the key.
    pub fn new(base_url: Url, api_key: SecretString) -> Self {
        Self {
            base_url,
            api_key,
            request_timeout: Duration::from_secs(10),
            retry: RetrySettings::default(),
            breaker: BreakerSettings::default(),
            quota: QuotaSettings::default(),
            cache_ttl: Duration::from_secs(30),
            cache_max_entries: 10_000,
            proxy: None,
        }
    }
}

/// Retry settings.
#[derive(Debug, Clone)]
pub struct RetrySettings {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles each time, plus up to as much again in jitter.
    pub backoff_base: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
    /// Retries allowed as a fraction of calls (0.2: at most 20% extra load).
    pub budget_ratio: f64,
    /// Retries always allowed per second, so a quiet gateway can still retry.
    pub budget_min_per_second: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            budget_ratio: 0.2,
            budget_min_per_second: 10,
        }
    }
}

/// Circuit breaker settings. The breaker judges calls (all of a call's attempts together): by
/// their failure rate over a sliding window, and by a run of failed calls.
#[derive(Debug, Clone)]
pub struct BreakerSettings {
    /// Failed calls in a row that open the circuit at once (a full outage).
    pub failure_threshold: u32,
    /// The share of the window's calls that, failed, open it (0.5: half) ...
    pub failure_rate: f64,
    /// ... once the window holds at least this many calls (the minimum volume).
    pub minimum_calls: u32,
    /// How far back calls count.
    pub window: Duration,
    /// How long it stays open before one probe is let through.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            failure_rate: 0.5,
            minimum_calls: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
        }
    }
}

/// Quota settings.
#[derive(Debug, Clone)]
pub struct QuotaSettings {
    /// WorkOS requests per minute for the whole gateway (WorkOS allows 6,000 per key).
    pub requests_per_minute: u32,
    /// How many requests may go at once after a quiet period.
    pub burst: u32,
    /// Organization deletes per minute (WorkOS allows 50 per key).
    pub deletes_per_minute: u32,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            // The most any 60 s can see is the rate plus the burst: these keep that at
            // WorkOS's 6,000 requests and 50 deletes (the delete burst is a tenth of the rate).
            requests_per_minute: 5900,
            burst: 100,
            deletes_per_minute: 45,
        }
    }
}

/// A forward proxy, as reqwest takes it: its URL (credentials included, so it stays wrapped) and
/// the hosts it must not be used for.
#[derive(Clone)]
pub struct ProxySettings {
    /// `http://[user:password@]host:port`.
    pub url: SecretString,
    /// A `NO_PROXY` list, when the proxy came from the environment.
    pub no_proxy: Option<String>,
}

impl fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = Url::parse(self.url.expose_secret()).ok();
        let address = url
            .as_ref()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)));
        let credentials = url
            .as_ref()
            .is_some_and(|u| !u.username().is_empty() || u.password().is_some());
        f.debug_struct("ProxySettings")
            .field("address", &address)
            .field("credentials", &credentials.then_some("redacted"))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// What the WorkOS settings read from the environment (only configuration reads it).
#[derive(Debug, Default)]
pub struct Environment {
    /// `WORKOS_API_KEY`.
    pub api_key: Option<SecretString>,
    /// `WORKOS_BASE_URL`.
    pub base_url: Option<String>,
    /// `HTTPS_PROXY` (either case).
    pub https_proxy: Option<String>,
    /// `HTTP_PROXY` (either case).
    pub http_proxy: Option<String>,
    /// `NO_PROXY` (either case).
    pub no_proxy: Option<String>,
}

impl Environment {
    /// Reads the variables through `env`, a lookup function.
    pub fn read(env: impl Fn(&str) -> Option<String>) -> Self {
        let either_case = |name: &str| env(name).or_else(|| env(&name.to_ascii_lowercase()));
        Self {
            api_key: env("WORKOS_API_KEY").map(SecretString::from),
            base_url: env("WORKOS_BASE_URL"),
            https_proxy: either_case("HTTPS_PROXY"),
            http_proxy: either_case("HTTP_PROXY"),
            no_proxy: either_case("NO_PROXY"),
        }
    }
}

/// The `[workos]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
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
    failure_rate: Option<f64>,
    minimum_calls: Option<u32>,
    window: Option<String>,
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
    max_entries: Option<u64>,
}

impl Raw {
    /// Validates the table against the environment. Every problem goes to `problems`; `None`
    /// when the settings cannot be built at all.
    pub fn validate(
        self,
        mut environment: Environment,
        problems: &mut Problems,
    ) -> Option<Settings> {
        let api_key = api_key(environment.api_key.take(), problems);
        let (setting, value) = match (&environment.base_url, &self.base_url) {
            (Some(env), _) => ("WORKOS_BASE_URL", env.as_str()),
            (None, Some(file)) => ("workos.base_url", file.as_str()),
            (None, None) => ("workos.base_url", DEFAULT_BASE_URL),
        };
        let base_url = problems.check(
            setting,
            Url::parse(value)
                .map_err(|_| format!("{value:?} is not an absolute URL"))
                .and_then(|u| match u.scheme() {
                    "https" | "http" if u.host().is_some() => Ok(u),
                    _ => Err("must be an http(s) URL".into()),
                }),
        );
        let proxy = base_url
            .as_ref()
            .and_then(|url| proxy(problems, self.proxy.as_deref(), &environment, url));
        let defaults = Settings::new(Url::parse(DEFAULT_BASE_URL).ok()?, SecretString::default());
        let request_timeout = problems.duration(
            "workos.request_timeout",
            self.request_timeout.as_deref(),
            defaults.request_timeout,
        );
        let retry = self.retry.validate(problems);
        let breaker = self.breaker.validate(problems);
        let quota = QuotaSettings {
            requests_per_minute: problems.positive(
                "workos.quota.requests_per_minute",
                self.quota.requests_per_minute,
                defaults.quota.requests_per_minute,
            ),
            burst: problems.positive("workos.quota.burst", self.quota.burst, defaults.quota.burst),
            deletes_per_minute: problems.positive(
                "workos.quota.deletes_per_minute",
                self.quota.deletes_per_minute,
                defaults.quota.deletes_per_minute,
            ),
        };
        if quota.burst > quota.requests_per_minute {
            problems.push(format!(
                "workos.quota.burst: must not be more than workos.quota.requests_per_minute ({})",
                quota.requests_per_minute
            ));
        }
        let cache_ttl = problems.zero_or_duration(
            "workos.cache.ttl",
            self.cache.ttl.as_deref(),
            defaults.cache_ttl,
        );
        Some(Settings {
            base_url: base_url?,
            api_key,
            request_timeout,
            retry,
            breaker,
            quota,
            cache_ttl,
            cache_max_entries: self
                .cache
                .max_entries
                .unwrap_or(defaults.cache_max_entries)
                .max(1),
            proxy,
        })
    }
}

impl RawRetry {
    fn validate(self, problems: &mut Problems) -> RetrySettings {
        let defaults = RetrySettings::default();
        let budget_ratio = match self.budget_ratio {
            Some(r) if (0.0..=1.0).contains(&r) => r,
            Some(_) => {
                problems.push("workos.retry.budget_ratio: must be between 0 and 1");
                defaults.budget_ratio
            }
            None => defaults.budget_ratio,
        };
        let backoff_base = problems.duration(
            "workos.retry.backoff_base",
            self.backoff_base.as_deref(),
            defaults.backoff_base,
        );
        let backoff_max = problems.duration(
            "workos.retry.backoff_max",
            self.backoff_max.as_deref(),
            defaults.backoff_max,
        );
        if backoff_base > backoff_max {
            problems.push(
                "workos.retry.backoff_base: must not be longer than workos.retry.backoff_max",
            );
        }
        let budget_min_per_second = self
            .budget_min_per_second
            .unwrap_or(defaults.budget_min_per_second);
        if budget_min_per_second > 1_000_000 {
            problems.push("workos.retry.budget_min_per_second: must be at most 1000000");
        }
        RetrySettings {
            max_attempts: problems.positive(
                "workos.retry.max_attempts",
                self.max_attempts,
                defaults.max_attempts,
            ),
            backoff_base,
            backoff_max,
            budget_ratio,
            budget_min_per_second,
        }
    }
}

impl RawBreaker {
    fn validate(self, problems: &mut Problems) -> BreakerSettings {
        let defaults = BreakerSettings::default();
        let failure_rate = match self.failure_rate {
            Some(r) if r > 0.0 && r <= 1.0 => r,
            Some(_) => {
                problems.push("workos.breaker.failure_rate: must be more than 0 and at most 1");
                defaults.failure_rate
            }
            None => defaults.failure_rate,
        };
        BreakerSettings {
            failure_threshold: problems.positive(
                "workos.breaker.failure_threshold",
                self.failure_threshold,
                defaults.failure_threshold,
            ),
            failure_rate,
            minimum_calls: problems.positive(
                "workos.breaker.minimum_calls",
                self.minimum_calls,
                defaults.minimum_calls,
            ),
            window: problems.duration(
                "workos.breaker.window",
                self.window.as_deref(),
                defaults.window,
            ),
            open_for: problems.duration(
                "workos.breaker.open_for",
                self.open_for.as_deref(),
                defaults.open_for,
            ),
        }
    }
}

fn api_key(key: Option<SecretString>, problems: &mut Problems) -> SecretString {
    let Some(key) = key else {
        problems.push("WORKOS_API_KEY: is not set; export the WorkOS API key (sk_...)");
        return SecretString::default();
    };
    let exposed = key.expose_secret();
    if !exposed.starts_with("sk_")
        || exposed.len() < 8
        || exposed.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        // Never echo the value: it may be a real key pasted in the wrong place.
        problems.push("WORKOS_API_KEY: is not shaped like a WorkOS API key (sk_...)");
    }
    key
}

/// The proxy to reach WorkOS through: the file's `workos.proxy` (an empty string means none), or
/// else the environment's variable for the base URL's scheme with `NO_PROXY`. As in Go's HTTP
/// client, the environment's proxy never applies to this machine (`localhost`, a loopback
/// address): a shell's proxy variables must not send calls to a local emulator away.
fn proxy(
    problems: &mut Problems,
    file: Option<&str>,
    environment: &Environment,
    base_url: &Url,
) -> Option<ProxySettings> {
    if let Some(value) = file {
        if value.trim().is_empty() {
            return None;
        }
        return problems
            .check("workos.proxy", check_proxy_url(value))
            .map(|url| ProxySettings {
                url,
                no_proxy: None,
            });
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
    // `*` exempts every host; reqwest's matcher would apply it to names only, not addresses.
    let everything = environment
        .no_proxy
        .as_deref()
        .is_some_and(|list| list.split(',').any(|entry| entry.trim() == "*"));
    if loopback || everything {
        return None;
    }
    problems
        .check(name, check_proxy_url(value))
        .map(|url| ProxySettings {
            url,
            no_proxy: environment.no_proxy.clone(),
        })
}

/// Checks a proxy URL's shape; reqwest parses it again when the client is built. A refusal
/// never repeats the value, which may hold a password.
fn check_proxy_url(value: &str) -> Result<SecretString, String> {
    let url = Url::parse(value.trim())
        .map_err(|_| "is not a URL such as http://proxy.internal:3128".to_owned())?;
    if url.scheme() != "http" {
        return Err(format!(
            "must be an http:// proxy URL (the tunnel to WorkOS is TLS end to end), not {}://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("names no host".into());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("must be only scheme, credentials, host and port".into());
    }
    let decodes = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .is_ok()
    };
    if !decodes(url.username()) || !decodes(url.password().unwrap_or_default()) {
        return Err("has credentials that are not UTF-8".into());
    }
    Ok(SecretString::from(url.as_str().to_owned()))
}
