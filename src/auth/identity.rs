//! Who is calling: turns a request's transport and metadata into a proven [`Caller`], or refuses.
//!
//! Three proofs, each enabled by configuration, tried in this order:
//! 1. the client certificate's single SPIFFE URI SAN, when the gateway terminates mTLS itself;
//! 2. a mesh sidecar's forwarded identity (`x-forwarded-client-cert` from Envoy/Istio, or
//!    `l5d-client-id` from Linkerd), believed only when the TCP peer is a trusted proxy;
//! 3. `authorization: Bearer <token>`: a JWT verified against a JWKS, or a static token whose
//!    SHA-256 digest is configured (compared in constant time; the token itself is never kept).
//!
//! **Invariant:** an identity carries its proof in its name (`token:`, `jwt:`, `spiffe://`,
//! `linkerd:`), so what one proof establishes can never be mistaken for what another does: a JWT
//! whose subject is `admin` is `jwt:admin`, never the static token identity `token:admin`.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{Mutex, RwLock};
use tonic::transport::CertificateDer;

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A static bearer token.
    StaticToken,
    /// A JWT verified against the JWKS.
    Jwt,
    /// Envoy/Istio `x-forwarded-client-cert` from a trusted proxy.
    ForwardedClientCert,
    /// Linkerd `l5d-client-id` from a trusted proxy.
    LinkerdIdentity,
    /// The client certificate of an mTLS connection the gateway terminated.
    ClientCertificate,
}

impl Proof {
    /// The name used in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StaticToken => "static_token",
            Self::Jwt => "jwt",
            Self::ForwardedClientCert => "forwarded_client_cert",
            Self::LinkerdIdentity => "linkerd_identity",
            Self::ClientCertificate => "client_certificate",
        }
    }
}

/// The prefixes that name an identity's proof, as policies write them.
pub const IDENTITY_PREFIXES: [&str; 4] = [TOKEN_PREFIX, JWT_PREFIX, "spiffe://", LINKERD_PREFIX];
/// A static token's identity: `token:<name>`.
pub const TOKEN_PREFIX: &str = "token:";
/// A JWT's identity: `jwt:<sub>`.
pub const JWT_PREFIX: &str = "jwt:";
/// A Linkerd identity: `linkerd:<l5d-client-id>`.
pub const LINKERD_PREFIX: &str = "linkerd:";

/// Checks an identity as a policy names it: a proof prefix, then a non-empty name without
/// whitespace or control characters.
pub fn check_identity(identity: &str) -> Result<(), String> {
    let Some(name) = IDENTITY_PREFIXES
        .iter()
        .find_map(|prefix| identity.strip_prefix(prefix))
    else {
        // Suggested escaped, as the identity itself is: a name holding a line break must not
        // spread one problem over several log lines.
        let token = format!("token:{identity}");
        let jwt = format!("jwt:{identity}");
        return Err(format!(
            "{identity:?} does not say how it is proven: write {token:?} for a static token, \
             {jwt:?} for a JWT subject, a spiffe:// id, or \"linkerd:<id>\""
        ));
    };
    if name.is_empty() {
        return Err(format!("{identity:?} names nobody after its prefix"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{identity:?} contains whitespace or control characters"
        ));
    }
    if identity.starts_with("spiffe://") {
        // A malformed SPIFFE id could never be proven: say so instead of never matching.
        check_spiffe_id(identity, None).map_err(|e| format!("{identity:?}: {}", e.description))?;
    }
    Ok(())
}

/// A static token's identity from its configured name, which may already carry `token:`.
pub fn token_identity(name: &str) -> String {
    let name = name.strip_prefix(TOKEN_PREFIX).unwrap_or(name);
    format!("{TOKEN_PREFIX}{name}")
}

/// A proven caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The identity the policy knows it by, with its proof's prefix (`token:billing`).
    pub identity: String,
    /// How it was proven.
    pub proof: Proof,
}

/// Why a caller could not be identified. Each becomes UNAUTHENTICATED with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
pub struct AuthError {
    /// ErrorInfo reason.
    pub reason: &'static str,
    /// For the caller; never contains the presented credential.
    pub description: String,
}

