//! Checks for fuzzing and property tests. Each function feeds hostile input to one parser that
//! the outside world reaches and asserts what must hold of its answer, so that a fuzzer
//! (`fuzz/`, which builds the crate with `--features fuzzing`) or a property test (`cargo test`)
//! reports a panic or a broken promise the same way. Nothing here is an API: the module exists
//! only for those two and is hidden from the docs.
//!
//! The parsers: return and success URLs ([`redirect_url`]), mesh identity headers
//! ([`mesh_identity`]), page tokens and resume cursors ([`page_token`], [`resume_cursor`]), the
//! configuration file ([`config`]), a policy file ([`policy`]) and every request message
//! ([`request`]).

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::OnceLock,
};

use futures_util::FutureExt as _;
use prost::Message as _;
use prost_types::{
    DescriptorProto, FileDescriptorSet,
    field_descriptor_proto::{Label, Type},
};

use crate::{
    auth::{
        identity::{Authenticator, MeshSettings, Proof, RequestContext},
        policy::OriginRule,
        policy_file::{RawPolicy, check_whole, policy_from_raw},
    },
    config::{Config, Problems, describe_toml_error},
    domain::{Cursor, OrganizationPage, RedirectUrl},
    error::{Invalid, MAX_VIOLATIONS},
    grpc::convert,
    proto,
};

// === URLs ===

/// Return and success URLs: a URL accepted is what WorkOS will be sent, reads the same when
/// parsed again, and is allowed by the origin rule written from it; allowing plain-http
/// loopback only ever allows more.
pub fn redirect_url(input: &str) {
    let strict = RedirectUrl::parse(input, false);
    let loopback = RedirectUrl::parse(input, true);
    if let Ok(url) = &strict {
        assert_eq!(
            loopback.as_ref().map(RedirectUrl::as_str),
            Ok(url.as_str()),
            "allowing http loopback refused or changed {input:?}"
        );
    }
    for (parsed, allow_http_loopback) in [(strict, false), (loopback, true)] {
        match parsed {
            Ok(url) => accepted_url(input, &url, allow_http_loopback),
            Err(why) => assert!(!why.is_empty()),
        }
    }
}

fn accepted_url(input: &str, url: &RedirectUrl, allow_http_loopback: bool) {
    let again = RedirectUrl::parse(url.as_str(), allow_http_loopback)
        .unwrap_or_else(|why| panic!("{input:?} was accepted as {url:?}, which is not: {why}"));
    assert_eq!(again.as_str(), url.as_str(), "{input:?} is not stable");
    let host = url.host().trim_start_matches('[').trim_end_matches(']');
    assert!(!host.is_empty(), "{input:?} has no host");
    let loopback_host =
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" => assert!(
            allow_http_loopback && loopback_host,
            "{input:?}: plain http to a host that is not loopback"
        ),
        other => panic!("{input:?}: scheme {other:?} accepted"),
    }
    if !loopback_host {
        assert!(
            host.parse::<IpAddr>().is_err(),
            "{input:?}: an IP address accepted"
        );
    }
    let authority = url
        .as_str()
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
        .unwrap_or_default();
    assert!(!authority.contains('@'), "{input:?}: user info accepted");
    assert!(
        !url.as_str().contains('#'),
        "{input:?}: a fragment accepted"
    );
    if url.query().is_none() {
        let rule = OriginRule::parse(url.as_str(), allow_http_loopback)
            .unwrap_or_else(|why| panic!("{input:?}: its own origin rule is refused: {why}"));
        assert!(rule.allows(url), "{input:?}: not allowed by its own origin");
    }
}

// === Mesh identity ===

