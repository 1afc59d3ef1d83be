//! Thin gRPC adapters. Every RPC goes the same way: prove the caller, parse the request into
//! domain types (`convert`), ask the policy, call the core (`crate::gateway`), convert back, and
//! let the [`Gatekeeper`] turn the result into a status and write the audit record.

mod convert;

use std::{sync::Arc, time::Duration};

use sha2::{Digest, Sha256};
use tokio::{sync::Semaphore, time::Instant};
use tonic::{Request, Response, Status};

use crate::{
    auth::{
        Gatekeeper,
        audit::AuditEntry,
        identity::{Caller, RequestContext},
        policy::{AccessRequest, Decision, Denial, OrganizationFacts, Rpc},
    },
    domain::{Organization, OrganizationId, OrganizationRef, RedirectUrl},
    error::Error,
    gateway::Gateway,
    proto, workos,
};

/// How much earlier than the caller's deadline the gateway gives up, so its DEADLINE_EXCEEDED
/// reaches the caller before the caller's own timer (and before tonic's, which would answer
/// CANCELLED) fires.
const DEADLINE_MARGIN: Duration = Duration::from_millis(10);

/// What every service shares. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct Core {
    gateway: Gateway,
    gate: Gatekeeper,
    default_deadline: Duration,
    in_flight: Arc<Semaphore>,
}

impl Core {
    /// Joins the core and the gatekeeper. Calls without a `grpc-timeout` get `default_deadline`;
    /// beyond `max_in_flight` concurrent calls, new ones are refused at once.
    pub fn new(
        gateway: Gateway,
        gate: Gatekeeper,
        default_deadline: Duration,
        max_in_flight: usize,
    ) -> Self {
        Self {
            gateway,
            gate,
            default_deadline,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
        }
    }

    /// When this call must be answered: the caller's `grpc-timeout` (a little early), at most the
    /// configured default.
    fn deadline<T>(&self, request: &Request<T>) -> Instant {
        let now = Instant::now();
        let asked = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|timeout| timeout.saturating_sub(DEADLINE_MARGIN));
        now + asked.map_or(self.default_deadline, |t| t.min(self.default_deadline))
    }

    /// The upstream work of an authenticated caller.
    fn call(&self, caller: &Caller, deadline: Instant, context: &RequestContext) -> workos::Call {
        let limit = self
            .gate
            .policy_store()
            .current()
            .rule_for(&caller.identity)
            .and_then(|r| r.requests_per_minute);
        workos::Call {
            deadline,
            caller: Arc::from(caller.identity.as_str()),
            caller_per_minute: limit,
            trace: context.trace.clone(),
        }
    }

    fn begin<T>(rpc: Rpc, request: &Request<T>) -> (RequestContext, AuditEntry) {
        let context = RequestContext::from_request(request);
        let entry = AuditEntry::new(rpc, &context.trace.request_id, context.peer);
        (context, entry)
    }

    /// Authorizes a call about one organization. Decides first on what the request says; only
    /// when the caller's rule could still match on the organization's other id is it fetched
    /// (once). An organization outside the caller's scope is denied whether or not it exists.
    async fn authorize_organization(
        &self,
        call: &workos::Call,
        caller: &Caller,
        base: AccessRequest<'_>,
        organization: &OrganizationRef,
        entry: &mut AuditEntry,
    ) -> Result<Option<Organization>, Error> {
        let (id, external_id) = match organization {
            OrganizationRef::Id(id) => (Some(id.as_str()), None),
            OrganizationRef::External(ext) => (None, Some(ext.as_str())),
        };
        entry.organization(id, external_id);
        let facts = OrganizationFacts { id, external_id };
        let decision = self.gate.decide(
            &caller.identity,
            &AccessRequest {
                organization: Some(facts),
                ..base
            },
        );
        if decision.denial != Some(Denial::OrganizationNotAllowed) {
            return into_result(decision).map(|()| None);
        }
        let (by_ids, by_patterns) = self.gate.scope_keys(&caller.identity);
        if !((id.is_none() && by_ids) || (external_id.is_none() && by_patterns)) {
            return into_result(decision).map(|()| None);
        }
        let fetched = match self.gateway.get_organization(call, organization).await {
            Ok(found) => found,
            Err(Error::NotFound { .. }) => return into_result(decision).map(|()| None),
            Err(other) => return Err(other),
        };
        entry.organization(Some(fetched.id.as_str()), fetched.external_id.as_deref());
        let facts = OrganizationFacts {
            id: Some(fetched.id.as_str()),
            external_id: fetched.external_id.as_deref(),
        };
        into_result(self.gate.decide(
            &caller.identity,
            &AccessRequest {
                organization: Some(facts),
                ..base
            },
        ))?;
        Ok(Some(fetched))
    }

    /// Authorizes a call about no particular organization, or a new one.
    fn authorize(&self, caller: &Caller, request: AccessRequest<'_>) -> Result<(), Error> {
        self.gate.authorize(caller, &request)
    }
}

