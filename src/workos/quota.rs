//! The upstream quota: the gateway never sends WorkOS more than its configured rate, so callers
//! get a precise RESOURCE_EXHAUSTED from the gateway instead of WorkOS 429s that hit everyone
//! sharing the key.
//!
//! Token buckets for WorkOS's general limit and its separate delete limit; an optional fixed
//! quota per caller (from the policy); and a fair share: while several callers are active and the
//! shared bucket is being drawn down, each may use only its share of the rate, so one noisy
//! caller cannot starve the others. A full bucket (idle capacity) is free for anyone.
//! Limits are per replica (see the README for running several).

use std::{collections::HashMap, fmt, sync::Mutex, time::Duration};

use tokio::time::Instant;

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
            requests_per_minute: 6000,
            burst: 100,
            deletes_per_minute: 50,
        }
    }
}

/// Which limit was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaScope {
    /// The gateway's share of the WorkOS key.
    Workos,
    /// WorkOS's organization delete limit.
    WorkosDeletes,
    /// The caller's own quota from the policy.
    Caller(String),
    /// The caller's fair share while others are waiting too.
    FairShare(String),
}

impl QuotaScope {
    /// The `QuotaFailure` subject.
    pub fn subject(&self) -> String {
        match self {
            Self::Workos => "workos:requests".to_owned(),
            Self::WorkosDeletes => "workos:organization-deletes".to_owned(),
            Self::Caller(identity) => format!("caller:{identity}"),
            Self::FairShare(identity) => format!("caller:{identity}:fair-share"),
        }
    }
}

impl fmt::Display for QuotaScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.subject())
    }
}

/// A refused request: which limit, and when a token will be free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// The limit.
    pub scope: QuotaScope,
    /// When to try again.
    pub retry_after: Duration,
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    updated: Instant,
}

