//! The `[setup]` table: how the poller polls and how much the watch holds.

use std::{path::PathBuf, time::Duration};

/// How the setup watch runs.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// The wait between polls while events arrive, and the first wait after an empty page.
    pub poll_interval: Duration,
    /// The longest wait between polls while pages come back empty or WorkOS fails.
    pub poll_max_interval: Duration,
    /// Where the poller keeps its cursor across restarts; none keeps it in memory only.
    pub state_file: Option<PathBuf>,
    /// How many recent events the gateway holds for watchers that resume.
    pub history: usize,
    /// How many events a watcher may fall behind before its stream ends.
    pub buffer: usize,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            poll_max_interval: Duration::from_secs(10),
            state_file: None,
            history: 10_000,
            buffer: 1_024,
        }
    }
}

/// The `[setup]` table.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    poll_interval: Option<String>,
    poll_max_interval: Option<String>,
    state_file: Option<String>,
    history: Option<u32>,
    buffer: Option<u32>,
}

impl RawWatch {
    /// Validates the table; every problem goes to `problems`.
    pub fn validate(self, problems: &mut crate::config::Problems) -> WatchSettings {
        let defaults = WatchSettings::default();
        let poll_interval = problems.duration(
            "setup.poll_interval",
            self.poll_interval.as_deref(),
            defaults.poll_interval,
        );
        let poll_max_interval = problems.duration(
            "setup.poll_max_interval",
            self.poll_max_interval.as_deref(),
            defaults.poll_max_interval.max(poll_interval),
        );
        if poll_max_interval < poll_interval {
            problems.push("setup.poll_max_interval: must not be shorter than setup.poll_interval");
        }
        let history = problems.positive("setup.history", self.history, 10_000);
        let buffer = problems.positive("setup.buffer", self.buffer, 1_024);
        if history > 1_000_000 {
            problems.push("setup.history: at most 1000000 events");
        }
        if buffer < 100 {
            problems.push(
                "setup.buffer: at least 100 (a page of events is 100, and a watcher must hold one)",
            );
        }
        if buffer > 1_000_000 {
            problems.push("setup.buffer: at most 1000000 events");
        }
        let state_file = match self.state_file {
            Some(path) if path.trim().is_empty() => {
                problems.push("setup.state_file: must not be empty");
                None
            }
            other => other.map(PathBuf::from),
        };
        WatchSettings {
            poll_interval,
            poll_max_interval,
            state_file,
            history: history as usize,
            buffer: buffer as usize,
        }
    }
}
