//! A short-lived cache of organizations by WorkOS id and by external id (`moka`), with moka's
//! single flight: concurrent identical lookups share one upstream call. The gateway's own
//! creates, updates and deletes refresh or drop the entries they touch. Portal links are never
//! cached.
//!
//! A lookup that fails for a reason of its own caller (that caller's quota or deadline) must not
//! fail the other callers who were waiting on it: each of them then looks up for itself.
//!
//! A "not found" is remembered like an organization is, for the same time: otherwise asking for
//! an organization outside one's scope would be fast when it exists (cached) and slow when it
//! does not, telling a denied caller which ids exist. The gateway's own creates and updates drop
//! the remembered absence of what they make.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use moka::future::Cache;

use super::Error;
use crate::domain::Organization;

/// How an organization was looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Key {
    /// By WorkOS id.
    Id(String),
    /// By external id.
    External(String),
}

/// Where a looked-up organization came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The cache.
    Cache,
    /// An upstream call, this caller's or one it shared.
    Upstream,
}

/// The cache. A zero time-to-live caches nothing but still shares concurrent lookups.
#[derive(Debug, Clone)]
pub(super) struct OrganizationCache {
    entries: Cache<Key, Organization>,
    /// Keys WorkOS answered 404 for.
    missing: Cache<Key, ()>,
    /// Counts invalidations, so a lookup that was in flight across one does not keep what it
    /// read before the change.
    generation: Arc<AtomicU64>,
}

