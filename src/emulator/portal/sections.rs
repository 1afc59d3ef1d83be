//! The body of each intent's portal page: what is set up so far and the form for the next step.

use std::fmt::Write as _;

use super::{Form, Session, escape};
use crate::emulator::{
    setup::{
        ConnectionState, KEY_PROVIDERS, PORTAL_DSYNC_PROVIDERS, PORTAL_LOG_STREAM_TYPES,
        PORTAL_SSO_PROVIDERS,
    },
    state::{DomainState, Store},
};

/// What each intent is called on the menu.
const TITLES: [(&str, &str); 7] = [
    ("sso", "Set up Single Sign-On"),
    ("dsync", "Set up Directory Sync"),
    ("audit_logs", "View audit logs"),
    ("log_streams", "Stream audit logs"),
    ("domain_verification", "Verify domains"),
    ("certificate_renewal", "Renew a SAML certificate"),
    ("bring_your_own_key", "Bring your own encryption key"),
];

/// The menu an intent-less link opens: one link per intent it offers, each to that intent's
/// flow.
pub(super) fn menu(session: &Session) -> String {
    let mut html = String::from("<nav id=\"intents\">\n");
    for (intent, title) in TITLES {
        if !session.offers(intent) {
            continue;
        }
        let _ = writeln!(
            html,
            "<a id=\"intent-{intent}\" href=\"{}\">{title}</a>",
            escape(&session.launch_url(Some(intent)))
        );
    }
    html.push_str("</nav>\n");
    html
}

pub(super) fn section(store: &Store, session: &Session, intent: &str, previous: &Form) -> String {
    let organization_id = session.link.organization_id.as_str();
    let secret = format!(
        "<input type=\"hidden\" name=\"secret\" value=\"{}\">",
        escape(&session.secret)
    );
    match intent {
        "sso" => sso(store, organization_id, &secret, previous),
        "dsync" => dsync(store, organization_id, &secret, previous),
        "domain_verification" => domains(store, organization_id, &secret, previous),
        "log_streams" => log_streams(store, organization_id, &secret, previous),
        "audit_logs" => audit_logs(store, organization_id),
        "certificate_renewal" => certificate_renewal(store, organization_id, &secret),
        _ => bring_your_own_key(&secret, previous),
    }
}

/// A `<select>` of `(value, label)` options with the previous choice selected.
fn select(id: &str, name: &str, options: &[(&str, &str)], previous: Option<&str>) -> String {
    let mut html = format!("<select id=\"{id}\" name=\"{name}\">");
    for (value, label) in options {
        let selected = if previous == Some(*value) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            html,
            "<option value=\"{}\"{selected}>{}</option>",
            escape(value),
            escape(label)
        );
    }
    html.push_str("</select>");
    html
}

fn sso(store: &Store, organization_id: &str, secret: &str, previous: &Form) -> String {
    let mut html = String::from("<h2>Single Sign-On</h2>\n");
    let connections: Vec<_> = store
        .connections
        .values()
        .rev()
        .filter(|c| c.organization_id == organization_id)
        .collect();
    if !connections.is_empty() {
        html.push_str("<ul id=\"connections\">\n");
        for c in &connections {
            let _ = writeln!(
                html,
                "<li><code>{}</code> {}: <strong>{}</strong></li>",
                escape(&c.id),
                escape(&c.connection_type),
                c.state.as_str()
            );
        }
        html.push_str("</ul>\n");
    }
    if let Some(pending) = connections
        .iter()
        .find(|c| c.state == ConnectionState::Validating)
    {
        let _ = writeln!(
            html,
            "<form id=\"test-form\" method=\"post\" action=\"/portal/sso/test\">{secret}\
             <input type=\"hidden\" name=\"connection_id\" value=\"{}\">\
             <p>The {} connection is configured. Sign in once through it to finish.</p>\
             <button id=\"test-sign-in\" type=\"submit\">Test sign-in</button></form>",
            escape(&pending.id),
            escape(&pending.connection_type),
        );
    }
    let _ = writeln!(
        html,
        "<form id=\"sso-form\" method=\"post\" action=\"/portal/sso\">{secret}\
         <label for=\"provider\">Identity provider</label>{}\
         <label for=\"metadata-url\">Identity provider metadata URL</label>\
         <input id=\"metadata-url\" name=\"metadata_url\" type=\"text\" inputmode=\"url\" \
         placeholder=\"https://idp.example.com/saml/metadata.xml\" value=\"{}\">\
         <button id=\"submit\" type=\"submit\">Save configuration</button></form>",
        select(
            "provider",
            "provider",
            &PORTAL_SSO_PROVIDERS,
            previous.get("provider")
        ),
        escape(previous.get("metadata_url").unwrap_or_default()),
    );
    html
}