impl From<AuthError> for crate::error::Error {
    fn from(error: AuthError) -> Self {
        Self::Unauthenticated {
            reason: error.reason,
            description: error.description,
        }
    }
}

fn auth_error(reason: &'static str, description: impl Into<String>) -> AuthError {
    AuthError {
        reason,
        description: description.into(),
    }
}

/// What authentication reads from one request. The bearer token stays wrapped.
#[derive(Debug)]
pub struct RequestContext {
    bearer: Option<SecretString>,
    authorization_malformed: bool,
    /// Mesh identity headers; `Err` when present but not text (refused, never ignored).
    forwarded_client_cert: Option<Result<String, ()>>,
    linkerd_identity: Option<Result<String, ()>>,
    /// `x-acting-user`, if sent (validated by the caller of [`RequestContext::acting_user`]).
    acting_user: Option<Result<String, ()>>,
    /// The TCP peer.
    pub peer: Option<SocketAddr>,
    peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// `x-request-id`: the caller's, or a new one.
    pub request_id: String,
    /// The caller's W3C `traceparent`, when it sent a valid one.
    pub traceparent: Option<String>,
}

/// Longest acting user accepted.
const ACTING_USER_MAX: usize = 256;
/// Longest caller-supplied request id accepted; longer ones are replaced.
const REQUEST_ID_MAX: usize = 128;

impl RequestContext {
    /// Reads what authentication needs from a request.
    pub fn from_request<T>(request: &tonic::Request<T>) -> Self {
        let metadata = request.metadata();
        let text = |name: &str| {
            metadata
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let present = |name: &str| {
            metadata
                .get(name)
                .map(|v| v.to_str().map(str::to_owned).map_err(drop))
        };
        let authorization = metadata.get("authorization");
        let (bearer, authorization_malformed) = match authorization.map(|v| v.to_str()) {
            None => (None, false),
            Some(Ok(value)) => match value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
            {
                Some(token) if !token.trim().is_empty() => {
                    (Some(SecretString::from(token.trim().to_owned())), false)
                }
                _ => (None, true),
            },
            Some(Err(_)) => (None, true),
        };
        let acting_user = metadata.get("x-acting-user").map(|v| {
            v.to_str()
                .ok()
                .map(str::trim)
                .filter(|u| {
                    !u.is_empty()
                        && u.len() <= ACTING_USER_MAX
                        && u.chars().all(|c| !c.is_control())
                })
                .map(str::to_owned)
                .ok_or(())
        });
        let request_id = text("x-request-id")
            .filter(|id| {
                !id.is_empty()
                    && id.len() <= REQUEST_ID_MAX
                    && id.chars().all(|c| c.is_ascii_graphic())
            })
            .unwrap_or_else(crate::domain::random_uuid);
        Self {
            bearer,
            authorization_malformed,
            forwarded_client_cert: present("x-forwarded-client-cert"),
            linkerd_identity: present("l5d-client-id"),
            acting_user,
            peer: request.remote_addr(),
            peer_certs: request.peer_certs(),
            request_id,
            traceparent: text("traceparent").filter(|t| crate::telemetry::valid_traceparent(t)),
        }
    }

    /// The acting user, `Err` when the header is present but malformed.
    pub fn acting_user(&self) -> Result<Option<&str>, String> {
        match &self.acting_user {
            None => Ok(None),
            Some(Ok(user)) => Ok(Some(user)),
            Some(Err(())) => Err(format!(
                "must be 1 to {ACTING_USER_MAX} characters without control characters"
            )),
        }
    }
}

/// Where JWT verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS file (for example a mounted Kubernetes ConfigMap).
    File(PathBuf),
    /// A JWKS URL (for example the cluster's OIDC discovery `jwks_uri`).
    Url(url::Url),
}

/// JWT settings.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// Where the keys come from.
    pub jwks: JwksSource,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// The only algorithms accepted.
    pub algorithms: Vec<Algorithm>,
    /// Clock leeway for `exp` and `nbf`.
    pub leeway: Duration,
    /// The keys are fetched again on an unknown `kid` at most this often.
    pub refresh_interval: Duration,
}

