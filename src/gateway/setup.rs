//! Setup status: did the customer's IT admin finish what a link was for? Read from WorkOS's own
//! state, with only the reads the requested intents need, in parallel.

use std::time::SystemTime;

use crate::{
    auth::policy::{AccessRequest, Rpc},
    domain::{
        Intent, OrganizationId, OrganizationRef,
        setup::{
            self, EVENT_RETENTION, EventQuery, IntentStatus, Position, SetupStatus, Signal,
            event_names,
        },
    },
    error::Error,
    workos,
};

use super::{Call, Gateway};

/// Pages of an organization's certificate and key events read at most for one status: 1,000
/// events within WorkOS's retention, far more than these intents produce.
const MAX_EVENT_PAGES: usize = 10;

impl Gateway {
    /// `GetSetupStatus`: authorizes the caller for the organization and every requested intent
    /// (none requested means every intent the caller may see), then reads the state.
    pub async fn get_setup_status(
        &self,
        call: &mut Call,
        organization: OrganizationRef,
        intents: Vec<Intent>,
    ) -> Result<SetupStatus, Error> {
        let intents = self.authorize_setup(call, Rpc::GetSetupStatus, &organization, intents)?;
        let acting_user = call.acting_user.clone();
        let base = AccessRequest {
            acting_user: acting_user.as_deref(),
            ..AccessRequest::new(Rpc::GetSetupStatus)
        };
        let organization_id = self
            .authorize_and_resolve(call, base, &organization)
            .await?;
        self.read_setup(&mut call.upstream, &organization_id, &intents)
            .await
    }

    /// The intents a setup call is about, each allowed by the caller's rule. An empty request
    /// means every intent the rule allows.
    pub(super) fn authorize_setup(
        &self,
        call: &mut Call,
        rpc: Rpc,
        organization: &OrganizationRef,
        requested: Vec<Intent>,
    ) -> Result<Vec<Intent>, Error> {
        super::scope::note(&mut call.facts, organization);
        let acting_user = call.acting_user.clone();
        let identity = call.caller.identity.clone();
        let allowed = |intent: Intent| {
            call.policy.authorize(
                &identity,
                &AccessRequest {
                    intent: Some(intent),
                    acting_user: acting_user.as_deref(),
                    ..AccessRequest::new(rpc)
                },
            )
        };
        let mut intents: Vec<Intent> = if requested.is_empty() {
            Intent::ALL
                .into_iter()
                .filter(|i| allowed(*i).allowed())
                .collect()
        } else {
            for intent in &requested {
                allowed(*intent).into_result()?;
            }
            requested
        };
        intents.sort();
        intents.dedup();
        if intents.is_empty() {
            // The rule allows no intent at all: let the policy say why, on the first one.
            allowed(Intent::Sso).into_result()?;
        }
        Ok(intents)
    }

    /// Reads the state behind `intents`, in parallel, as one upstream call. Any failed read fails
    /// the status: a partial answer could read as "not started".
    pub(super) async fn read_setup(
        &self,
        upstream: &mut workos::Call,
        organization_id: &OrganizationId,
        intents: &[Intent],
    ) -> Result<SetupStatus, Error> {
        let wants = |list: &[Intent]| list.iter().any(|i| intents.contains(i));
        let not_found = |e: workos::Error| {
            Error::from(e).not_found_as("organization", organization_id.as_str())
        };
        let [mut c1, mut c2, mut c3, mut c4, mut c5] = std::array::from_fn(|_| upstream.fork());
        let connections = async {
            if !wants(&[Intent::Sso]) {
                return Ok(None);
            }
            self.workos
                .list_connections(&mut c1, organization_id)
                .await
                .map(Some)
        };
        let directories = async {
            if !wants(&[Intent::Dsync]) {
                return Ok(None);
            }
            self.workos
                .list_directories(&mut c2, organization_id)
                .await
                .map(Some)
        };
        let domains = async {
            if !wants(&[Intent::DomainVerification]) {
                return Ok(None);
            }
            // Domain states change without the gateway's doing: read them fresh.
            self.workos
                .forget_organization(organization_id.as_str())
                .await;
            let organization = self
                .workos
                .get_organization(&mut c3, organization_id)
                .await?;
            Ok(Some(organization.domains))
        };
        let audit_log = async {
            if !wants(&[Intent::AuditLogs, Intent::LogStreams]) {
                return Ok(None);
            }
            self.workos
                .audit_log_configuration(&mut c4, organization_id)
                .await
                .map(Some)
        };
        let signals = async {
            let signal_intents: Vec<Intent> = [Intent::CertificateRenewal, Intent::BringYourOwnKey]
                .into_iter()
                .filter(|i| intents.contains(i))
                .collect();
            if signal_intents.is_empty() {
                return Ok(Vec::new());
            }
            self.last_signals(&mut c5, organization_id, &signal_intents)
                .await
        };
        let (connections, directories, domains, audit_log, signals) =
            tokio::join!(connections, directories, domains, audit_log, signals);
        for forked in [c1, c2, c3, c4, c5] {
            upstream.join(forked);
        }
        let connections = connections.map_err(not_found)?;
        let directories = directories.map_err(not_found)?;
        let domains = domains.map_err(not_found)?;
        let audit_log = audit_log.map_err(not_found)?;
        let signals = signals.map_err(not_found)?;
        let signal = |intent: Intent| {
            signals
                .iter()
                .rev()
                .find(|(i, _)| *i == intent)
                .map(|(_, s)| s)
        };
        let statuses = intents
            .iter()
            .map(|intent| match intent {
                Intent::Sso => setup::sso_status(connections.as_deref().unwrap_or_default()),
                Intent::Dsync => setup::dsync_status(directories.as_deref().unwrap_or_default()),
                Intent::DomainVerification => {
                    setup::domain_status(domains.as_deref().unwrap_or_default())
                }
                Intent::AuditLogs => {
                    setup::audit_logs_status(audit_log.as_ref().and_then(Option::as_ref))
                }
                Intent::LogStreams => {
                    setup::log_streams_status(audit_log.as_ref().and_then(Option::as_ref))
                }
                Intent::CertificateRenewal => {
                    setup::certificate_status(signal(Intent::CertificateRenewal))
                }
                Intent::BringYourOwnKey => setup::key_status(signal(Intent::BringYourOwnKey)),
            })
            .collect::<Vec<IntentStatus>>();
        Ok(SetupStatus {
            organization_id: organization_id.clone(),
            intents: statuses,
            connections,
            directories,
            domains,
            audit_log,
            read_at: SystemTime::now(),
        })
    }

    /// The organization's certificate and key events within WorkOS's retention, oldest first,
    /// as (intent, what the event says).
    async fn last_signals(
        &self,
        upstream: &mut workos::Call,
        organization_id: &OrganizationId,
        intents: &[Intent],
    ) -> Result<Vec<(Intent, Signal)>, workos::Error> {
        let mut query = EventQuery {
            names: event_names(intents),
            organization_id: Some(organization_id.clone()),
            from: Position::Since(SystemTime::now() - EVENT_RETENTION),
            limit: 100,
        };
        let mut signals = Vec::new();
        for _ in 0..MAX_EVENT_PAGES {
            let page = self.workos.list_events(upstream, &query).await?;
            signals.extend(page.events.iter().map(|e| (e.intent, e.signal())));
            match page.last_id {
                Some(last) if page.len == usize::from(query.limit) => {
                    query.from = Position::After(last);
                }
                _ => break,
            }
        }
        Ok(signals)
    }
}
