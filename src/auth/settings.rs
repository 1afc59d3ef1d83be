//! How callers prove who they are, as configured: the raw `[auth]`, `[tls]` and `[audit]`
//! tables, their validation (problems go to the shared collector) and the typed settings.

use std::{path::PathBuf, time::Duration};

use secrecy::SecretSlice;
use serde::Deserialize;
use url::Url;

use super::{
    audit::AuditTarget,
    identity::{JwksSource, JwtSettings, MeshSettings, TokenDigest},
};
use crate::config::Problems;

/// How callers prove who they are.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// Static tokens (digests only).
    pub tokens: Vec<TokenDigest>,
    /// JWT verification.
    pub jwt: Option<JwtSettings>,
    /// Trusted mesh proxies.
    pub mesh: MeshSettings,
    /// mTLS termination by the gateway itself.
    pub tls: Option<TlsSettings>,
}

/// The gateway's own TLS (and optional client-certificate verification).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Server certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// Server private key, PEM.
    pub key_pem: SecretSlice<u8>,
    /// CA that client certificates must chain to; `None` serves TLS without client certificates.
    pub client_ca_pem: Option<Vec<u8>>,
    /// Required SPIFFE trust domain of client certificates.
    pub trust_domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    tokens: Vec<RawToken>,
    jwt: Option<RawJwt>,
    mesh: Option<RawMesh>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    identity: String,
    sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    jwks_file: Option<String>,
    jwks_url: Option<String>,
    issuer: String,
    audience: String,
    #[serde(default)]
    algorithms: Vec<String>,
    leeway: Option<String>,
    refresh_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMesh {
    #[serde(default)]
    trusted_proxies: Vec<String>,
    trust_domain: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    cert_file: String,
    key_file: String,
    client_ca_file: Option<String>,
    trust_domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    file: Option<String>,
    unauthenticated_summary_every: Option<String>,
}

fn jwt_algorithm(name: &str) -> Option<jsonwebtoken::Algorithm> {
    use jsonwebtoken::Algorithm as A;
    Some(match name {
        "RS256" => A::RS256,
        "RS384" => A::RS384,
        "RS512" => A::RS512,
        "PS256" => A::PS256,
        "PS384" => A::PS384,
        "PS512" => A::PS512,
        "ES256" => A::ES256,
        "ES384" => A::ES384,
        "EdDSA" => A::EdDSA,
        _ => return None,
    })
}

fn jwt_settings(problems: &mut Problems, jwt: RawJwt) -> Option<JwtSettings> {
    let jwks = match (jwt.jwks_file, jwt.jwks_url) {
        (Some(file), None) => Some(JwksSource::File(PathBuf::from(file))),
        (None, Some(url)) => problems.check(
            "auth.jwt.jwks_url",
            Url::parse(&url)
                .map_err(|_| format!("{url:?} is not an absolute URL"))
                .and_then(|u| match u.scheme() {
                    "https" | "http" => Ok(JwksSource::Url(u)),
                    _ => Err("must be an http(s) URL".into()),
                }),
        ),
        _ => {
            problems.push("auth.jwt: set exactly one of jwks_file or jwks_url");
            None
        }
    };
    if jwt.issuer.is_empty() {
        problems.push("auth.jwt.issuer: must not be empty");
    }
    if jwt.audience.is_empty() {
        problems.push("auth.jwt.audience: must not be empty");
    }
    let names = if jwt.algorithms.is_empty() {
        vec!["RS256".to_owned()]
    } else {
        jwt.algorithms
    };
    let mut algorithms = Vec::new();
    for (j, name) in names.iter().enumerate() {
        match jwt_algorithm(name) {
            Some(a) => algorithms.push(a),
            None => problems.push(format!(
                "auth.jwt.algorithms[{j}]: {name:?} is not an asymmetric JWS algorithm (RS256, ES256, EdDSA, ...)"
            )),
        }
    }
    let leeway = problems.duration(
        "auth.jwt.leeway",
        jwt.leeway.as_deref(),
        Duration::from_secs(30),
    );
    if leeway > Duration::from_secs(5 * 60) {
        problems.push("auth.jwt.leeway: must be at most 5m (clock skew, not token lifetime)");
    }
    let refresh_interval = problems.duration(
        "auth.jwt.refresh_interval",
        jwt.refresh_interval.as_deref(),
        Duration::from_secs(60),
    );
    jwks.map(|jwks| JwtSettings {
        jwks,
        issuer: jwt.issuer,
        audience: jwt.audience,
        algorithms,
        leeway,
        refresh_interval,
    })
}

