//! The collector every subsystem reports its configuration problems to.

use std::time::Duration;

/// The longest duration any setting takes: beyond a day, a timeout or a window is a mistake
/// (and far beyond it, arithmetic on instants would overflow).
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Problems found while validating configuration, one line each, naming the setting.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    /// Records a problem, already naming its setting.
    pub fn push(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    /// Keeps a parsed value, or records why `setting` could not be parsed.
    pub fn check<T>(&mut self, setting: &str, parsed: Result<T, String>) -> Option<T> {
        parsed
            .map_err(|problem| self.0.push(format!("{setting}: {problem}")))
            .ok()
    }

    /// A duration such as `10s`; zero and more than a day are refused.
    pub fn duration(&mut self, setting: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(value) = value else { return default };
        self.check(
            setting,
            humantime::parse_duration(value)
                .map_err(|_| format!("{value:?} is not a duration such as \"10s\" or \"500ms\""))
                .and_then(|d| {
                    if d.is_zero() {
                        Err("must be more than zero".into())
                    } else if d > MAX_DURATION {
                        Err("must be at most a day (24h)".into())
                    } else {
                        Ok(d)
                    }
                }),
        )
        .unwrap_or(default)
    }

    /// A duration where zero (`0` or `0s`) is allowed.
    pub fn zero_or_duration(
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

    /// A count of at least one.
    pub fn positive(&mut self, setting: &str, value: Option<u32>, default: u32) -> u32 {
        match value {
            Some(0) => {
                self.push(format!("{setting}: must be at least 1"));
                default
            }
            Some(n) => n,
            None => default,
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems found.
    pub fn into_problems(self) -> Vec<String> {
        self.0
    }
}

/// A TOML error as one line: where it is and what is wrong, without the offending line itself,
/// which may hold a secret (a proxy URL with its password, say).
pub fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().replace('\n', " ");
    match error.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}
