//! A quota shared by several replicas (the cluster's, over Redis), and the local share each
//! replica falls back to while the shared store cannot be reached: the limits divided by the
//! last known number of live replicas, so together they still stay under WorkOS's limits.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
};

use super::{Quota, QuotaExceeded, QuotaSettings};

/// The answer of a shared quota: granted, refused, or `None` when the shared store did not
/// answer in time (the caller then uses its local share).
pub type SharedVerdict = Option<Result<(), QuotaExceeded>>;

/// A quota held with other replicas.
pub trait SharedQuota: Send + Sync + fmt::Debug {
    /// Takes one request's worth for `caller` across every replica, or refuses. Never waits
    /// longer than the store's short timeout.
    fn acquire(
        &self,
        caller: Arc<str>,
        caller_per_minute: Option<u32>,
        delete: bool,
    ) -> Pin<Box<dyn Future<Output = SharedVerdict> + Send>>;

    /// How many replicas were live when last heard (at least 1).
    fn replicas(&self) -> u32;
}

/// The local share: a [`Quota`] with the limits divided by the live replica count, rebuilt when
/// that count changes.
#[derive(Debug)]
pub(super) struct LocalShare {
    settings: QuotaSettings,
    current: Mutex<Option<(u32, Arc<Quota>)>>,
}

impl LocalShare {
    pub(super) fn new(settings: QuotaSettings) -> Self {
        Self {
            settings,
            current: Mutex::new(None),
        }
    }

    /// The quota for `replicas` live replicas.
    pub(super) fn for_replicas(&self, replicas: u32) -> Arc<Quota> {
        let replicas = replicas.max(1);
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((count, quota)) = current.as_ref()
            && *count == replicas
        {
            return quota.clone();
        }
        let share = |n: u32| (n / replicas).max(1);
        let quota = Arc::new(Quota::new(QuotaSettings {
            requests_per_minute: share(self.settings.requests_per_minute),
            burst: share(self.settings.burst),
            deletes_per_minute: share(self.settings.deletes_per_minute),
        }));
        *current = Some((replicas, quota.clone()));
        quota
    }
}
