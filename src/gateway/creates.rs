//! Creates that are idempotent because the gateway makes them so, not because WorkOS would:
//! WorkOS honours `Idempotency-Key` only on audit-log events, so sending a create again after it
//! took effect makes a second organization (or meets the first as a conflict).
//!
//! - The WorkOS client sends a create again only when the failure proves nothing was made (the
//!   connection was refused, WorkOS answered 429); any other failure after sending is
//!   [`workos::Error::OutcomeUnknown`].
//! - On an unknown outcome, a create with an external id reads it back and adopts the
//!   organization when it is the one asked for; without an external id, the caller hears that
//!   the create may have happened.
//! - A caller's retry with the same `request_id` gets the first answer (the organization, or
//!   that the outcome is unknown) from a record kept on this replica. A call cut off while its
//!   create was in flight leaves its record in doubt, and the retry reconciles.

use std::{sync::Arc, time::Duration};

use sha2::{Digest, Sha256};

use super::{Call, Gateway};
use crate::{
    domain::{NewOrganization, Organization},
    error::{Error, Invalid, Upstream},
    workos,
};

/// How long a create's answer is kept for retries with the same `request_id` (WorkOS keeps its
/// own idempotency keys for a day).
const RECORD_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How many recent creates are remembered.
const RECORD_CAPACITY: u64 = 10_000;

/// The answers given to creates, by the caller's scoped `request_id`.
#[derive(Debug, Clone)]
pub(super) struct CreateRecords {
    records: moka::future::Cache<String, Arc<Record>>,
}

impl Default for CreateRecords {
    fn default() -> Self {
        Self {
            records: moka::future::Cache::builder()
                .max_capacity(RECORD_CAPACITY)
                .time_to_live(RECORD_TTL)
                .build(),
        }
    }
}

/// One `request_id`'s create: what was asked, and what came of it. The lock is held for the
/// whole create, so retries with the same id wait for the first instead of racing it.
#[derive(Debug)]
struct Record {
    fingerprint: [u8; 32],
    state: tokio::sync::Mutex<State>,
}

#[derive(Debug, Clone)]
enum State {
    /// Nothing was sent, or what was sent provably made nothing.
    Fresh,
    /// A create was sent and its caller went away before it ended: it may have been made.
    InDoubt,
    /// The answer every retry gets.
    Answered(Answer),
}

#[derive(Debug, Clone)]
enum Answer {
    Created(Organization),
    Unknown(Box<Upstream>),
}

impl Answer {
    fn into_result(self) -> Result<Organization, Error> {
        match self {
            Self::Created(organization) => Ok(organization),
            Self::Unknown(upstream) => Err(Error::Upstream(upstream)),
        }
    }
}

/// What a create asks for, so a `request_id` reused for a different request is caught.
fn fingerprint(new: &NewOrganization) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut field = |value: &str| {
        hash.update((value.len() as u64).to_be_bytes());
        hash.update(value.as_bytes());
    };
    field(&new.name);
    field(new.external_id.as_ref().map_or("", |e| e.as_str()));
    for claim in &new.domains {
        field(&claim.domain);
        field(if claim.verified { "verified" } else { "" });
    }
    field("metadata");
    for (key, value) in new.metadata.pairs() {
        field(key);
        field(value);
    }
    hash.finalize().into()
}

/// Whether `found` is the organization `new` asked for.
fn is_what_was_asked(found: &Organization, new: &NewOrganization) -> bool {
    let mut asked: Vec<&str> = new.domains.iter().map(|d| d.domain.as_str()).collect();
    let mut held: Vec<&str> = found.domains.iter().map(|d| d.domain.as_str()).collect();
    asked.sort_unstable();
    held.sort_unstable();
    found.name == new.name
        && found.external_id.as_deref() == new.external_id.as_ref().map(|e| e.as_str())
        && asked == held
        && new.metadata.pairs() == &found.metadata
}

/// The answer for a create that may have been made.
fn unknown(error: workos::Error) -> Box<Upstream> {
    match Error::from(error) {
        Error::Upstream(upstream) => upstream,
        other => Box::new(workos::outcome_unknown(&other.to_string())),
    }
}

/// What WorkOS holds under a create's external id, read back after the create's outcome was
/// lost.
pub(super) enum ReadBack {
    /// The organization asked for: the create was made.
    Made(Organization),
    /// Another organization holds the external id: this create cannot have been made.
    Taken,
    /// Nothing holds it: the create was not made.
    Absent,
    /// No external id to look for, or the read failed.
    Unsettled,
}

/// How a create that did not answer with an organization ended.
pub(super) enum Outcome {
    /// It may have been made; every retry with its `request_id` hears the same.
    Unknown(Box<Upstream>),
    /// Nothing was made: a retry may create.
    NothingMade(Error),
}

