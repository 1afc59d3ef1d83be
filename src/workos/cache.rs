//! A short-lived cache of organizations by WorkOS id and by external id, with single flight:
//! concurrent identical lookups share one upstream call. The gateway's own creates, updates and
//! deletes refresh or drop the entries they touch. Portal links are never cached.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::OnceCell, time::Instant};

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

type Flight = Arc<OnceCell<Result<Organization, Error>>>;

/// The cache.
#[derive(Debug)]
pub(super) struct OrganizationCache {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<Key, (Instant, Organization)>>,
    flights: Mutex<HashMap<Key, Flight>>,
}

impl OrganizationCache {
    /// A cache; a zero `ttl` caches nothing but still shares concurrent lookups.
    pub(super) fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            entries: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
        }
    }

    fn fresh(&self, key: &Key) -> Option<Organization> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, org)| org.clone())
    }

    /// The organization for `key`: from the cache, from a lookup already in flight, or from
    /// `fetch`. Returns whether it came from the cache.
    pub(super) async fn get_or_fetch<F>(
        &self,
        key: Key,
        fetch: F,
    ) -> (Result<Organization, Error>, bool)
    where
        F: Future<Output = Result<Organization, Error>>,
    {
        if let Some(found) = self.fresh(&key) {
            return (Ok(found), true);
        }
        let flight = {
            let mut flights = self
                .flights
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            flights.entry(key.clone()).or_default().clone()
        };
        // If the caller leading the lookup gives up (its deadline), another waiter takes over.
        let result = flight.get_or_init(|| fetch).await.clone();
        {
            let mut flights = self
                .flights
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if flights
                .get(&key)
                .is_some_and(|current| Arc::ptr_eq(current, &flight))
            {
                flights.remove(&key);
            }
        }
        if let Ok(organization) = &result {
            self.store(organization);
        }
        (result, false)
    }

    /// Remembers an organization under both of its keys.
    pub(super) fn store(&self, organization: &Organization) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= self.max_entries {
            entries.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(
            Key::Id(organization.id.as_str().to_owned()),
            (now, organization.clone()),
        );
        if let Some(external_id) = &organization.external_id {
            entries.insert(
                Key::External(external_id.clone()),
                (now, organization.clone()),
            );
        }
    }

    /// Forgets an organization under every key that points at it.
    pub(super) fn forget(&self, organization_id: &str) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.retain(|key, (_, org)| {
            org.id.as_str() != organization_id && *key != Key::Id(organization_id.to_owned())
        });
    }
}