impl Bucket {
    fn new(per_minute: f64, capacity: f64, now: Instant) -> Self {
        let capacity = capacity.max(1.0);
        Self {
            tokens: capacity,
            capacity,
            per_second: per_minute / 60.0,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
    }

    fn wait(&self) -> Option<Duration> {
        if self.tokens >= 1.0 {
            None
        } else if self.per_second <= 0.0 {
            Some(Duration::from_secs(60))
        } else {
            Some(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }
}

/// How long a caller counts as active for fair sharing.
const ACTIVE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct CallerState {
    share: Bucket,
    fixed: Option<(u32, Bucket)>,
    last_seen: Instant,
}

#[derive(Debug)]
struct State {
    global: Bucket,
    deletes: Bucket,
    callers: HashMap<String, CallerState>,
}

/// The quota. One per gateway.
#[derive(Debug)]
pub struct Quota {
    settings: QuotaSettings,
    state: Mutex<State>,
}

impl Quota {
    /// A full quota.
    pub fn new(settings: QuotaSettings) -> Self {
        let now = Instant::now();
        let global = Bucket::new(
            f64::from(settings.requests_per_minute),
            f64::from(settings.burst),
            now,
        );
        let deletes = Bucket::new(
            f64::from(settings.deletes_per_minute),
            (f64::from(settings.deletes_per_minute) / 10.0).ceil(),
            now,
        );
        Self {
            settings,
            state: Mutex::new(State {
                global,
                deletes,
                callers: HashMap::new(),
            }),
        }
    }

    /// Takes one request's worth for `caller`, or refuses at once (never waits: a refusal says
    /// when to retry, and the caller decides whether that fits its deadline).
    pub fn acquire(
        &self,
        caller: &str,
        caller_per_minute: Option<u32>,
        delete: bool,
    ) -> Result<(), QuotaExceeded> {
        let now = Instant::now();
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let State {
            global,
            deletes,
            callers,
        } = &mut *state;
        global.refill(now);
        deletes.refill(now);
        callers.retain(|_, c| now.duration_since(c.last_seen) <= ACTIVE_WINDOW * 6);
        let active = 1 + callers
            .iter()
            .filter(|(name, c)| {
                name.as_str() != caller && now.duration_since(c.last_seen) <= ACTIVE_WINDOW
            })
            .count();
        let share_per_minute = f64::from(self.settings.requests_per_minute) / active as f64;
        let share_capacity = (f64::from(self.settings.burst) / active as f64).max(1.0);
        let entry = callers
            .entry(caller.to_owned())
            .or_insert_with(|| CallerState {
                share: Bucket::new(share_per_minute, share_capacity, now),
                fixed: None,
                last_seen: now,
            });
        entry.last_seen = now;
        entry.share.refill(now);
        entry.share.per_second = share_per_minute / 60.0;
        entry.share.capacity = share_capacity;
        entry.share.tokens = entry.share.tokens.min(share_capacity);
        match (caller_per_minute, &mut entry.fixed) {
            (None, fixed) => *fixed = None,
            (Some(limit), Some((current, _))) if *current == limit => {}
            (Some(limit), fixed) => {
                *fixed = Some((
                    limit,
                    Bucket::new(f64::from(limit), (f64::from(limit) / 10.0).ceil(), now),
                ))
            }
        }
        if let Some((_, fixed)) = &mut entry.fixed {
            fixed.refill(now);
            if let Some(wait) = fixed.wait() {
                return Err(QuotaExceeded {
                    scope: QuotaScope::Caller(caller.to_owned()),
                    retry_after: wait,
                });
            }
        }
        // A fair share only means something when someone else wants the rate too, and only
        // once the shared bucket is being drawn down; a full bucket is free for anyone.
        let contended = active > 1 && global.tokens < global.capacity - 1.0;
        if contended && let Some(wait) = entry.share.wait() {
            return Err(QuotaExceeded {
                scope: QuotaScope::FairShare(caller.to_owned()),
                retry_after: wait,
            });
        }
        if let Some(wait) = global.wait() {
            return Err(QuotaExceeded {
                scope: QuotaScope::Workos,
                retry_after: wait,
            });
        }
        if delete && let Some(wait) = deletes.wait() {
            return Err(QuotaExceeded {
                scope: QuotaScope::WorkosDeletes,
                retry_after: wait,
            });
        }
        global.tokens -= 1.0;
        if delete {
            deletes.tokens -= 1.0;
        }
        entry.share.tokens = (entry.share.tokens - 1.0).max(-1.0);
        if let Some((_, fixed)) = &mut entry.fixed {
            fixed.tokens -= 1.0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_is_never_exceeded() {
        let quota = Quota::new(QuotaSettings {
            requests_per_minute: 600,
            burst: 10,
            deletes_per_minute: 50,
        });
        let mut granted = 0;
        for _ in 0..200 {
            for _ in 0..50 {
                if quota.acquire("a", None, false).is_ok() {
                    granted += 1;
                }
            }
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // 20 s at 10/s plus the burst.
        assert!(granted <= 200 + 10, "{granted}");
        assert!(granted >= 195, "{granted}");
    }

    #[tokio::test(start_paused = true)]
    async fn callers_share_fairly_under_contention() {
        let quota = Quota::new(QuotaSettings {
            requests_per_minute: 600,
            burst: 10,
            deletes_per_minute: 50,
        });
        let (mut noisy, mut quiet) = (0, 0);
        for _ in 0..300 {
            for _ in 0..20 {
                if quota.acquire("noisy", None, false).is_ok() {
                    noisy += 1;
                }
            }
            for _ in 0..2 {
                if quota.acquire("quiet", None, false).is_ok() {
                    quiet += 1;
                }
            }
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // 30 s at 10/s: the quiet caller asks for 20/s-worth less than its half and gets most of it.
        assert!(
            quiet >= 120,
            "quiet caller starved: {quiet} (noisy {noisy})"
        );
        assert!(noisy + quiet <= 300 + 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_caller_is_told_about_the_gateway_quota_not_a_fair_share() {
        let quota = Quota::new(QuotaSettings {
            requests_per_minute: 600,
            burst: 10,
            deletes_per_minute: 50,
        });
        let refused = (0..20)
            .find_map(|_| quota.acquire("alone", None, false).err())
            .expect("refused");
        assert_eq!(refused.scope, QuotaScope::Workos);
    }

    #[tokio::test(start_paused = true)]
    async fn deletes_and_caller_quotas_have_their_own_limits() {
        let quota = Quota::new(QuotaSettings::default());
        let deletes = (0..20)
            .filter(|_| quota.acquire("a", None, true).is_ok())
            .count();
        assert_eq!(deletes, 5, "50 a minute, a burst of 5");
        let refused = quota.acquire("a", None, true).expect_err("delete limit");
        assert_eq!(refused.scope, QuotaScope::WorkosDeletes);
        let mine = (0..20)
            .filter(|_| quota.acquire("b", Some(60), false).is_ok())
            .count();
        assert_eq!(mine, 6);
        assert_eq!(
            quota
                .acquire("b", Some(60), false)
                .expect_err("caller")
                .scope,
            QuotaScope::Caller("b".into())
        );
    }
}