/// Verifies JWTs against a cached JWKS.
#[derive(Debug)]
pub struct JwtVerifier {
    settings: JwtSettings,
    keys: RwLock<JwkSet>,
    last_refresh: Mutex<Option<tokio::time::Instant>>,
    http: reqwest::Client,
}

#[derive(Debug, serde::Deserialize)]
struct Claims {
    sub: String,
}

impl JwtVerifier {
    /// Loads the keys once; fails when they cannot be read.
    pub async fn new(settings: JwtSettings) -> Result<Self, String> {
        // The JWKS is usually an internal URL: no proxy, no redirects.
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(JWKS_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
        let keys = fetch(&settings.jwks, &http).await?;
        Ok(Self {
            settings,
            keys: RwLock::new(keys),
            last_refresh: Mutex::new(None),
            http,
        })
    }

    /// Verifies a token and returns its `sub`.
    pub async fn verify(&self, token: &str) -> Result<String, AuthError> {
        let invalid = |why: &str| auth_error("INVALID_JWT", format!("the JWT is not valid: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed header"))?;
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(invalid("algorithm not allowed"));
        }
        let kid = header.kid.ok_or_else(|| invalid("no key id (kid)"))?;
        let key = match self.key(&kid, header.alg).await {
            Some(key) => key,
            None => {
                self.refresh_if_due().await;
                self.key(&kid, header.alg)
                    .await
                    .ok_or_else(|| invalid("unknown key id"))?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.settings.leeway.as_secs();
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => invalid("expired"),
                K::ImmatureSignature => invalid("not yet valid"),
                K::InvalidAudience => invalid("wrong audience"),
                K::InvalidIssuer => invalid("wrong issuer"),
                K::InvalidSignature => invalid("bad signature"),
                K::MissingRequiredClaim(_) => invalid("a required claim is missing"),
                _ => invalid("rejected"),
            }
        })?;
        if data.claims.sub.is_empty() {
            return Err(invalid("empty subject"));
        }
        Ok(data.claims.sub)
    }

    /// The key for `kid`, if known and usable with `alg`.
    async fn key(&self, kid: &str, alg: Algorithm) -> Option<DecodingKey> {
        let keys = self.keys.read().await;
        let jwk = keys.find(kid)?;
        // A key that names its algorithm may only be used with that one.
        if let Some(declared) = jwk.common.key_algorithm
            && declared.to_string() != format!("{alg:?}")
        {
            return None;
        }
        DecodingKey::from_jwk(jwk).ok()
    }

    /// Fetches the keys again unless that happened less than `refresh_interval` ago, so a flood
    /// of tokens with made-up key ids cannot turn into a flood of JWKS fetches.
    async fn refresh_if_due(&self) {
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.settings.refresh_interval) {
            return;
        }
        *last = Some(tokio::time::Instant::now());
        match fetch(&self.settings.jwks, &self.http).await {
            Ok(keys) => *self.keys.write().await = keys,
            Err(error) => {
                tracing::warn!(error = %error, "JWKS refresh failed; keeping the old keys")
            }
        }
    }
}

/// How long fetching a JWKS may take, connecting included.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

async fn fetch(source: &JwksSource, http: &reqwest::Client) -> Result<JwkSet, String> {
    let bytes = match source {
        JwksSource::File(path) => tokio::fs::read(path)
            .await
            .map_err(|e| format!("cannot read JWKS file {}: {e}", path.display()))?,
        JwksSource::Url(url) => {
            let response = http
                .get(url.clone())
                .send()
                .await
                .map_err(|e| format!("cannot fetch JWKS: {}", describe(&e)))?;
            if !response.status().is_success() {
                return Err(format!("cannot fetch JWKS: answered {}", response.status()));
            }
            response
                .bytes()
                .await
                .map_err(|e| format!("cannot fetch JWKS: {}", describe(&e)))?
                .to_vec()
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| format!("JWKS is not valid: {e}"))
}

/// `error` and its causes, joined, for a log line.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A static token: its SHA-256 digest and the identity it proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDigest {
    /// The identity, `token:<name>` (see [`token_identity`]).
    pub identity: String,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
}