fn into_result(decision: Decision) -> Result<(), Error> {
    match decision.denial {
        None => Ok(()),
        Some(denial) => Err(Error::Denied {
            denial,
            explanation: decision.explanation,
        }),
    }
}

/// Scopes a caller's idempotency key to the caller, so two callers that happen to choose the same
/// `request_id` can never receive each other's organization. The same inputs give the same key,
/// so retries still deduplicate.
fn scoped_idempotency_key(identity: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("{identity}\n{key}").as_bytes());
    format!("pg-{}", crate::domain::hex(&digest))
}

fn acting_user(context: &RequestContext) -> Option<&str> {
    context.acting_user().ok().flatten()
}

/// `adminportal.v1.OrganizationService`.
#[derive(Debug, Clone)]
pub struct OrganizationService(Core);

impl OrganizationService {
    /// Serves organizations.
    pub fn new(core: Core) -> Self {
        Self(core)
    }
}

/// `adminportal.v1.PortalService`.
#[derive(Debug, Clone)]
pub struct PortalService(Core);

impl PortalService {
    /// Serves portal links.
    pub fn new(core: Core) -> Self {
        Self(core)
    }
}

/// `adminportal.v1.AccessService`.
#[derive(Debug, Clone)]
pub struct AccessService(Core);

impl AccessService {
    /// Serves policy dry runs.
    pub fn new(core: Core) -> Self {
        Self(core)
    }
}

type RpcResult<T> = Result<Response<T>, Status>;

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The shape every RPC shares: shed load beyond the in-flight limit, bound the work by the
/// deadline (answering DEADLINE_EXCEEDED, and dropping the upstream request, when it passes),
/// then let the gatekeeper turn the result into a status and an audit record.
macro_rules! rpc {
    ($core:expr, $rpc:expr, $request:ident, $inner:ident) => {{
        let (context, mut entry) = Core::begin($rpc, &$request);
        let deadline = $core.deadline(&$request);
        let result = match $core.in_flight.clone().try_acquire_owned() {
            Err(_) => Err(Error::Overloaded),
            Ok(_permit) => {
                let _in_flight = $core.gate.metrics().in_flight();
                let work = $inner(
                    &$core,
                    &context,
                    deadline,
                    &mut entry,
                    $request.into_inner(),
                );
                #[cfg(feature = "otlp")]
                let work = tracing::Instrument::instrument(
                    work,
                    crate::telemetry::otlp::rpc_span(
                        $rpc.name(),
                        context.trace.traceparent.as_deref(),
                    ),
                );
                match tokio::time::timeout_at(deadline, work).await {
                    Ok(result) => result,
                    Err(_) => Err(Error::DeadlineExceeded),
                }
            }
        };
        let mut answer = $core
            .gate
            .conclude(entry, &context, result)
            .await
            .map(Response::new);
        let metadata = match &mut answer {
            Ok(response) => response.metadata_mut(),
            Err(status) => status.metadata_mut(),
        };
        with_request_ids(metadata, &context);
        answer
    }};
}