/// `x-forwarded-client-cert` and `l5d-client-id` as a mesh sidecar would send them (any bytes a
/// header value may hold): from a peer that is not a trusted proxy they never prove anyone;
/// from a trusted one they prove exactly the SPIFFE id or Linkerd identity they carry, or are
/// refused with a reason; and of an `x-forwarded-client-cert`, the element appended last decides.
pub fn mesh_identity(value: &[u8]) {
    for header in ["x-forwarded-client-cert", "l5d-client-id"] {
        for trust_domain in [None, Some("cluster.local")] {
            for trusted in [true, false] {
                let Some(answer) = authenticate_mesh(header, value, trust_domain, trusted) else {
                    return;
                };
                match answer {
                    Ok(caller) => {
                        assert!(trusted, "{header} believed from an untrusted peer");
                        let text = std::str::from_utf8(value).expect("a proven header is text");
                        proven_mesh_caller(header, text, trust_domain, &caller);
                    }
                    Err(error) => {
                        assert!(
                            !error.reason.is_empty()
                                && error
                                    .reason
                                    .chars()
                                    .all(|c| c.is_ascii_uppercase() || c == '_'),
                            "reason {:?} is not UPPER_SNAKE",
                            error.reason
                        );
                        assert!(!error.description.is_empty());
                        assert!(!error.description.contains('\n'));
                    }
                }
            }
        }
    }
}

/// Authenticates a request carrying only `header: value`, from a loopback peer that is (or is
/// not) a trusted proxy. `None` when `value` cannot be a header value at all.
fn authenticate_mesh(
    header: &'static str,
    value: &[u8],
    trust_domain: Option<&str>,
    trusted: bool,
) -> Option<Result<crate::auth::identity::Caller, crate::auth::identity::AuthError>> {
    let value = tonic::metadata::MetadataValue::try_from(value).ok()?;
    let mut request = tonic::Request::new(());
    request.metadata_mut().insert(header, value);
    request
        .extensions_mut()
        .insert(tonic::transport::server::TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000))),
        });
    let context = RequestContext::from_request(&request);
    let authenticator = Authenticator {
        mesh: MeshSettings {
            trusted_proxies: if trusted {
                vec![ipnet::IpNet::from(IpAddr::from(Ipv4Addr::LOCALHOST))]
            } else {
                Vec::new()
            },
            trust_domain: trust_domain.map(str::to_owned),
        },
        ..Authenticator::default()
    };
    // Mesh headers are read without any I/O: the answer is there at the first poll.
    Some(
        authenticator
            .authenticate(&context)
            .now_or_never()
            .expect("mesh identity needs no waiting"),
    )
}

fn proven_mesh_caller(
    header: &str,
    text: &str,
    trust_domain: Option<&str>,
    caller: &crate::auth::identity::Caller,
) {
    if header == "l5d-client-id" {
        assert_eq!(caller.proof, Proof::LinkerdIdentity);
        assert!(
            !text.is_empty()
                && text.len() <= 253
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "{text:?} accepted as a Linkerd identity"
        );
        assert!(caller.identity.ends_with(text), "{caller:?} from {text:?}");
        return;
    }
    assert_eq!(caller.proof, Proof::ForwardedClientCert);
    // The identity ends with the SPIFFE id, whatever prefix names the proof.
    let at = caller
        .identity
        .find("spiffe://")
        .unwrap_or_else(|| panic!("{caller:?} is not a SPIFFE id"));
    let id = &caller.identity[at..];
    assert!(text.contains(id), "{id:?} is not in {text:?}");
    let (domain, path) = id["spiffe://".len()..]
        .split_once('/')
        .unwrap_or_else(|| panic!("{id:?} has no path"));
    let allowed = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._/".contains(c))
    };
    assert!(allowed(domain) && allowed(path) && !path.contains("//"));
    assert!(!domain.chars().any(|c| c.is_ascii_uppercase()));
    if let Some(expected) = trust_domain {
        assert_eq!(domain, expected, "{id:?} outside the trust domain");
    }
    // The element appended last decides, whatever came before it: that is what a proxy with
    // `APPEND_FORWARD` relies on when it adds its own after the caller's.
    let appended = |element: &str| {
        authenticate_mesh(
            "x-forwarded-client-cert",
            format!("{text},{element}").as_bytes(),
            trust_domain,
            true,
        )
        .expect("still a header value")
    };
    let proxy = "spiffe://cluster.local/ns/proxy/sa/proxy";
    let by_proxy = appended(&format!(
        "By=spiffe://cluster.local/ns/gw/sa/gw;URI={proxy}"
    ));
    assert!(
        by_proxy.as_ref().is_ok_and(|c| c.identity.ends_with(proxy)),
        "an element appended to {text:?} did not decide: {by_proxy:?}"
    );
    let without_uri = appended("Hash=abc");
    assert!(
        without_uri.is_err(),
        "{text:?} still proved {without_uri:?} with an element after it"
    );
}

