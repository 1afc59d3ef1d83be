//! SPIFFE ids: from an Envoy `x-forwarded-client-cert` header, from a client certificate's URI
//! SAN, and their syntax.

use tonic::transport::CertificateDer;

use super::{AuthError, auth_error};

/// The SPIFFE id in an Envoy `x-forwarded-client-cert` header: the last element (the one the
/// nearest proxy added) must carry exactly one `URI=`.
pub(super) fn spiffe_id_from_xfcc(
    header: &str,
    trust_domain: Option<&str>,
) -> Result<String, AuthError> {
    let open_quote = || {
        auth_error(
            "INVALID_MESH_IDENTITY",
            "x-forwarded-client-cert leaves a quote open",
        )
    };
    let element = split_unquoted(header, ',')
        .ok_or_else(open_quote)?
        .into_iter()
        .last()
        .unwrap_or_default();
    let uris: Vec<String> = split_unquoted(element, ';')
        .ok_or_else(open_quote)?
        .into_iter()
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| key.trim().eq_ignore_ascii_case("uri"))
        .map(|(_, value)| value.trim().trim_matches('"').to_owned())
        .collect();
    match uris.as_slice() {
        [uri] => check_spiffe_id(uri, trust_domain),
        [] => Err(auth_error(
            "INVALID_MESH_IDENTITY",
            "x-forwarded-client-cert carries no URI",
        )),
        _ => Err(auth_error(
            "INVALID_MESH_IDENTITY",
            "x-forwarded-client-cert carries more than one URI",
        )),
    }
}

/// Splits on `separator` outside double quotes; a backslash escapes only inside them, as in
/// Envoy's format. `None` when a quote is left open: with `APPEND_FORWARD` the client writes what
/// comes before its proxy's element, and an open quote (or an escape outside quotes) would join
/// that element to the client's, whose URI would then be the only one.
pub(super) fn split_unquoted(text: &str, separator: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    parts.push(&text[start..]);
    Some(parts)
}

/// The SPIFFE id of a client certificate: exactly one URI SAN.
pub(super) fn spiffe_id_from_certificate(
    der: &CertificateDer<'_>,
    trust_domain: Option<&str>,
) -> Result<String, AuthError> {
    let bad = |why: &str| {
        auth_error(
            "INVALID_CLIENT_CERTIFICATE",
            format!("client certificate: {why}"),
        )
    };
    let (_, certificate) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|_| bad("cannot be parsed"))?;
    let names = certificate
        .subject_alternative_name()
        .map_err(|_| bad("malformed subject alternative names"))?
        .map(|ext| ext.value.general_names.clone())
        .unwrap_or_default();
    let uris: Vec<&str> = names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [uri] => check_spiffe_id(uri, trust_domain).map_err(|e| bad(&e.description)),
        [] => Err(bad("has no URI SAN")),
        _ => Err(bad("has more than one URI SAN")),
    }
}

/// Checks `spiffe://trust-domain/path` and the trust domain.
pub(super) fn check_spiffe_id(uri: &str, trust_domain: Option<&str>) -> Result<String, AuthError> {
    let bad = |why: String| auth_error("INVALID_SPIFFE_ID", why);
    let rest = uri
        .strip_prefix("spiffe://")
        .ok_or_else(|| bad("the identity is not a spiffe:// id".into()))?;
    let (domain, path) = rest
        .split_once('/')
        .ok_or_else(|| bad("the SPIFFE id has no path".into()))?;
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._/".contains(c))
    };
    if !valid(domain)
        || !valid(path)
        || domain.chars().any(|c| c.is_ascii_uppercase())
        || path.contains("//")
    {
        return Err(bad("the SPIFFE id is malformed".into()));
    }
    if let Some(expected) = trust_domain
        && domain != expected
    {
        return Err(bad(format!(
            "the SPIFFE id is not in trust domain {expected}"
        )));
    }
    Ok(uri.to_owned())
}