/// Returns the call's request id and WorkOS's, so a caller can quote both to support.
fn with_request_ids(metadata: &mut tonic::metadata::MetadataMap, context: &RequestContext) {
    if let Ok(value) = context.trace.request_id.parse() {
        metadata.insert("x-request-id", value);
    }
    if let Some(value) = context
        .trace
        .workos_request_id()
        .and_then(|id| id.parse().ok())
    {
        metadata.insert("x-workos-request-id", value);
    }
}

// === impl OrganizationService ===

#[tonic::async_trait]
impl proto::organization_service_server::OrganizationService for OrganizationService {
    async fn create_organization(
        &self,
        request: Request<proto::CreateOrganizationRequest>,
    ) -> RpcResult<proto::CreateOrganizationResponse> {
        rpc!(
            self.0,
            Rpc::CreateOrganization,
            request,
            create_organization
        )
    }

    async fn get_organization(
        &self,
        request: Request<proto::GetOrganizationRequest>,
    ) -> RpcResult<proto::GetOrganizationResponse> {
        rpc!(self.0, Rpc::GetOrganization, request, get_organization)
    }

    async fn list_organizations(
        &self,
        request: Request<proto::ListOrganizationsRequest>,
    ) -> RpcResult<proto::ListOrganizationsResponse> {
        rpc!(self.0, Rpc::ListOrganizations, request, list_organizations)
    }

    async fn update_organization(
        &self,
        request: Request<proto::UpdateOrganizationRequest>,
    ) -> RpcResult<proto::UpdateOrganizationResponse> {
        rpc!(
            self.0,
            Rpc::UpdateOrganization,
            request,
            update_organization
        )
    }

    async fn delete_organization(
        &self,
        request: Request<proto::DeleteOrganizationRequest>,
    ) -> RpcResult<proto::DeleteOrganizationResponse> {
        rpc!(
            self.0,
            Rpc::DeleteOrganization,
            request,
            delete_organization
        )
    }

    async fn ensure_organization(
        &self,
        request: Request<proto::EnsureOrganizationRequest>,
    ) -> RpcResult<proto::EnsureOrganizationResponse> {
        rpc!(
            self.0,
            Rpc::EnsureOrganization,
            request,
            ensure_organization
        )
    }
}

async fn create_organization(
    core: &Core,
    context: &RequestContext,
    deadline: Instant,
    entry: &mut AuditEntry,
    request: proto::CreateOrganizationRequest,
) -> Result<proto::CreateOrganizationResponse, Error> {
    let caller = core.gate.authenticate(context, entry).await?;
    let call = core.call(&caller, deadline, context);
    let mut new = convert::new_organization(request)?;
    let external_id = new.external_id.as_ref().map(|e| e.as_str());
    entry.organization(None, external_id);
    let facts = OrganizationFacts {
        id: None,
        external_id,
    };
    core.authorize(
        &caller,
        AccessRequest {
            organization: Some(facts),
            acting_user: acting_user(context),
            ..AccessRequest::new(Rpc::CreateOrganization)
        },
    )?;
    new.idempotency_key = scoped_idempotency_key(&caller.identity, &new.idempotency_key);
    let organization = core.gateway.create_organization(&call, &new).await?;
    entry.organization(Some(organization.id.as_str()), None);
    Ok(proto::CreateOrganizationResponse {
        organization: Some(convert::organization(organization)),
    })
}

