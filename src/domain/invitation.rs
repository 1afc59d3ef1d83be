//! Invitations: the IT admin WorkOS e-mails a setup link to, and the rules an address must pass
//! before anyone may invite it. An invitation to the wrong mailbox hands a customer's SSO to
//! whoever reads it, so addresses are parsed strictly and compared on their domain in one
//! canonical form (lower case, IDN as punycode).

use std::{fmt, time::SystemTime};

use sha2::{Digest as _, Sha256};

use super::Intent;

/// What an invitation lets the admin set up: WorkOS's invitation vocabulary, which differs from
/// the link intents (`directory_sync` is the links' `dsync`; there is no `audit_logs` or
/// `certificate_renewal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InvitationIntent {
    /// Single sign-on.
    Sso,
    /// Directory sync.
    DirectorySync,
    /// Log streams.
    LogStreams,
    /// Domain verification.
    DomainVerification,
    /// Bring your own key.
    BringYourOwnKey,
}

impl InvitationIntent {
    /// Every invitation intent.
    pub const ALL: [Self; 5] = [
        Self::Sso,
        Self::DirectorySync,
        Self::LogStreams,
        Self::DomainVerification,
        Self::BringYourOwnKey,
    ];

    /// The name WorkOS uses on the wire.
    pub fn workos_name(self) -> &'static str {
        match self {
            Self::Sso => "sso",
            Self::DirectorySync => "directory_sync",
            Self::LogStreams => "log_streams",
            Self::DomainVerification => "domain_verification",
            Self::BringYourOwnKey => "bring_your_own_key",
        }
    }

    /// The link intent that covers the same setup, for the policy's intent rules.
    pub fn link_intent(self) -> Intent {
        match self {
            Self::Sso => Intent::Sso,
            Self::DirectorySync => Intent::Dsync,
            Self::LogStreams => Intent::LogStreams,
            Self::DomainVerification => Intent::DomainVerification,
            Self::BringYourOwnKey => Intent::BringYourOwnKey,
        }
    }
}

/// The longest address accepted (RFC 5321's path limit less the angle brackets).
pub const ADDRESS_MAX: usize = 254;

/// An invitee's address, parsed strictly and normalised: one `@`, a dot-atom local part (no
/// quotes, comments or display names), and a domain in lower-case ASCII (IDN as punycode).
#[derive(Clone, PartialEq, Eq)]
pub struct Invitee {
    address: String,
    at: usize,
}

impl fmt::Debug for Invitee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The address is personal data: Debug shows only what the audit keeps.
        f.debug_struct("Invitee")
            .field("domain", &self.domain())
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl Invitee {
    /// Parses an address, explaining what is wrong with a bad one.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("is required".into());
        }
        if raw.len() > ADDRESS_MAX {
            return Err(format!("must be at most {ADDRESS_MAX} bytes"));
        }
        if raw.contains(['<', '>']) {
            return Err("must be a bare address, without a display name or angle brackets".into());
        }
        if raw
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
        {
            return Err("must not contain spaces, control or invisible characters".into());
        }
        if raw.contains(['(', ')']) {
            return Err("must not contain comments".into());
        }
        if raw.contains('"') || raw.contains('\\') {
            return Err("must not have a quoted local part".into());
        }
        if raw.matches('@').count() != 1 {
            return Err("must contain exactly one @".into());
        }
        let (local, domain) = raw.split_once('@').unwrap_or_default();
        check_local(local)?;
        let domain = canonical_domain(domain)?;
        let local = local.to_ascii_lowercase();
        let address = format!("{local}@{domain}");
        // The limit holds for what is sent: an IDN domain grows as punycode.
        if address.len() > ADDRESS_MAX {
            return Err(format!(
                "must be at most {ADDRESS_MAX} bytes once its domain is in punycode"
            ));
        }
        Ok(Self {
            at: local.len(),
            address,
        })
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The domain, lower-case ASCII.
    pub fn domain(&self) -> &str {
        &self.address[self.at + 1..]
    }

    /// What the audit keeps instead of the address: `sha256:` and 16 hex digits.
    pub fn fingerprint(&self) -> String {
        address_fingerprint(&self.address)
    }
}

