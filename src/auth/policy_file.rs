//! The policy as written: the raw `[policy]` table (or a policy file), and the one parser that
//! both loading and reloading use, so a reload applies exactly the rules a restart would.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use serde::Deserialize;

use super::policy::{OrganizationScope, OriginRule, Pattern, Policy, Rpc, Rule};
use crate::{
    config::{ConfigError, Problems},
    domain::{Intent, OrganizationId},
};

/// Where the policy lives, for reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// The file.
    pub path: PathBuf,
    /// `true` for a dedicated policy file (`callers` at the top), `false` for the `[policy]`
    /// table of the main configuration file.
    pub dedicated: bool,
    /// Whether origins may be plain-http loopback (from `portal.allow_http_loopback`).
    pub allow_http_loopback: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default)]
    callers: Vec<RawRule>,
    reload_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default)]
    identities: Vec<String>,
    rpcs: Option<Vec<String>>,
    intents: Option<Vec<String>>,
    organizations: Option<Vec<String>>,
    #[serde(default)]
    return_origins: Vec<String>,
    #[serde(default)]
    require_acting_user: bool,
    requests_per_minute: Option<u32>,
    max_watchers: Option<u32>,
    invite_email_domains: Option<Vec<String>>,
}

impl RawPolicy {
    /// `reload_interval`, as written.
    pub fn reload_interval(&self) -> Option<&str> {
        self.reload_interval.as_deref()
    }
}

/// The `[policy]` table of a main configuration file, ignoring everything else in it.
#[derive(Debug, Deserialize)]
struct PolicyOnly {
    #[serde(default)]
    policy: RawPolicy,
    #[serde(flatten)]
    _rest: BTreeMap<String, toml::Value>,
}

/// Whether a main configuration file holds an inline policy.
pub fn text_has_policy(text: &str) -> bool {
    toml::from_str::<PolicyOnly>(text).is_ok_and(|p| !p.policy.callers.is_empty())
}

/// Reads the policy from its source. Reloads use this too, so a reload applies exactly the rules
/// a restart would.
pub fn read_policy(source: &PolicySource) -> Result<(Policy, Option<String>), ConfigError> {
    let name = source.path.display().to_string();
    let text = std::fs::read_to_string(&source.path).map_err(|e| ConfigError {
        problems: vec![format!("policy file {name}: cannot be read: {e}")],
    })?;
    let flat = |e: toml::de::Error| crate::config::describe_toml_error(&text, &e);
    let (raw, prefix) = if source.dedicated {
        let raw: RawPolicy = toml::from_str(&text).map_err(|e| ConfigError {
            problems: vec![format!("policy file {name}: {}", flat(e))],
        })?;
        (raw, "")
    } else {
        let raw: PolicyOnly = toml::from_str(&text).map_err(|e| ConfigError {
            problems: vec![format!("config file {name}: {}", flat(e))],
        })?;
        (raw.policy, "policy.")
    };
    let reload = raw.reload_interval.clone();
    let mut problems = Problems::default();
    let policy = policy_from_raw(&mut problems, prefix, raw, source.allow_http_loopback);
    if problems.is_empty() {
        Ok((policy, reload))
    } else {
        Err(ConfigError {
            problems: problems.into_problems(),
        })
    }
}

fn names_to_set<T: Ord + Copy>(
    problems: &mut Problems,
    at: &str,
    names: &[String],
    all: &[T],
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
) -> BTreeSet<T> {
    let mut set = BTreeSet::new();
    for (j, name) in names.iter().enumerate() {
        if name == "*" {
            set.extend(all.iter().copied());
        } else {
            match parse(name) {
                Some(value) => {
                    set.insert(value);
                }
                None => problems.push(format!("{at}[{j}]: unknown {what} {name:?}")),
            }
        }
    }
    set
}

