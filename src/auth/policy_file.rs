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
    let what = if source.dedicated {
        "policy file"
    } else {
        "config file"
    };
    if source.dedicated && text.trim().is_empty() {
        // What a rewrite in place looks like before anything is written.
        return Err(ConfigError {
            problems: vec![format!(
                "policy file {name}: is empty; to allow nobody, write a file that says so (a \
                 comment will do)"
            )],
        });
    }
    check_whole(what, &name, &text)?;
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

/// Refuses a file that does not end with a line break: whoever wrote it has not finished, or it
/// was cut short, and its last rule may have lost the lines that narrow it. The rules in force
/// stay until it is written whole.
pub fn check_whole(what: &str, name: &str, text: &str) -> Result<(), ConfigError> {
    if text.is_empty() || text.ends_with('\n') {
        return Ok(());
    }
    Err(ConfigError {
        problems: vec![format!(
            "{what} {name}: does not end with a line break, so it may be cut short; write it \
             whole (to a new file, then rename it over the old one)"
        )],
    })
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
        for (j, identity) in caller.identities.iter().enumerate() {
            if let Err(why) = crate::auth::identity::check_identity(identity) {
                problems.push(format!("{at}.identities[{j}]: {why}"));
            } else if !seen_identities.insert(identity.clone()) {
                problems.push(format!(
                    "{at}.identities[{j}]: {identity:?} already belongs to another rule"
                ));
            }
        }
        // Every dimension that narrows a rule is written out, "*" included: a rule that lost a
        // line (a file cut short while being written) is refused instead of allowing more.
        let rpcs = match caller.rpcs {
            None => {
                problems.push(format!(
                    "{at}.rpcs: required; list method names, or \"*\" for all"
                ));
                Some(BTreeSet::new())
            }
            Some(names) if names.iter().any(|n| n == "*") && names.len() == 1 => None,
            Some(names) => Some(names_to_set(
                problems,
                &format!("{at}.rpcs"),
                &names,
                &Rpc::ALL,
                Rpc::from_name,
                "RPC",
            )),
        };
        let intents = match caller.intents {
            None => {
                problems.push(format!(
                    "{at}.intents: required; list intents, [] for none, or \"*\" for all"
                ));
                Some(BTreeSet::new())
            }
            Some(names) if names.iter().any(|n| n == "*") && names.len() == 1 => None,
            Some(names) => Some(names_to_set(
                problems,
                &format!("{at}.intents"),
                &names,
                &Intent::ALL,
                Intent::from_workos_name,
                "intent",
            )),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy file as an operator might write it: the narrow rule last, the keys that narrow
    /// it most at its end.
    const FILE: &str = r#"reload_interval = "2s"

[[callers]]
name = "support"
identities = ["token:support"]
rpcs = ["*"]
intents = ["*"]
organizations = ["*"]

[[callers]]
name = "billing"
identities = ["jwt:system:serviceaccount:billing:billing"]
organizations = ["external:cust-*"]
return_origins = ["https://billing.example.com/settings"]
rpcs = ["GenerateLink", "GetOrganization"]
intents = ["sso"]
"#;

    fn read(text: &str) -> Result<Policy, ConfigError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "portal-gateway-policy-cut-{}-{n}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("write");
        let result = read_policy(&PolicySource {
            path: path.clone(),
            dedicated: true,
            allow_http_loopback: false,
        });
        let _ = std::fs::remove_file(&path);
        result.map(|(policy, _)| policy)
    }

    #[test]
    fn a_file_cut_short_anywhere_never_allows_more_than_the_whole_file() {
        let whole = read(FILE).expect("the whole file");
        let mut accepted = 0;
        for cut in 1..FILE.len() {
            let Ok(policy) = read(&FILE[..cut]) else {
                continue;
            };
            accepted += 1;
            for rule in &policy.rules {
                let full = whole
                    .rules
                    .iter()
                    .find(|r| r.name == rule.name)
                    .expect("a rule of the whole file");
                assert_eq!(
                    (
                        &rule.identities,
                        &rule.rpcs,
                        &rule.intents,
                        &rule.organizations
                    ),
                    (
                        &full.identities,
                        &full.rpcs,
                        &full.intents,
                        &full.organizations
                    ),
                    "cut at byte {cut}: {:?}",
                    &FILE[..cut]
                );
            }
        }
        // Only the cuts at the end of a whole rule (or before any) are accepted.
        assert!(accepted >= 2, "{accepted}");
    }

    #[test]
    fn an_empty_file_is_refused_and_a_comment_allows_nobody() {
        let error = read("").expect_err("empty");
        assert!(error.to_string().contains("is empty"), "{error}");
        let nobody = read("# nobody may call yet\n").expect("a file that says so");
        assert!(nobody.rules.is_empty());
    }

    #[test]
    fn an_unfinished_last_line_is_named_and_refused() {
        let cut = &FILE[..FILE.len() - 1];
        let error = read(cut).expect_err("no line break at the end");
        assert!(
            error.to_string().contains("does not end with a line break"),
            "{error}"
        );
    }

    #[test]
    fn identities_must_say_how_they_are_proven() {
        let text = FILE.replace("\"token:support\"", "\"support\"");
        let error = read(&text).expect_err("a bare identity");
        assert!(
            error
                .to_string()
                .contains("callers[0].identities[0]: \"support\" does not say how it is proven"),
            "{error}"
        );
        for fine in [
            "token:a",
            "jwt:system:serviceaccount:a:b",
            "spiffe://td/ns/a",
            "linkerd:a.b",
        ] {
            assert!(
                crate::auth::identity::check_identity(fine).is_ok(),
                "{fine}"
            );
        }
        let multi_line = crate::auth::identity::check_identity("a\nb").expect_err("no prefix");
        assert!(
            !multi_line.contains('\n'),
            "one problem, one line: {multi_line}"
        );
        for bad in ["token:", "jwt:a b", "admin", "spiffe:/td", "linkerd:\u{7}"] {
            assert!(crate::auth::identity::check_identity(bad).is_err(), "{bad}");
        }
    }
}