async fn get_organization(
    core: &Core,
    context: &RequestContext,
    deadline: Instant,
    entry: &mut AuditEntry,
    request: proto::GetOrganizationRequest,
) -> Result<proto::GetOrganizationResponse, Error> {
    let caller = core.gate.authenticate(context, entry).await?;
    let call = core.call(&caller, deadline, context);
    let organization = convert::get_organization(request)?;
    let base = AccessRequest {
        acting_user: acting_user(context),
        ..AccessRequest::new(Rpc::GetOrganization)
    };
    let fetched = core
        .authorize_organization(&call, &caller, base, &organization, entry)
        .await?;
    let organization = match fetched {
        Some(found) => found,
        None => core.gateway.get_organization(&call, &organization).await?,
    };
    Ok(proto::GetOrganizationResponse {
        organization: Some(convert::organization(organization)),
    })
}

async fn list_organizations(
    core: &Core,
    context: &RequestContext,
    deadline: Instant,
    entry: &mut AuditEntry,
    request: proto::ListOrganizationsRequest,
) -> Result<proto::ListOrganizationsResponse, Error> {
    let caller = core.gate.authenticate(context, entry).await?;
    let call = core.call(&caller, deadline, context);
    let query = convert::list_query(request)?;
    core.authorize(
        &caller,
        AccessRequest {
            acting_user: acting_user(context),
            ..AccessRequest::new(Rpc::ListOrganizations)
        },
    )?;
    let page = core.gateway.list_organizations(&call, &query).await?;
    Ok(convert::list_response(page, &query))
}

async fn update_organization(
    core: &Core,
    context: &RequestContext,
    deadline: Instant,
    entry: &mut AuditEntry,
    request: proto::UpdateOrganizationRequest,
) -> Result<proto::UpdateOrganizationResponse, Error> {
    let caller = core.gate.authenticate(context, entry).await?;
    let call = core.call(&caller, deadline, context);
    let (id, changes) = convert::update(request)?;
    let base = AccessRequest {
        acting_user: acting_user(context),
        ..AccessRequest::new(Rpc::UpdateOrganization)
    };
    core.authorize_organization(
        &call,
        &caller,
        base,
        &OrganizationRef::Id(id.clone()),
        entry,
    )
    .await?;
    // Moving an organization to a new external id must keep it inside the caller's scope.
    if let Some(Some(new_external_id)) = &changes.external_id {
        let facts = OrganizationFacts {
            id: Some(id.as_str()),
            external_id: Some(new_external_id.as_str()),
        };
        let decision = core.gate.decide(
            &caller.identity,
            &AccessRequest {
                organization: Some(facts),
                ..base
            },
        );
        into_result(decision)?;
    }
    let organization = core
        .gateway
        .update_organization(&call, &id, &changes)
        .await?;
    Ok(proto::UpdateOrganizationResponse {
        organization: Some(convert::organization(organization)),
    })
}

async fn delete_organization(
    core: &Core,
    context: &RequestContext,
    deadline: Instant,
    entry: &mut AuditEntry,
    request: proto::DeleteOrganizationRequest,
) -> Result<proto::DeleteOrganizationResponse, Error> {
    let caller = core.gate.authenticate(context, entry).await?;
    let call = core.call(&caller, deadline, context);
    let id = convert::organization_id("id", &request.id)?;
    let base = AccessRequest {
        acting_user: acting_user(context),
        ..AccessRequest::new(Rpc::DeleteOrganization)
    };
    core.authorize_organization(
        &call,
        &caller,
        base,
        &OrganizationRef::Id(id.clone()),
        entry,
    )
    .await?;
    core.gateway.delete_organization(&call, &id).await?;
    Ok(proto::DeleteOrganizationResponse {})
}

async fn ensure_organization(
    core: &Core,
    context: &RequestContext,
    deadline: Instant,
    entry: &mut AuditEntry,
    request: proto::EnsureOrganizationRequest,
) -> Result<proto::EnsureOrganizationResponse, Error> {
    let caller = core.gate.authenticate(context, entry).await?;
    let call = core.call(&caller, deadline, context);
    let new = convert::ensure_organization(request)?;
    let external_id = new.external_id.as_ref().map(|e| e.as_str());
    entry.organization(None, external_id);
    let facts = OrganizationFacts {
        id: None,
        external_id,
    };
    let decision = core.gate.decide(
        &caller.identity,
        &AccessRequest {
            organization: Some(facts),
            acting_user: acting_user(context),
            ..AccessRequest::new(Rpc::EnsureOrganization)
        },
    );
    into_result(decision)?;
    let (organization, created) = core.gateway.ensure_organization(&call, &new).await?;
    entry.organization(Some(organization.id.as_str()), None);
    Ok(proto::EnsureOrganizationResponse {
        organization: Some(convert::organization(organization)),
        created,
    })
}