/// `sha256:` and the first 16 hex digits of the SHA-256 of an address as given (lower-cased),
/// for audit records of addresses that could not even be parsed.
pub fn address_fingerprint(address: &str) -> String {
    let digest = Sha256::digest(address.trim().to_lowercase().as_bytes());
    format!("sha256:{}", super::hex(&digest[..8]))
}

/// The domain after the last `@` of an address as given, in canonical form, for audit records of
/// refused addresses; `None` when there is no `@` or what follows is no host name (then it may
/// be the whole address, which the audit must not hold).
pub fn raw_domain(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    if domain
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
    {
        return None;
    }
    canonical_domain(domain).ok()
}

/// Characters that render as nothing (soft hyphen, zero-width and joiner characters, variation
/// selectors, bidirectional controls, the byte-order mark, tags): IDNA would drop some of them
/// silently, so an address that holds any is refused rather than read as something else.
fn is_invisible(c: char) -> bool {
    crate::domain::is_hidden_or_control(c)
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

fn check_local(local: &str) -> Result<(), String> {
    // `%` and `!` are left out: old mail routing (`user%host@relay`, `host!user`) could carry an
    // address past the domain that is checked.
    const SPECIALS: &str = "#$&'*+-/=?^_`{|}~";
    if local.is_empty() || local.len() > 64 {
        return Err("must have 1 to 64 characters before the @".into());
    }
    if !local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || SPECIALS.contains(c))
    {
        return Err(
            "must have only ASCII letters, digits and !#$%&'*+-/=?^_`{|}~. before the @".into(),
        );
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("must not start or end with a dot, or have two in a row, before the @".into());
    }
    Ok(())
}

/// A host name in its canonical form: IDN to punycode, lower case, every label 1 to 63 letters,
/// digits or hyphens (not at either end), at least two labels, no trailing dot.
pub fn canonical_domain(domain: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("has a domain that {why}"));
    if domain.is_empty() {
        return bad("is empty");
    }
    if domain.ends_with('.') {
        return bad("ends with a dot");
    }
    let Ok(ascii) = idna::domain_to_ascii(domain) else {
        return bad("is not a valid internationalised domain name");
    };
    if ascii.len() > 253 {
        return bad("is longer than 253 bytes");
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return bad("has no dot");
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return bad("is not a host name");
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("is an IP address, not a host name");
    }
    Ok(ascii)
}

/// A domain an invitee's address may have: `acme.com` exactly, or `*.acme.com` for any
/// subdomain (not `acme.com` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPattern {
    domain: String,
    subdomains: bool,
}

impl DomainPattern {
    /// Parses a pattern, canonicalising its domain like an address's.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let (subdomains, domain) = match pattern.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if domain.contains('*') {
            return Err(format!(
                "{pattern:?}: `*` may only open a pattern, as in *.example.com"
            ));
        }
        let domain = canonical_domain(domain).map_err(|e| format!("{pattern:?} {e}"))?;
        Ok(Self { domain, subdomains })
    }

    /// Whether a canonical domain matches.
    pub fn matches(&self, domain: &str) -> bool {
        if self.subdomains {
            domain
                .strip_suffix(self.domain.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
        } else {
            domain == self.domain
        }
    }
}

/// An IT contact: an address WorkOS may e-mail about an organization's setup.
#[derive(Clone)]
pub struct ItContact {
    /// WorkOS id.
    pub id: String,
    /// The address, as WorkOS stores it.
    pub email: String,
    /// Creation time.
    pub created_at: Option<SystemTime>,
    /// Last change.
    pub updated_at: Option<SystemTime>,
}

impl fmt::Debug for ItContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItContact")
            .field("id", &self.id)
            .field("email", &address_fingerprint(&self.email))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