impl RawAuth {
    /// Validates `[auth]` and `[tls]`; every problem goes to `problems`.
    pub fn validate(self, tls: Option<RawTls>, problems: &mut Problems) -> AuthSettings {
        auth_settings(problems, self, tls)
    }
}

impl RawAudit {
    /// How often unauthenticated calls are summed up into records (default 10 s).
    pub fn summary_every(&self, problems: &mut Problems) -> Duration {
        problems.duration(
            "audit.unauthenticated_summary_every",
            self.unauthenticated_summary_every.as_deref(),
            Duration::from_secs(10),
        )
    }

    /// Where audit records go.
    pub fn target(self) -> AuditTarget {
        match self.file {
            None => AuditTarget::Stdout,
            Some(path) => AuditTarget::File(PathBuf::from(path)),
        }
    }
}

fn auth_settings(problems: &mut Problems, raw: RawAuth, tls: Option<RawTls>) -> AuthSettings {
    let mut tokens = Vec::with_capacity(raw.tokens.len());
    for (i, token) in raw.tokens.iter().enumerate() {
        let at = format!("auth.tokens[{i}]");
        let identity = crate::auth::identity::token_identity(&token.identity);
        if let Err(why) = crate::auth::identity::check_identity(&identity) {
            problems.push(format!("{at}.identity: {why}"));
        }
        match decode_hex32(&token.sha256) {
            Some(sha256) => tokens.push(TokenDigest { identity, sha256 }),
            None => problems.push(format!(
                "{at}.sha256: must be the 64-hex-digit SHA-256 of the token (never the token itself)"
            )),
        }
    }
    let jwt = raw.jwt.and_then(|jwt| jwt_settings(problems, jwt));
    let mesh = raw.mesh.unwrap_or_default();
    let trusted_proxies = mesh
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, cidr)| {
            problems.check(
                &format!("auth.mesh.trusted_proxies[{i}]"),
                cidr.parse::<ipnet::IpNet>()
                    .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("{cidr:?} is not an address or CIDR such as 127.0.0.1/32")
                    })
                    .and_then(|net| {
                        // Trusting a whole address family would let anyone claim any identity.
                        if net.prefix_len() < 8 {
                            Err(format!(
                                "{cidr:?} trusts too much: name the sidecars, such as 127.0.0.1/32 (at least /8)"
                            ))
                        } else {
                            Ok(net)
                        }
                    }),
            )
        })
        .collect();
    let tls = tls.and_then(|tls| tls_settings(problems, tls));
    AuthSettings {
        tokens,
        jwt,
        mesh: MeshSettings {
            trusted_proxies,
            trust_domain: mesh.trust_domain,
        },
        tls,
    }
}

fn tls_settings(problems: &mut Problems, tls: RawTls) -> Option<TlsSettings> {
    let mut read = |setting: &str, path: &str| {
        problems.check(
            setting,
            std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}")),
        )
    };
    let cert_pem = read("tls.cert_file", &tls.cert_file);
    let key_pem = read("tls.key_file", &tls.key_file);
    let client_ca_pem = tls
        .client_ca_file
        .as_deref()
        .and_then(|path| read("tls.client_ca_file", path));
    if tls.trust_domain.is_some() && tls.client_ca_file.is_none() {
        problems.push("tls.trust_domain: needs tls.client_ca_file (client certificates)");
    }
    Some(TlsSettings {
        cert_pem: cert_pem?,
        key_pem: SecretSlice::from(key_pem?),
        client_ca_pem,
        trust_domain: tls.trust_domain,
    })
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