// === Tokens and cursors ===

/// A `ListOrganizations` page token, for each order and filter: refused with a violation on
/// `page_token` alone, or accepted only when it is exactly the token the gateway issues for that
/// position and query.
pub fn page_token(token: &str) {
    if token.is_empty() {
        return;
    }
    for order in [0, 1, 2] {
        for domains in [Vec::new(), vec!["example.com".to_owned()]] {
            let request = proto::ListOrganizationsRequest {
                page_size: 0,
                page_token: token.to_owned(),
                domains,
                order,
            };
            match convert::list_query(request) {
                Ok(query) => {
                    let cursor = query.cursor.clone().expect("a token gives a cursor");
                    let page = match cursor {
                        Cursor::After(id) => OrganizationPage {
                            organizations: Vec::new(),
                            before: None,
                            after: Some(id),
                        },
                        Cursor::Before(id) => OrganizationPage {
                            organizations: Vec::new(),
                            before: Some(id),
                            after: None,
                        },
                    };
                    let issued = convert::list_response(page, &query);
                    assert!(
                        issued.next_page_token == token || issued.previous_page_token == token,
                        "{token:?} accepted, but the gateway would write {issued:?}"
                    );
                }
                Err(invalid) => {
                    for violation in &invalid.violations {
                        assert_eq!(violation.field, "page_token", "{invalid:?}");
                    }
                }
            }
        }
    }
}

/// A `WatchSetup` resume cursor: refused with a violation on `resume_cursor` alone, or read as a
/// position that the gateway writes and reads back as itself.
pub fn resume_cursor(cursor: &str) {
    let request = proto::WatchSetupRequest {
        organization: Some(proto::watch_setup_request::Organization::ExternalId(
            "acme".to_owned(),
        )),
        intents: Vec::new(),
        resume_cursor: cursor.to_owned(),
    };
    match convert::watch_setup(request) {
        Ok((_, _, Some(position))) => {
            let written = position.encode();
            let again = crate::domain::setup::Position::decode(&written);
            assert_eq!(again, Ok(position), "{cursor:?} does not read back");
        }
        Ok((_, _, None)) => assert!(cursor.is_empty()),
        Err(invalid) => {
            for violation in &invalid.violations {
                assert_eq!(violation.field, "resume_cursor", "{invalid:?}");
            }
        }
    }
}

// === Configuration and policy ===

/// The API key configuration loading is given; never to be echoed.
pub const API_KEY: &str = "sk_test_fuzzing_4fd1c2e8b7a9";

/// A configuration file: loads, or is refused with one line per problem, none echoing the API
/// key. Files that name other files (`policy_file`, `[tls]`) are skipped, so the fuzzer never
/// reads the machine's files.
pub fn config(text: &str) {
    if let Ok(table) = toml::from_str::<toml::Table>(text)
        && (table.contains_key("policy_file") || table.contains_key("tls"))
    {
        return;
    }
    let env = |name: &str| (name == "WORKOS_API_KEY").then(|| API_KEY.to_owned());
    match Config::load(text, env) {
        Ok(config) => check_policy(&config.policy, None),
        Err(error) => {
            assert!(!error.problems.is_empty());
            for problem in &error.problems {
                one_line(problem);
                if !text.contains(API_KEY) {
                    assert!(!problem.contains(API_KEY), "the key echoed: {problem}");
                }
            }
        }
    }
}