impl OrganizationCache {
    pub(super) fn new(ttl: Duration, max_entries: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
            missing: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The organization for `key`: from the cache, from a lookup already in flight, or from a
    /// new lookup made by `fetch`.
    pub(super) async fn get_or_fetch<F, Fut>(
        &self,
        key: Key,
        fetch: F,
    ) -> (Result<Organization, Error>, Source)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Organization, Error>>,
    {
        if let Some(found) = self.entries.get(&key).await {
            return (Ok(found), Source::Cache);
        }
        if self.missing.contains_key(&key) {
            return (Err(Error::not_found()), Source::Cache);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let led = AtomicBool::new(false);
        let shared = self
            .entries
            .try_get_with(key.clone(), async {
                led.store(true, Ordering::Relaxed);
                fetch().await
            })
            .await;
        let led = led.load(Ordering::Relaxed);
        // Whether this caller's own lookup produced the result (then it stores it).
        let mut own = led;
        let result = match shared {
            Ok(organization) => Ok(organization),
            // Another caller led the lookup and met its own quota or deadline: look up anew.
            Err(error) if !led && error.is_callers_own() => {
                own = true;
                fetch().await
            }
            Err(error) => Err(Error::clone(&error)),
        };
        if let Err(error) = &result
            && error.is_not_found()
            && self.generation.load(Ordering::SeqCst) == generation
        {
            self.missing.insert(key, ()).await;
        }
        if let Ok(organization) = &result {
            if self.generation.load(Ordering::SeqCst) != generation {
                // The organization changed (or was deleted) while this lookup was in flight:
                // what it read may be stale, so it is not kept. This caller still gets it, as
                // it would have had it answered a moment earlier.
                self.drop_entries_of(organization.id.as_str()).await;
            } else if own {
                self.store(organization).await;
            }
        }
        (result, Source::Upstream)
    }

    /// Remembers an organization under both of its keys.
    pub(super) async fn store(&self, organization: &Organization) {
        self.missing
            .invalidate(&Key::Id(organization.id.as_str().to_owned()))
            .await;
        if let Some(external_id) = &organization.external_id {
            self.missing
                .invalidate(&Key::External(external_id.clone()))
                .await;
        }
        self.entries
            .insert(
                Key::Id(organization.id.as_str().to_owned()),
                organization.clone(),
            )
            .await;
        if let Some(external_id) = &organization.external_id {
            self.entries
                .insert(Key::External(external_id.clone()), organization.clone())
                .await;
        }
    }

    /// Forgets an organization under every key that points at it, and any copy a lookup in
    /// flight now would store.
    pub(super) async fn forget(&self, organization_id: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        // What changed may now answer to an external id that was missing: absences are cheap
        // to learn again, and changes are rare.
        self.missing.invalidate_all();
        self.drop_entries_of(organization_id).await;
    }

    /// Forgets that `key` was missing, and that any lookup in flight found it so.
    pub(super) async fn forget_absence(&self, key: &Key) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.missing.invalidate(key).await;
    }

    async fn drop_entries_of(&self, organization_id: &str) {
        self.entries
            .invalidate(&Key::Id(organization_id.to_owned()))
            .await;
        let id = organization_id.to_owned();
        // Only fails when closures are not enabled, and they are.
        let _ = self
            .entries
            .invalidate_entries_if(move |_, organization| organization.id.as_str() == id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;
    use crate::{
        domain::OrganizationId,
        workos::quota::{QuotaExceeded, QuotaScope},
    };

    fn organization() -> Organization {
        Organization {
            id: OrganizationId::parse("org_01EHWNCE74X7JSDV0X3SZ3KJNY").expect("id"),
            name: "Acme".into(),
            domains: Vec::new(),
            metadata: Default::default(),
            external_id: Some("acme".into()),
            stripe_customer_id: None,
            created_at: std::time::SystemTime::UNIX_EPOCH,
            updated_at: std::time::SystemTime::UNIX_EPOCH,
        }
    }

    #[tokio::test]
    async fn a_waiter_never_inherits_the_leaders_own_quota_refusal() {
        let cache = OrganizationCache::new(Duration::from_secs(30), 100);
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        // The leader's lookup is refused by the leader's own quota, after the waiter joined.
        let leader = {
            let cache = cache.clone();
            let released = released.clone();
            tokio::spawn(async move {
                cache
                    .get_or_fetch(Key::External("acme".into()), || {
                        let mut released = released.clone();
                        async move {
                            let _ = released.wait_for(|r| *r).await;
                            Err(Error::Quota(QuotaExceeded {
                                scope: QuotaScope::Caller(Arc::from("leader")),
                                retry_after: Duration::from_secs(1),
                            }))
                        }
                    })
                    .await
                    .0
            })
        };
        tokio::task::yield_now().await;
        let waiter = {
            let cache = cache.clone();
            let calls = calls.clone();
            tokio::spawn(async move {
                cache
                    .get_or_fetch(Key::External("acme".into()), || {
                        let calls = calls.clone();
                        async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            Ok(organization())
                        }
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let _ = release.send(true);
        let _ = released.clone().wait_for(|r| *r).await;
        assert!(matches!(
            leader.await.expect("leader"),
            Err(Error::Quota(_))
        ));
        let (result, source) = waiter.await.expect("waiter");
        assert_eq!(result.expect("the waiter's own lookup").name, "Acme");
        assert_eq!(source, Source::Upstream);
        assert!(calls.load(Ordering::SeqCst) <= 1);
        let (cached, source) = cache
            .get_or_fetch(Key::Id("org_01EHWNCE74X7JSDV0X3SZ3KJNY".into()), || async {
                Err(Error::DeadlineExceeded)
            })
            .await;
        assert_eq!(cached.expect("stored under both keys").name, "Acme");
        assert_eq!(source, Source::Cache);
        cache.forget("org_01EHWNCE74X7JSDV0X3SZ3KJNY").await;
        let (gone, _) = cache
            .get_or_fetch(Key::External("acme".into()), || async {
                Err(Error::DeadlineExceeded)
            })
            .await;
        assert!(gone.is_err(), "forgotten under the external id too");
    }

    #[tokio::test]
    async fn a_lookup_in_flight_across_an_invalidation_does_not_keep_what_it_read() {
        let cache = OrganizationCache::new(Duration::from_secs(30), 100);
        let (release, released) = tokio::sync::watch::channel(false);
        let lookup = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_fetch(Key::Id("org_01EHWNCE74X7JSDV0X3SZ3KJNY".into()), || {
                        let mut released = released.clone();
                        async move {
                            let _ = released.wait_for(|r| *r).await;
                            Ok(organization())
                        }
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        // The organization changes while the read is in flight.
        cache.forget("org_01EHWNCE74X7JSDV0X3SZ3KJNY").await;
        let _ = release.send(true);
        let (read, _) = lookup.await.expect("lookup");
        assert_eq!(read.expect("the caller gets what it read").name, "Acme");
        for key in [
            Key::Id("org_01EHWNCE74X7JSDV0X3SZ3KJNY".into()),
            Key::External("acme".into()),
        ] {
            let (cached, _) = cache
                .get_or_fetch(key.clone(), || async { Err(Error::DeadlineExceeded) })
                .await;
            assert!(cached.is_err(), "{key:?} kept a stale copy");
        }
    }
}