/// Builds the policy from its raw table; `prefix` names where it was written (`policy.` or
/// nothing, for a policy file).
pub fn policy_from_raw(
    problems: &mut Problems,
    prefix: &str,
    raw: RawPolicy,
    loopback: bool,
) -> Policy {
    let mut rules = Vec::with_capacity(raw.callers.len());
    let mut seen_identities = BTreeSet::new();
    let mut seen_names = BTreeSet::new();
    for (i, caller) in raw.callers.into_iter().enumerate() {
        let at = format!("{prefix}callers[{i}]");
        if caller.name.trim().is_empty() {
            problems.push(format!("{at}.name: must not be empty"));
        } else if !seen_names.insert(caller.name.clone()) {
            problems.push(format!(
                "{at}.name: {:?} is used by another rule",
                caller.name
            ));
        }
        if caller.identities.is_empty() {
            problems.push(format!("{at}.identities: must list at least one identity"));
        }
        for identity in &caller.identities {
            if identity.trim().is_empty() {
                problems.push(format!(
                    "{at}.identities: must not contain an empty identity"
                ));
            } else if !seen_identities.insert(identity.clone()) {
                problems.push(format!(
                    "{at}.identities: {identity:?} already belongs to another rule"
                ));
            }
        }
        let rpcs = caller.rpcs.map(|names| {
            names_to_set(
                problems,
                &format!("{at}.rpcs"),
                &names,
                &Rpc::ALL,
                Rpc::from_name,
                "RPC",
            )
        });
        let intents = caller.intents.map(|names| {
            names_to_set(
                problems,
                &format!("{at}.intents"),
                &names,
                &Intent::ALL,
                Intent::from_workos_name,
                "intent",
            )
        });
        let organizations = match caller.organizations {
            None => {
                problems.push(format!(
                    "{at}.organizations: required; list WorkOS ids, \"external:<pattern>\" entries, or \"*\""
                ));
                OrganizationScope::Listed {
                    ids: BTreeSet::new(),
                    external_ids: Vec::new(),
                }
            }
            Some(entries) if entries.iter().any(|e| e == "*") => OrganizationScope::All,
            Some(entries) => {
                let mut ids = BTreeSet::new();
                let mut external_ids = Vec::new();
                for (j, entry) in entries.iter().enumerate() {
                    if let Some(pattern) = entry.strip_prefix("external:") {
                        if pattern.is_empty() {
                            problems.push(format!(
                                "{at}.organizations[{j}]: empty external-id pattern"
                            ));
                        }
                        external_ids.push(Pattern::new(pattern));
                    } else if OrganizationId::parse(entry).is_ok() {
                        ids.insert(entry.clone());
                    } else {
                        problems.push(format!(
                            "{at}.organizations[{j}]: {entry:?} is neither an organization id nor external:<pattern>"
                        ));
                    }
                }
                OrganizationScope::Listed { ids, external_ids }
            }
        };
        let return_origins = caller
            .return_origins
            .iter()
            .enumerate()
            .filter_map(|(j, origin)| {
                problems.check(
                    &format!("{at}.return_origins[{j}]"),
                    OriginRule::parse(origin, loopback),
                )
            })
            .collect();
        rules.push(Rule {
            name: caller.name,
            identities: caller.identities.into_iter().collect(),
            rpcs,
            intents,
            organizations,
            return_origins,
            require_acting_user: caller.require_acting_user,
            requests_per_minute: caller.requests_per_minute,
            max_watchers: caller
                .max_watchers
                .unwrap_or(crate::auth::policy::DEFAULT_MAX_WATCHERS),
            invite_email_domains: invite_domains(
                problems,
                &format!("{at}.invite_email_domains"),
                caller.invite_email_domains.as_deref(),
            ),
        });
        if caller.requests_per_minute == Some(0) {
            problems.push(format!("{at}.requests_per_minute: must be at least 1"));
        }
    }
    Policy { rules }
}

/// `invite_email_domains`: `"organization"`, `"*"`, or domains and `*.` patterns.
fn invite_domains(
    problems: &mut Problems,
    at: &str,
    entries: Option<&[String]>,
) -> crate::auth::policy::InviteDomains {
    let mut domains = crate::auth::policy::InviteDomains::default();
    let Some(entries) = entries else {
        return domains;
    };
    if entries.is_empty() {
        problems.push(format!(
            "{at}: list \"organization\", domains or \"*\"; leave it out to allow inviting nobody"
        ));
    }
    for (i, entry) in entries.iter().enumerate() {
        match entry.as_str() {
            "organization" => domains.organization = true,
            "*" => domains.any = true,
            pattern => {
                if let Some(pattern) = problems.check(
                    &format!("{at}[{i}]"),
                    crate::domain::invitation::DomainPattern::parse(pattern),
                ) {
                    domains.patterns.push(pattern);
                }
            }
        }
    }
    domains
}