/// A dedicated policy file: read into a policy whose rules each have their own identities, or
/// refused with one line per problem, each naming the rule and field, or the line and column of
/// a syntax error, or saying that the file looks cut short.
pub fn policy(text: &str) {
    if let Err(cut) = check_whole("policy file", "fuzzed", text) {
        for problem in &cut.problems {
            one_line(problem);
        }
        return;
    }
    for allow_http_loopback in [false, true] {
        let raw: RawPolicy = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(error) => {
                let line = describe_toml_error(text, &error);
                one_line(&line);
                return;
            }
        };
        let callers = toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|t| t.get("callers").and_then(|c| c.as_array()).map(Vec::len))
            .unwrap_or_default();
        let mut problems = Problems::default();
        let policy = policy_from_raw(&mut problems, "", raw, allow_http_loopback);
        let problems = problems.into_problems();
        if problems.is_empty() {
            check_policy(&policy, Some(callers));
        }
        for problem in &problems {
            one_line(problem);
            assert!(names_a_rule_field(problem), "names no field: {problem}");
        }
    }
}

/// Every rule has identities, and no identity belongs to two rules (which rule applies would be
/// ambiguous).
fn check_policy(policy: &crate::auth::policy::Policy, callers: Option<usize>) {
    if let Some(callers) = callers {
        assert_eq!(policy.rules.len(), callers);
    }
    let mut seen = HashSet::new();
    for rule in &policy.rules {
        assert!(!rule.identities.is_empty(), "{rule:?}");
        for identity in &rule.identities {
            assert!(seen.insert(identity), "{identity:?} in two rules");
        }
    }
}

/// `callers[N]` then a field (`.name`, `.organizations[2]`, ...) and `: ` and the problem.
pub fn names_a_rule_field(problem: &str) -> bool {
    let Some((setting, why)) = problem.split_once(": ") else {
        return false;
    };
    let Some(rest) = setting.strip_prefix("callers[") else {
        return false;
    };
    let Some((index, field)) = rest.split_once(']') else {
        return false;
    };
    !why.is_empty()
        && index.parse::<usize>().is_ok()
        && field.starts_with('.')
        && field[1..]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.[]".contains(c))
}

fn one_line(problem: &str) {
    assert!(!problem.is_empty());
    assert!(
        !problem.contains(['\n', '\r']),
        "a problem over several lines: {problem:?}"
    );
}

// === Request messages ===

/// The request messages [`request`] reads, in the order its first byte picks them.
pub const REQUESTS: [&str; 16] = [
    "CreateOrganizationRequest",
    "EnsureOrganizationRequest",
    "GetOrganizationRequest",
    "DeleteOrganizationRequest",
    "UpdateOrganizationRequest",
    "ListOrganizationsRequest",
    "GenerateLinkRequest",
    "RevokeLinksRequest",
    "CheckAccessRequest",
    "GetSetupStatusRequest",
    "WatchSetupRequest",
    "ListItContactsRequest",
    "AddItContactRequest",
    "RemoveItContactRequest",
    "InviteItContactRequest",
    "RevokeInvitationRequest",
];

/// A request message as it arrives: the first byte picks the message (see [`REQUESTS`]; its top
/// bit sets `portal.allow_http_loopback`), the rest is its protobuf encoding. Whatever decodes
/// converts without panicking, and a refusal is bounded and names only real proto field paths,
/// each once. Returns whether the message decoded.
pub fn request(data: &[u8]) -> bool {
    let Some((&selector, bytes)) = data.split_first() else {
        return false;
    };
    let loopback = selector & 0x80 != 0;
    let index = usize::from(selector & 0x7f) % REQUESTS.len();
    let answer = match index {
        0 => decode(bytes).map(|m| convert::new_organization(m).err()),
        1 => decode(bytes).map(|m| convert::ensure_organization(m).err()),
        2 => decode(bytes).map(|m| convert::get_organization(m).err()),
        3 => decode(bytes)
            .map(|m: proto::DeleteOrganizationRequest| convert::organization_id("id", &m.id).err()),
        4 => decode(bytes).map(|m| convert::update(m).err()),
        5 => decode(bytes).map(|m| convert::list_query(m).err()),
        6 => decode(bytes).map(|m| convert::link_request(m, loopback).err()),
        7 => decode(bytes).map(|m| convert::revoke(m).err()),
        8 => decode(bytes).map(|m| convert::check_access(m, loopback).err()),
        9 => decode(bytes).map(|m| convert::get_setup_status(m).err()),
        10 => decode(bytes).map(|m| convert::watch_setup(m).err()),
        11 => decode(bytes).map(|m| convert::list_it_contacts(m).err()),
        12 => decode(bytes).map(|m| convert::add_it_contact(m).err()),
        13 => decode(bytes).map(|m| convert::remove_it_contact(m).err()),
        14 => decode(bytes).map(|m| convert::invite_it_contact(m).err()),
        _ => decode(bytes).map(|m| convert::revoke_invitation(m).err()),
    };
    if let Some(Some(invalid)) = &answer {
        check_refusal(REQUESTS[index], invalid);
    }
    answer.is_some()
}

fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Option<M> {
    M::decode(bytes).ok()
}

/// A refusal lists at least one and at most `MAX_VIOLATIONS` problems (then one that counts the
/// rest), each on a real field path of `message`, with a short description, and none twice: a
/// problem found twice means a part of the request was checked twice, work that a request could
/// multiply.
fn check_refusal(message: &str, invalid: &Invalid) {
    let violations = &invalid.violations;
    assert!(
        !violations.is_empty(),
        "{message}: refused without a reason"
    );
    assert!(violations.len() <= MAX_VIOLATIONS + 1, "{invalid:?}");
    let mut seen = HashSet::new();
    for (i, violation) in violations.iter().enumerate() {
        assert!(
            seen.insert((&violation.field, &violation.description)),
            "{message}: {violation:?} reported twice in {invalid:?}"
        );
        assert!(!violation.description.is_empty());
        assert!(
            violation.description.chars().count() <= 203,
            "{violation:?}"
        );
        let summary = i == MAX_VIOLATIONS && violation.field == "request";
        assert!(
            summary || is_field_path(message, &violation.field),
            "{message}: {:?} is not one of its field paths",
            violation.field
        );
    }
}

/// The descriptors of `adminportal.v1` and what it imports, read once.
pub fn descriptors() -> &'static FileDescriptorSet {
    // Read-only and derived from a constant: a cache, not state that tests could share.
    static SET: OnceLock<FileDescriptorSet> = OnceLock::new();
    SET.get_or_init(|| {
        FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).expect("the descriptor set")
    })
}

/// The message named `name` (`adminportal.v1.` may be left out).
pub fn message_descriptor(name: &str) -> Option<&'static DescriptorProto> {
    let name = name.trim_start_matches('.');
    let full = if name.contains('.') {
        name.to_owned()
    } else {
        format!("adminportal.v1.{name}")
    };
    descriptors().file.iter().find_map(|file| {
        let package = file.package();
        file.message_type.iter().find_map(|message| {
            find_nested(message, &format!("{package}.{}", message.name()), &full)
        })
    })
}

fn find_nested<'a>(
    message: &'a DescriptorProto,
    path: &str,
    wanted: &str,
) -> Option<&'a DescriptorProto> {
    if path == wanted {
        return Some(message);
    }
    message
        .nested_type
        .iter()
        .find_map(|nested| find_nested(nested, &format!("{path}.{}", nested.name()), wanted))
}

/// Whether `path` (`organization.domains[3].domain`, `metadata`) names a field of `message`:
/// each segment a field of the one before, indexed only where the field is repeated.
fn is_field_path(message: &str, path: &str) -> bool {
    let mut current = message_descriptor(message);
    for segment in path.split('.') {
        let Some(descriptor) = current else {
            return false;
        };
        let (name, indexed) = match segment.split_once('[') {
            Some((name, index)) => {
                let Some(digits) = index.strip_suffix(']') else {
                    return false;
                };
                if digits.parse::<usize>().is_err() {
                    return false;
                }
                (name, true)
            }
            None => (segment, false),
        };
        let Some(field) = descriptor.field.iter().find(|f| f.name() == name) else {
            return false;
        };
        if indexed && field.label() != Label::Repeated {
            return false;
        }
        current = match field.r#type() {
            Type::Message => message_descriptor(field.type_name()),
            _ => None,
        };
    }
    true
}

#[cfg(test)]
pub(crate) mod properties;