fn dsync(store: &Store, organization_id: &str, secret: &str, previous: &Form) -> String {
    let mut html = String::from("<h2>Directory Sync</h2>\n");
    let directories: Vec<_> = store
        .directories
        .values()
        .rev()
        .filter(|d| d.organization_id == organization_id)
        .collect();
    if !directories.is_empty() {
        html.push_str("<ul id=\"directories\">\n");
        for d in directories {
            let _ = writeln!(
                html,
                "<li><code>{}</code> {}: <strong>{}</strong></li>",
                escape(&d.id),
                escape(&d.directory_type),
                d.state.as_str()
            );
        }
        html.push_str("</ul>\n");
    }
    let _ = writeln!(
        html,
        "<form id=\"dsync-form\" method=\"post\" action=\"/portal/dsync\">{secret}\
         <label for=\"provider\">Directory provider</label>{}\
         <button id=\"submit\" type=\"submit\">Connect directory</button></form>",
        select(
            "provider",
            "provider",
            &PORTAL_DSYNC_PROVIDERS,
            previous.get("provider")
        ),
    );
    html
}

/// The DNS record to add is shown as the TXT record named `<verification_prefix>.<domain>`
/// holding the `verification_token`, with both values also shown as WorkOS returns them:
/// WorkOS's sources disagree on the record's name, so the raw values are always there.
fn domains(store: &Store, organization_id: &str, secret: &str, previous: &Form) -> String {
    let mut html = String::from(
        "<h2>Domain verification</h2>\n<p>Add the DNS TXT record shown for each domain, then \
         press Verify.</p>\n",
    );
    let domains = store
        .organizations
        .get(organization_id)
        .map(|o| o.domains.as_slice())
        .unwrap_or_default();
    if domains.is_empty() {
        html.push_str("<p id=\"no-domains\">This organization has no domains yet.</p>\n");
    } else {
        html.push_str(
            "<table id=\"domains\"><tr><th>Domain</th><th>State</th><th>DNS record</th>\
             <th></th></tr>\n",
        );
        for d in domains {
            let record = if d.manual {
                "verified manually, no DNS record needed".to_owned()
            } else {
                format!(
                    "TXT <code>{prefix}.{domain}</code> = <code>{token}</code><br>\
                     <small>prefix <code>{prefix}</code>, token <code>{token}</code></small>",
                    prefix = escape(&d.verification_prefix),
                    domain = escape(&d.domain),
                    token = escape(&d.verification_token),
                )
            };
            let button = if matches!(d.state, DomainState::Pending | DomainState::Failed) {
                format!(
                    "<form class=\"inline\" method=\"post\" \
                     action=\"/portal/domain_verification/verify\">{secret}\
                     <input type=\"hidden\" name=\"domain\" value=\"{name}\">\
                     <button id=\"verify-{name}\" type=\"submit\">Verify</button></form>",
                    name = escape(&d.domain)
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{record}</td><td>{button}</td></tr>",
                escape(&d.domain),
                d.state.as_str()
            );
        }
        html.push_str("</table>\n");
    }
    let _ = writeln!(
        html,
        "<form id=\"domain-form\" method=\"post\" action=\"/portal/domain_verification\">\
         {secret}<label for=\"domain\">Add a domain</label>\
         <input id=\"domain\" name=\"domain\" type=\"text\" placeholder=\"example.com\" \
         value=\"{}\"><button id=\"submit\" type=\"submit\">Add domain</button></form>",
        escape(previous.get("domain").unwrap_or_default()),
    );
    html
}

fn log_streams(store: &Store, organization_id: &str, secret: &str, previous: &Form) -> String {
    let mut html = String::from("<h2>Log streams</h2>\n");
    match store
        .audit_configs
        .get(organization_id)
        .and_then(|c| c.log_stream.as_ref())
    {
        Some(stream) => {
            let _ = writeln!(
                html,
                "<p id=\"log-stream\">Streaming to {} (<code>{}</code>): <strong>{}</strong></p>",
                escape(&stream.stream_type),
                escape(&stream.id),
                stream.state.as_str()
            );
        }
        None => html.push_str("<p id=\"log-stream\">No log stream yet.</p>\n"),
    }
    let _ = writeln!(
        html,
        "<form id=\"log-stream-form\" method=\"post\" action=\"/portal/log_streams\">{secret}\
         <label for=\"destination\">Destination</label>{}\
         <button id=\"submit\" type=\"submit\">Create log stream</button></form>",
        select(
            "destination",
            "destination",
            &PORTAL_LOG_STREAM_TYPES,
            previous.get("destination")
        ),
    );
    html
}

fn audit_logs(store: &Store, organization_id: &str) -> String {
    let state = match store.audit_configs.get(organization_id) {
        Some(config) => format!(
            "Audit logs are <strong>{}</strong>; events are kept for {} days.",
            config.state.as_str(),
            config.retention_period_in_days
        ),
        None => "Audit logs are not set up.".to_owned(),
    };
    format!(
        "<h2>Audit logs</h2>\n<p id=\"audit-state\">{state}</p>\n\
         <p>No audit log events have been recorded for this organization.</p>\n"
    )
}

fn certificate_renewal(store: &Store, organization_id: &str, secret: &str) -> String {
    let mut html = String::from("<h2>SAML certificate renewal</h2>\n");
    match store
        .connections
        .values()
        .find(|c| c.organization_id == organization_id && c.is_saml())
    {
        Some(connection) => {
            let _ = writeln!(
                html,
                "<p>Connection <code>{}</code> ({}) needs its identity provider's renewed \
                 signing certificate.</p>\
                 <form id=\"renew-form\" method=\"post\" action=\"/portal/certificate_renewal\">\
                 {secret}<button id=\"renew\" type=\"submit\">Upload the renewed certificate\
                 </button></form>",
                escape(&connection.id),
                escape(&connection.connection_type),
            );
        }
        None => html.push_str(
            "<p id=\"no-connection\">This organization has no SAML connection, so there is \
             no certificate to renew.</p>\n",
        ),
    }
    html
}

fn bring_your_own_key(secret: &str, previous: &Form) -> String {
    let providers: Vec<(&str, &str)> = KEY_PROVIDERS
        .iter()
        .map(|p| {
            let label = match *p {
                "AWS_KMS" => "AWS KMS",
                "GCP_KMS" => "Google Cloud KMS",
                _ => "Azure Key Vault",
            };
            (*p, label)
        })
        .collect();
    format!(
        "<h2>Bring your own key</h2>\n\
         <form id=\"byok-form\" method=\"post\" action=\"/portal/bring_your_own_key\">{secret}\
         <label for=\"key-provider\">Key provider</label>{}\
         <button id=\"submit\" type=\"submit\">Verify key</button></form>\n",
        select(
            "key-provider",
            "key_provider",
            &providers,
            previous.get("key_provider")
        ),
    )
}