impl Outcome {
    pub(super) fn into_error(self) -> Error {
        match self {
            Self::Unknown(upstream) => Error::Upstream(upstream),
            Self::NothingMade(error) => error,
        }
    }
}

fn external_id_taken(new: &NewOrganization) -> Error {
    Error::AlreadyExists {
        reason: "EXTERNAL_ID_ALREADY_USED",
        resource_type: "organization",
        name: new
            .external_id
            .as_ref()
            .map(|e| e.as_str().to_owned())
            .unwrap_or_default(),
        description: "an organization with this external_id already exists".into(),
    }
}

impl Gateway {
    /// Runs a create under its caller's `request_id` record (`key` already scoped to the caller).
    pub(super) async fn create_once(
        &self,
        call: &mut Call,
        key: String,
        new: &NewOrganization,
    ) -> Result<Organization, Error> {
        let fingerprint = fingerprint(new);
        let record = self
            .creates
            .records
            .get_with(key, async {
                Arc::new(Record {
                    fingerprint,
                    state: tokio::sync::Mutex::new(State::Fresh),
                })
            })
            .await;
        if record.fingerprint != fingerprint {
            return Err(Invalid::field(
                "request_id",
                "was already used for a different create; use a new request_id for a new request",
            )
            .into());
        }
        let mut state = record.state.lock().await;
        let in_doubt = match &*state {
            State::Answered(answer) => return answer.clone().into_result(),
            State::InDoubt => true,
            State::Fresh => false,
        };
        // Should this call be cut off from here on, the next one knows the create may have
        // been made.
        *state = State::InDoubt;
        let outcome = if in_doubt {
            self.settle_doubt(call, new).await
        } else {
            self.create_or_reconcile(call, new).await
        };
        let (next, result) = match outcome {
            Ok(organization) => (
                State::Answered(Answer::Created(organization.clone())),
                Ok(organization),
            ),
            // With an external id, the next retry can still find out: it reconciles again.
            Err(Outcome::Unknown(upstream)) if new.external_id.is_some() => {
                (State::InDoubt, Err(Error::Upstream(upstream)))
            }
            Err(Outcome::Unknown(upstream)) => (
                State::Answered(Answer::Unknown(upstream.clone())),
                Err(Error::Upstream(upstream)),
            ),
            Err(Outcome::NothingMade(error)) => (State::Fresh, Err(error)),
        };
        *state = next;
        result
    }

    /// Creates `new`; on an unknown outcome, reconciles by reading back its external id.
    pub(super) async fn create_or_reconcile(
        &self,
        call: &mut Call,
        new: &NewOrganization,
    ) -> Result<Organization, Outcome> {
        match self
            .workos
            .create_organization(&mut call.upstream, new)
            .await
        {
            Ok(organization) => Ok(organization),
            Err(workos::Error::OutcomeUnknown(failure)) => match self.read_back(call, new).await {
                ReadBack::Made(organization) => Ok(organization),
                ReadBack::Taken => Err(Outcome::NothingMade(external_id_taken(new))),
                ReadBack::Absent => Err(Outcome::NothingMade(Error::from(*failure))),
                ReadBack::Unsettled => Err(Outcome::Unknown(unknown(
                    workos::Error::OutcomeUnknown(failure),
                ))),
            },
            Err(error) => Err(Outcome::NothingMade(super::organizations::already_exists(
                error.into(),
                new,
            ))),
        }
    }

    /// A previous call's create may have been made: find out, and create now only if it
    /// provably was not.
    async fn settle_doubt(
        &self,
        call: &mut Call,
        new: &NewOrganization,
    ) -> Result<Organization, Outcome> {
        match self.read_back(call, new).await {
            ReadBack::Made(organization) => Ok(organization),
            ReadBack::Taken => Err(Outcome::NothingMade(external_id_taken(new))),
            ReadBack::Absent => self.create_or_reconcile(call, new).await,
            ReadBack::Unsettled => Err(Outcome::Unknown(Box::new(workos::outcome_unknown(
                "an earlier call with this request_id was cut off while its create was in flight",
            )))),
        }
    }

    /// Reads back, fresh, what WorkOS holds under `new`'s external id.
    pub(super) async fn read_back(&self, call: &mut Call, new: &NewOrganization) -> ReadBack {
        let Some(external_id) = &new.external_id else {
            return ReadBack::Unsettled;
        };
        match self.workos.read_back(&mut call.upstream, external_id).await {
            Ok(Some(found)) if is_what_was_asked(&found, new) => {
                tracing::info!(
                    organization_id = found.id.as_str(),
                    "a create whose answer was lost had been made; adopted it"
                );
                ReadBack::Made(found)
            }
            Ok(Some(_)) => ReadBack::Taken,
            Ok(None) => ReadBack::Absent,
            Err(error) => {
                tracing::warn!(error = %error, "could not read back a create whose answer was lost");
                ReadBack::Unsettled
            }
        }
    }
}