// === impl PortalService ===

#[tonic::async_trait]
impl proto::portal_service_server::PortalService for PortalService {
    async fn generate_link(
        &self,
        request: Request<proto::GenerateLinkRequest>,
    ) -> RpcResult<proto::GenerateLinkResponse> {
        rpc!(self.0, Rpc::GenerateLink, request, generate_link)
    }

    async fn revoke_links(
        &self,
        request: Request<proto::RevokeLinksRequest>,
    ) -> RpcResult<proto::RevokeLinksResponse> {
        rpc!(self.0, Rpc::RevokeLinks, request, revoke_links)
    }

    async fn list_intents(
        &self,
        request: Request<proto::ListIntentsRequest>,
    ) -> RpcResult<proto::ListIntentsResponse> {
        rpc!(self.0, Rpc::ListIntents, request, list_intents)
    }
}

async fn generate_link(
    core: &Core,
    context: &RequestContext,
    deadline: Instant,
    entry: &mut AuditEntry,
    request: proto::GenerateLinkRequest,
) -> Result<proto::GenerateLinkResponse, Error> {
    let caller = core.gate.authenticate(context, entry).await?;
    let call = core.call(&caller, deadline, context);
    let allow_http_loopback = core.gateway.portal_settings().allow_http_loopback;
    let mut link_request = convert::link_request(request, allow_http_loopback)?;
    // The acting user becomes WorkOS's external_user_id, so RevokeLinks can cut them off later.
    if link_request.external_user_id.is_none() {
        link_request.external_user_id = acting_user(context).map(str::to_owned);
    }
    entry.link_request(
        link_request.intent.workos_name(),
        link_request.return_url.as_ref().map(RedirectUrl::origin),
        link_request.success_url.as_ref().map(RedirectUrl::origin),
    );
    let base = AccessRequest {
        intent: Some(link_request.intent),
        return_url: link_request.return_url.as_ref(),
        success_url: link_request.success_url.as_ref(),
        acting_user: acting_user(context),
        ..AccessRequest::new(Rpc::GenerateLink)
    };
    let fetched = core
        .authorize_organization(&call, &caller, base, &link_request.organization, entry)
        .await?;
    let organization_id = match fetched {
        Some(found) => found.id,
        None => {
            core.gateway
                .resolve(&call, &link_request.organization)
                .await?
        }
    };
    entry.organization(Some(organization_id.as_str()), None);
    let link = core
        .gateway
        .generate_link(&call, &organization_id, &link_request)
        .await?;
    entry.link(&link.link);
    Ok(proto::GenerateLinkResponse {
        portal_link: Some(convert::portal_link(link)),
    })
}

async fn revoke_links(
    core: &Core,
    context: &RequestContext,
    deadline: Instant,
    entry: &mut AuditEntry,
    request: proto::RevokeLinksRequest,
) -> Result<proto::RevokeLinksResponse, Error> {
    let caller = core.gate.authenticate(context, entry).await?;
    let call = core.call(&caller, deadline, context);
    let (organization, external_user_id) = convert::revoke(request)?;
    let base = AccessRequest {
        acting_user: acting_user(context),
        ..AccessRequest::new(Rpc::RevokeLinks)
    };
    let fetched = core
        .authorize_organization(&call, &caller, base, &organization, entry)
        .await?;
    let organization_id: OrganizationId = match fetched {
        Some(found) => found.id,
        None => core.gateway.resolve(&call, &organization).await?,
    };
    entry.organization(Some(organization_id.as_str()), None);
    core.gateway
        .revoke_links(&call, &organization_id, &external_user_id)
        .await?;
    Ok(proto::RevokeLinksResponse {
        organization_id: organization_id.as_str().to_owned(),
    })
}

