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
//! - A caller's retry with the same `request_id` gets the first answer (the organization, or,
//!   without an external id, that the outcome is unknown) from a record kept on this replica,
//!   and, with replicas, in a [`CreateLedger`] they share, so a retry that reaches another
//!   replica gets it too. A call cut off while its create was in flight, or one whose read-back
//!   failed, leaves its record in doubt, and the retry reconciles.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use sha2::{Digest, Sha256};

use super::{Call, Gateway};
use crate::{
    domain::{NewOrganization, Organization, OrganizationId, OrganizationRef},
    error::{Error, Invalid, Upstream},
    workos,
};

/// How long a create's answer is kept for retries with the same `request_id` (WorkOS keeps its
/// own idempotency keys for a day).
const RECORD_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How many recent creates are remembered.
const RECORD_CAPACITY: u64 = 10_000;

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where replicas share what came of each `request_id`'s create (Redis, with `[cluster]`). A
/// call claims the `request_id` for as long as its create may run; while it holds the claim, the
/// same `request_id` on another replica is told to come back.
pub trait CreateLedger: Send + Sync + std::fmt::Debug {
    /// Claims `key` for `holder` until `lease` passes, or says how the create stands.
    fn claim(
        &self,
        key: String,
        fingerprint: String,
        holder: String,
        lease: Duration,
    ) -> Boxed<'_, Claim>;
    /// Marks `holder`'s claim as about to reach WorkOS (until then, a claim whose holder is
    /// gone made nothing); whether the ledger took it.
    fn sending(&self, key: String, holder: String) -> Boxed<'_, bool>;
    /// Ends `holder`'s claim with what its create came to.
    fn settle(&self, key: String, holder: String, settled: Settled) -> Boxed<'_, ()>;
}

/// How a `request_id`'s create stands in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Claimed; nothing was made under it.
    Fresh,
    /// Claimed; an earlier claim's create may have been made.
    InDoubt,
    /// Already answered: `created:<organization id>` or `unknown`.
    Answered(String),
    /// Another call holds the claim now.
    Busy,
    /// The `request_id` was used for a different create.
    Mismatch,
    /// The ledger cannot be reached: this replica's record alone decides.
    Unreachable,
}

/// What a claim's create came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Nothing was made.
    Fresh,
    /// It may have been made, and a later call can find out.
    InDoubt,
    /// The answer every retry gets: `created:<organization id>` or `unknown`.
    Answered(String),
}

/// The longest a claim is held: a create, its retries and its read-back end well before.
const MAX_LEASE: Duration = Duration::from_secs(120);

/// The answers given to creates, by the caller's scoped `request_id`.
#[derive(Debug, Clone)]
pub(super) struct CreateRecords {
    records: moka::future::Cache<String, Arc<Record>>,
}

impl Default for CreateRecords {
    fn default() -> Self {
        Self {
            // Least recently used goes first: a new record (the one most likely to be retried)
            // is always kept, whatever the older ones.
            records: moka::future::Cache::builder()
                .max_capacity(RECORD_CAPACITY)
                .time_to_live(RECORD_TTL)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .build(),
        }
    }
}

/// One `request_id`'s create: what was asked, and what came of it. The lock is held for the
/// whole create, so retries with the same id wait for the first instead of racing it.
#[derive(Debug)]
struct Record {
    state: Arc<tokio::sync::Mutex<Kept>>,
    /// Calls using the record now (holding its lock or waiting for it).
    users: std::sync::atomic::AtomicUsize,
}

/// What a record keeps: the request its state is about, and the state.
#[derive(Debug)]
struct Kept {
    fingerprint: [u8; 32],
    state: State,
    /// Taken out of the records: a call that waited on it looks the record up again.
    retired: bool,
}

#[derive(Debug, Clone)]
enum State {
    /// Nothing was sent, or what was sent provably made nothing.
    Fresh,
    /// A create was sent and its outcome is not known: it may have been made.
    InDoubt,
    /// The answer every retry gets.
    Answered(Answer),
}

/// A kept answer: small, so records cost little whatever the organization holds.
#[derive(Debug, Clone)]
enum Answer {
    Created(OrganizationId),
    Unknown(Box<Upstream>),
}

impl From<&State> for Settled {
    fn from(state: &State) -> Self {
        match state {
            State::Fresh => Self::Fresh,
            State::InDoubt => Self::InDoubt,
            State::Answered(Answer::Created(id)) => {
                Self::Answered(format!("created:{}", id.as_str()))
            }
            State::Answered(Answer::Unknown(_)) => Self::Answered("unknown".into()),
        }
    }
}

/// A create in progress under its record's lock. Dropped before it ends (its caller went away),
/// it leaves the record as the create left it: in doubt once it may have reached WorkOS, fresh
/// before; the shared ledger is told the same.
struct Pending {
    kept: tokio::sync::OwnedMutexGuard<Kept>,
    sent: Arc<std::sync::atomic::AtomicBool>,
    claim: Option<(Arc<dyn CreateLedger>, String, String)>,
    finished: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.sent.load(std::sync::atomic::Ordering::Relaxed) {
            self.kept.state = State::InDoubt;
        }
        if let Some((ledger, key, holder)) = self.claim.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Without a runtime the claim's lease settles it.
            let settled = Settled::from(&self.kept.state);
            runtime.spawn(async move { ledger.settle(key, holder, settled).await });
        }
    }
}