/// Mesh settings: whose forwarded identity headers to believe.
#[derive(Debug, Clone, Default)]
pub struct MeshSettings {
    /// Addresses of trusted proxies (sidecars).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Required SPIFFE trust domain, if any.
    pub trust_domain: Option<String>,
}

/// Authenticates requests.
#[derive(Debug, Default)]
pub struct Authenticator {
    /// Static tokens.
    pub tokens: Vec<TokenDigest>,
    /// JWT verification, if enabled.
    pub jwt: Option<JwtVerifier>,
    /// Mesh identity, if enabled.
    pub mesh: MeshSettings,
    /// SPIFFE trust domain for client certificates when the gateway terminates mTLS.
    pub client_cert_trust_domain: Option<String>,
}

impl Authenticator {
    /// Proves who is calling, or says why not.
    pub async fn authenticate(&self, context: &RequestContext) -> Result<Caller, AuthError> {
        if let Some(certs) = context.peer_certs.as_ref().filter(|c| !c.is_empty()) {
            let identity =
                spiffe_id_from_certificate(&certs[0], self.client_cert_trust_domain.as_deref())?;
            return Ok(Caller {
                identity,
                proof: Proof::ClientCertificate,
            });
        }
        let trusted_peer = context.peer.is_some_and(|peer| {
            self.mesh
                .trusted_proxies
                .iter()
                .any(|net| net.contains(&peer.ip()))
        });
        if context.forwarded_client_cert.is_some() || context.linkerd_identity.is_some() {
            if !trusted_peer {
                return Err(auth_error(
                    "UNTRUSTED_IDENTITY_HEADER",
                    "identity headers are accepted only from the configured trusted proxies",
                ));
            }
            let not_text = || {
                auth_error(
                    "INVALID_MESH_IDENTITY",
                    "a mesh identity header is not printable ASCII",
                )
            };
            if let Some(xfcc) = &context.forwarded_client_cert {
                let xfcc = xfcc.as_ref().map_err(|()| not_text())?;
                let identity = spiffe_id_from_xfcc(xfcc, self.mesh.trust_domain.as_deref())?;
                return Ok(Caller {
                    identity,
                    proof: Proof::ForwardedClientCert,
                });
            }
            if let Some(identity) = &context.linkerd_identity {
                let identity = identity.as_ref().map_err(|()| not_text())?;
                if identity.is_empty()
                    || identity.len() > 253
                    || !identity
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                {
                    return Err(auth_error(
                        "INVALID_MESH_IDENTITY",
                        "l5d-client-id is not a Linkerd identity",
                    ));
                }
                return Ok(Caller {
                    identity: format!("{LINKERD_PREFIX}{identity}"),
                    proof: Proof::LinkerdIdentity,
                });
            }
        }
        if context.authorization_malformed {
            return Err(auth_error(
                "MALFORMED_CREDENTIALS",
                "authorization must be `Bearer <token>`",
            ));
        }
        let Some(token) = &context.bearer else {
            return Err(auth_error(
                "MISSING_CREDENTIALS",
                "no caller identity: send authorization: Bearer <token>",
            ));
        };
        let token = token.expose_secret();
        if let Some(jwt) = &self.jwt
            && token.split('.').count() == 3
        {
            let subject = jwt.verify(token).await?;
            return Ok(Caller {
                identity: format!("{JWT_PREFIX}{subject}"),
                proof: Proof::Jwt,
            });
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare against every entry without stopping early, in constant time per entry.
        let mut found: Option<&TokenDigest> = None;
        for entry in &self.tokens {
            if bool::from(entry.sha256.ct_eq(&digest)) {
                found = Some(entry);
            }
        }
        found
            .map(|entry| Caller {
                identity: entry.identity.clone(),
                proof: Proof::StaticToken,
            })
            .ok_or_else(|| auth_error("INVALID_TOKEN", "the bearer token is not known"))
    }
}

mod spiffe;

#[cfg(test)]
use spiffe::split_unquoted;
use spiffe::{check_spiffe_id, spiffe_id_from_certificate, spiffe_id_from_xfcc};

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
