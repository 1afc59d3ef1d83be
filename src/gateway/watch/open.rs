//! Opening a watch: authorize, count it against the caller's limit, and start it from its
//! cursor or from a snapshot (shared with the watches opening on the same organization).

use std::{collections::HashMap, collections::VecDeque, sync::Arc};

use super::{SNAPSHOT_OVERLAP, SnapshotReason, Watch, WatchMessage, recheck_interval};
use crate::{
    auth::policy::{AccessRequest, Rpc},
    domain::{
        Intent, OrganizationId, OrganizationRef,
        setup::{Position, SetupStatus},
    },
    error::Error,
    gateway::{Call, Gateway},
    workos,
};

/// The error a watch waiting on another's snapshot read gets when that read failed.
fn shared_failure(error: &Error) -> Option<Error> {
    match error {
        Error::Upstream(upstream) => Some(Error::Upstream(upstream.clone())),
        Error::DeadlineExceeded => Some(Error::DeadlineExceeded),
        Error::NotFound {
            reason,
            resource_type,
            name,
        } => Some(Error::NotFound {
            reason,
            resource_type,
            name: name.clone(),
        }),
        _ => None,
    }
}

impl Gateway {
    /// `WatchSetup`: authorizes the caller like GetSetupStatus, counts the watch against the
    /// caller's `max_watchers`, and opens it: the events after `resume`, or a snapshot first.
    pub async fn watch_setup(
        &self,
        call: &mut Call,
        organization: OrganizationRef,
        intents: Vec<Intent>,
        resume: Option<Position>,
    ) -> Result<Watch, Error> {
        let intents = self.authorize_setup(call, Rpc::WatchSetup, &organization, intents)?;
        let acting_user = call.acting_user.clone();
        let base = AccessRequest {
            acting_user: acting_user.as_deref(),
            ..AccessRequest::new(Rpc::WatchSetup)
        };
        let organization_id = self
            .authorize_and_resolve(call, base, &organization)
            .await?;
        let limit = call
            .policy
            .rule_for(&call.caller.identity)
            .map_or(0, |rule| rule.max_watchers);
        let registration =
            self.hub
                .register(&call.caller.identity, organization_id.as_str(), limit)?;
        let mut pending = VecDeque::new();
        let opened = resume.as_ref().and_then(|from| self.hub.open(from));
        let (replay, receiver) = match opened {
            Some(opened) => opened,
            None => {
                let reason = if resume.is_some() {
                    SnapshotReason::Resync
                } else {
                    SnapshotReason::Initial
                };
                let (status, position) = self
                    .shared_snapshot(&mut call.upstream, &organization_id, &intents)
                    .await?;
                // The snapshot was read after `position`: replay from there. If even that is
                // gone, the snapshot is as fresh as it gets and live updates follow.
                let opened = self.hub.open(&position).unwrap_or_else(|| {
                    let receiver = self.hub.updates.subscribe();
                    (Vec::new(), receiver)
                });
                pending.push_back(WatchMessage::Snapshot {
                    status,
                    reason,
                    position,
                });
                opened
            }
        };
        let skip_before = match pending.front() {
            Some(WatchMessage::Snapshot { status, .. }) => Some(status.read_at - SNAPSHOT_OVERLAP),
            _ => None,
        };
        let mut watch = Watch {
            pending,
            receiver,
            closing: self.hub.closing.subscribe(),
            organization_id,
            intents,
            gateway: self.clone(),
            caller: Arc::from(call.caller.identity.as_str()),
            acting_user: call.acting_user.clone(),
            policy: call.policy.clone(),
            statuses: HashMap::new(),
            skip_before,
            recheck: recheck_interval(),
            _registration: registration,
        };
        for update in replay {
            if let Some(message) = watch.message_for(update).await {
                watch.pending.push_back(message);
            }
        }
        Ok(watch)
    }

    /// A status snapshot and the position it was read after, shared by watches opening on the
    /// same organization and intents within a second.
    async fn shared_snapshot(
        &self,
        upstream: &mut workos::Call,
        organization_id: &OrganizationId,
        intents: &[Intent],
    ) -> Result<(Arc<SetupStatus>, Position), Error> {
        let mask = intents
            .iter()
            .fold(0u8, |mask, intent| mask | 1 << (*intent as u8));
        let key = (organization_id.as_str().to_owned(), mask);
        let mut own = upstream.fork();
        let read = async {
            let position = self.hub.position();
            let status = self.read_setup(&mut own, organization_id, intents).await?;
            Ok::<_, Error>(Arc::new((Arc::new(status), position)))
        };
        let shared = self.hub.snapshots.try_get_with(key, read).await;
        upstream.join(own);
        match shared {
            Ok(shared) => Ok((shared.0.clone(), shared.1.clone())),
            // The read that failed was this call's own, or one it waited on: WorkOS's answer
            // now either way, shared rather than asked again by every waiter.
            Err(error) => match shared_failure(&error) {
                Some(shared) => Err(shared),
                None => {
                    let position = self.hub.position();
                    let status = self.read_setup(upstream, organization_id, intents).await?;
                    Ok((Arc::new(status), position))
                }
            },
        }
    }

    /// Ends every open watch with SHUTTING_DOWN, so watchers resume on another replica.
    pub fn close_watches(&self) {
        self.hub.close();
    }
}