async fn list_intents(
    core: &Core,
    context: &RequestContext,
    deadline: Instant,
    entry: &mut AuditEntry,
    _request: proto::ListIntentsRequest,
) -> Result<proto::ListIntentsResponse, Error> {
    let _ = deadline;
    let caller = core.gate.authenticate(context, entry).await?;
    core.authorize(
        &caller,
        AccessRequest {
            acting_user: acting_user(context),
            ..AccessRequest::new(Rpc::ListIntents)
        },
    )?;
    let intents = core
        .gateway
        .intents()
        .into_iter()
        .map(|info| proto::IntentInfo {
            intent: convert::intent_to_proto(info.intent) as i32,
            workos_name: info.intent.workos_name().to_owned(),
            description: info.intent.description().to_owned(),
            default_return_url: info.return_url.unwrap_or_default(),
            default_success_url: info.success_url.unwrap_or_default(),
        })
        .collect();
    Ok(proto::ListIntentsResponse { intents })
}

// === impl AccessService ===

#[tonic::async_trait]
impl proto::access_service_server::AccessService for AccessService {
    async fn check_access(
        &self,
        request: Request<proto::CheckAccessRequest>,
    ) -> RpcResult<proto::CheckAccessResponse> {
        rpc!(self.0, Rpc::CheckAccess, request, check_access)
    }
}

async fn check_access(
    core: &Core,
    context: &RequestContext,
    deadline: Instant,
    entry: &mut AuditEntry,
    request: proto::CheckAccessRequest,
) -> Result<proto::CheckAccessResponse, Error> {
    let caller = core.gate.authenticate(context, entry).await?;
    let call = core.call(&caller, deadline, context);
    let allow_http_loopback = core.gateway.portal_settings().allow_http_loopback;
    let check = convert::check_access(request, allow_http_loopback)?;
    // Anyone may ask about themselves; asking about another identity is a right of its own.
    let identity = match &check.identity {
        Some(other) if *other != caller.identity => {
            core.authorize(&caller, AccessRequest::new(Rpc::CheckAccess))?;
            other.clone()
        }
        _ => caller.identity.clone(),
    };
    let subject = Caller {
        identity: identity.clone(),
        proof: caller.proof,
    };
    let base = AccessRequest {
        intent: check.intent,
        return_url: check.return_url.as_ref(),
        success_url: check.success_url.as_ref(),
        acting_user: check.acting_user.as_deref(),
        ..AccessRequest::new(check.rpc)
    };
    // A dry run: the same decision the real call would get, reported instead of enforced.
    let mut scratch = AuditEntry::new(check.rpc, &context.trace.request_id, None);
    let outcome = match &check.organization {
        Some(organization) => core
            .authorize_organization(&call, &subject, base, organization, &mut scratch)
            .await
            .map(|_| ()),
        None => into_result(core.gate.decide(&identity, &base)),
    };
    let decision_rule = core
        .gate
        .policy_store()
        .current()
        .rule_for(&identity)
        .map(|r| r.name.clone());
    let (allowed, reason, explanation) = match outcome {
        Ok(()) => (
            true,
            "ALLOWED".to_owned(),
            format!(
                "allowed by rule {:?}",
                decision_rule.clone().unwrap_or_default()
            ),
        ),
        Err(Error::Denied {
            denial,
            explanation,
        }) => (false, denial.reason().to_owned(), explanation),
        Err(other) => return Err(other),
    };
    Ok(proto::CheckAccessResponse {
        allowed,
        identity,
        rule: decision_rule.unwrap_or_default(),
        reason,
        explanation,
    })
}