/// Counts a call among a record's users while it lives.
struct Users(Arc<Record>);

impl Users {
    fn enter(record: Arc<Record>) -> Self {
        record
            .users
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(record)
    }

    /// Whether no other call uses the record.
    fn alone(&self) -> bool {
        self.0.users.load(std::sync::atomic::Ordering::SeqCst) == 1
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        self.0
            .users
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
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
    let mut domains: Vec<_> = new
        .domains
        .iter()
        .map(|claim| (claim.domain.as_str(), claim.verified))
        .collect();
    domains.sort_unstable();
    for (domain, verified) in domains {
        field(domain);
        field(if verified { "verified" } else { "" });
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

/// What WorkOS holds under a create's external id, read fresh.
pub(super) enum ReadBack {
    /// The organization asked for.
    Made(Organization),
    /// Another organization holds the external id.
    Taken(Organization),
    /// Nothing holds it.
    Absent,
    /// No external id to look for, or the read failed.
    Unsettled,
}

/// How a create that did not answer with an organization ended.
pub(super) enum Outcome {
    /// It may have been made.
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

fn reused() -> Error {
    Invalid::field(
        "request_id",
        "was already used for a different create; use a new request_id for a new request",
    )
    .into()
}

/// The ledger cannot say whether another replica answered this `request_id`.
fn ledger_unreachable() -> Error {
    retry_shortly(
        "CREATE_LEDGER_UNAVAILABLE",
        "the replicas' record of creates cannot be reached, so this create cannot be told from a \
         retry of one made elsewhere; nothing was made: retry shortly",
    )
}

/// Another replica is creating under this `request_id` now.
fn in_progress() -> Error {
    retry_shortly(
        "CREATE_IN_PROGRESS",
        "a create with this request_id is in progress on another replica; retry shortly",
    )
}

/// UNAVAILABLE with `reason`, to be retried after a second.
fn retry_shortly(reason: &'static str, message: &str) -> Error {
    Error::Upstream(Box::new(Upstream {
        retry_after: Some(Duration::from_secs(1)),
        ..Upstream::new(crate::error::UpstreamClass::Unavailable, reason, message)
    }))
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
        let (record, users, mut kept) = loop {
            let record = self
                .creates
                .records
                .get_with(key.clone(), async {
                    Arc::new(Record {
                        state: Arc::new(tokio::sync::Mutex::new(Kept {
                            fingerprint,
                            state: State::Fresh,
                            retired: false,
                        })),
                        users: std::sync::atomic::AtomicUsize::new(0),
                    })
                })
                .await;
            let users = Users::enter(record.clone());
            let kept = record.state.clone().lock_owned().await;
            if !kept.retired {
                break (record, users, kept);
            }
        };
        if kept.fingerprint != fingerprint {
            // Nothing was made under it: a corrected request may take it over.
            if !matches!(kept.state, State::Fresh) {
                return Err(reused());
            }
            kept.fingerprint = fingerprint;
        }
        let mut in_doubt = match &kept.state {
            State::Answered(answer) => {
                let answer = answer.clone();
                drop(kept);
                return self.answer(call, answer).await;
            }
            State::InDoubt => true,
            State::Fresh => false,
        };
        // With replicas, the shared ledger may know more, and holds the claim while this runs.
        let mut claim = None;
        if let Some(ledger) = &self.ledger {
            let holder = crate::domain::random_uuid();
            let lease = call
                .upstream
                .deadline()
                .saturating_duration_since(tokio::time::Instant::now())
                .saturating_add(Duration::from_secs(1))
                .min(MAX_LEASE);
            let fingerprint = crate::domain::hex(&fingerprint);
            let claimed = ledger
                .claim(key.clone(), fingerprint, holder.clone(), lease)
                .await;
            match claimed {
                Claim::Fresh | Claim::InDoubt => {
                    if claimed == Claim::InDoubt {
                        in_doubt = true;
                        kept.state = State::InDoubt;
                    }
                    // The ledger must know the create may reach WorkOS before it does.
                    if ledger.sending(key.clone(), holder.clone()).await {
                        claim = Some((ledger.clone(), key.clone(), holder));
                    } else {
                        ledger
                            .settle(key.clone(), holder, Settled::from(&kept.state))
                            .await;
                        if new.external_id.is_none() {
                            return Err(ledger_unreachable());
                        }
                        in_doubt = true;
                    }
                }
                Claim::Answered(answer) => {
                    let answer = replayed(&answer)?;
                    kept.state = State::Answered(answer.clone());
                    drop(kept);
                    return self.answer(call, answer).await;
                }
                Claim::Busy => return Err(in_progress()),
                Claim::Mismatch => return Err(reused()),
                // Another replica may hold this request_id's answer. With an external id,
                // reading back settles it (external ids are unique); without one, a create now
                // could be a second.
                Claim::Unreachable if new.external_id.is_some() => in_doubt = true,
                Claim::Unreachable => return Err(ledger_unreachable()),
            }
        }
        let mut pending = Pending {
            kept,
            sent: call.upstream.create_in_doubt(),
            claim,
            finished: false,
        };
        let outcome = self.create_or_reconcile(call, new, in_doubt).await;
        let (next, result) = match outcome {
            Ok(organization) => (
                State::Answered(Answer::Created(organization.id.clone())),
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
            // An earlier create may still land: only another organization holding the external
            // id proves it never will.
            Err(Outcome::NothingMade(error))
                if in_doubt && error.reason() != "EXTERNAL_ID_ALREADY_USED" =>
            {
                (State::InDoubt, Err(error))
            }
            Err(Outcome::NothingMade(error)) => (State::Fresh, Err(error)),
        };
        let settled = Settled::from(&next);
        let fresh = matches!(next, State::Fresh);
        pending.kept.state = next;
        pending.finished = true;
        if let Some((ledger, key, holder)) = pending.claim.take() {
            ledger.settle(key, holder, settled).await;
        }
        // A record of nothing made keeps no place (a flood of refused creates must not push
        // out the answers others may need), unless another call waits on it; one that waited
        // looks it up again.
        if fresh && users.alone() {
            pending.kept.retired = true;
            drop(pending);
            self.creates.records.invalidate(&key).await;
        }
        drop(record);
        result
    }

    /// A kept answer, as the caller gets it.
    async fn answer(&self, call: &mut Call, answer: Answer) -> Result<Organization, Error> {
        match answer {
            Answer::Created(id) => {
                self.get_organization_as(&mut call.upstream, &OrganizationRef::Id(id))
                    .await
            }
            Answer::Unknown(upstream) => Err(Error::Upstream(upstream)),
        }
    }

    /// Creates `new`, and settles a failure whose outcome is unknown by reading back its
    /// external id. `in_doubt`: an earlier call's create may have been made (or may still be
    /// made), so it is looked for first, and an external id already used may be its.
    pub(super) async fn create_or_reconcile(
        &self,
        call: &mut Call,
        new: &NewOrganization,
        in_doubt: bool,
    ) -> Result<Organization, Outcome> {
        if in_doubt {
            match self.read_back(call, new).await {
                ReadBack::Made(organization) => return Ok(organization),
                ReadBack::Taken(_) => {
                    return Err(Outcome::NothingMade(
                        super::organizations::external_id_taken(new),
                    ));
                }
                ReadBack::Absent => {}
                ReadBack::Unsettled => {
                    return Err(Outcome::Unknown(Box::new(workos::outcome_unknown(
                        "an earlier call with this request_id was cut off while its create was in flight",
                    ))));
                }
            }
        }
        match self
            .workos
            .create_organization(&mut call.upstream, new)
            .await
        {
            Ok(organization) => Ok(organization),
            Err(workos::Error::OutcomeUnknown(failure)) => {
                // Finding nothing proves nothing: after a timeout or a broken connection WorkOS
                // may still be making it, and a 5xx may come from a proxy in front of it.
                match self.read_back(call, new).await {
                    ReadBack::Made(organization) => Ok(organization),
                    ReadBack::Taken(_) => Err(Outcome::NothingMade(
                        super::organizations::external_id_taken(new),
                    )),
                    ReadBack::Absent | ReadBack::Unsettled => Err(Outcome::Unknown(unknown(
                        workos::Error::OutcomeUnknown(failure),
                    ))),
                }
            }
            // The earlier create may have landed meanwhile: if what holds the external id is
            // what was asked, it is this request's.
            Err(error)
                if in_doubt
                    && matches!(&error, workos::Error::Api { code: Some(code), .. } if code == "external_id_already_used") =>
            {
                match self.read_back(call, new).await {
                    ReadBack::Made(organization) => Ok(organization),
                    ReadBack::Taken(_) | ReadBack::Absent => Err(Outcome::NothingMade(
                        super::organizations::external_id_taken(new),
                    )),
                    ReadBack::Unsettled => Err(Outcome::Unknown(unknown(error))),
                }
            }
            Err(error) => Err(Outcome::NothingMade(super::organizations::already_exists(
                error.into(),
                new,
            ))),
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
            Ok(Some(found)) => ReadBack::Taken(found),
            Ok(None) => ReadBack::Absent,
            Err(error) => {
                tracing::warn!(error = %error, "could not read back a create whose answer was lost");
                ReadBack::Unsettled
            }
        }
    }
}

/// An answer another replica kept in the ledger.
fn replayed(answer: &str) -> Result<Answer, Error> {
    match answer.strip_prefix("created:") {
        Some(id) => OrganizationId::parse(id).map(Answer::Created).map_err(|_| {
            Error::from(workos::Error::Malformed {
                field: "create ledger organization id",
            })
        }),
        None => Ok(Answer::Unknown(Box::new(workos::outcome_unknown(
            "another replica answered this request_id so",
        )))),
    }
}
