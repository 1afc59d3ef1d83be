//! Who is calling ([`identity`]), what they may do ([`policy`], read from configuration by
//! [`policy_file`]), and the record of it ([`audit`]). The gRPC envelope proves callers and
//! writes records; the core decides with the policy.
//!
//! Health and reflection never reach this module: they need no identity.

pub mod audit;
pub mod identity;
pub mod policy;
pub mod policy_file;
pub mod settings;

use std::sync::{Arc, RwLock};

use policy::Policy;

/// The policy in force, swappable at run time (reload) without blocking calls for long.
#[derive(Debug, Clone, Default)]
pub struct PolicyStore(Arc<RwLock<Arc<Policy>>>);

impl PolicyStore {
    /// A store holding `policy`.
    pub fn new(policy: Policy) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(policy))))
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts a new policy in force.
    pub fn replace(&self, policy: Policy) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(policy);
    }
}
