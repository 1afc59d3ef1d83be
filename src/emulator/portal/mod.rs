//! The emulator's stand-in for the hosted Admin Portal: the pages a minted link opens. Each
//! intent has a working flow made of plain server-rendered forms (no JavaScript) that change the
//! emulator's state and emit the events WorkOS would, then send the admin on to the link's
//! success URL. A link minted without an intent opens a menu of the seven flows; an e-mailed
//! invitation naming several intents opens a menu of those alone.
//!
//! Every page and every form submission checks the link again: unknown (404), revoked or
//! expired (410), each with a page that says which. Forms carry the link's secret in a hidden
//! field. Element ids are stable, so a browser test can drive the pages:
//!
//! | intent | elements |
//! |---|---|
//! | every page | `#organization`, `#intent`, `#return`, `#success`; `#error` when a form was refused |
//! | (none) | `#intents` with `#intent-<intent>` links; `#menu` back to it from a flow |
//! | `sso` | `#sso-form` (`#provider`, `#metadata-url`, `#submit`), then `#test-sign-in` |
//! | `dsync` | `#dsync-form` (`#provider`, `#submit`) |
//! | `domain_verification` | `#domains` with `#verify-<domain>` buttons; `#domain-form` (`#domain`, `#submit`) |
//! | `log_streams` | `#log-stream-form` (`#destination`, `#submit`) |
//! | `audit_logs` | `#audit-state` |
//! | `certificate_renewal` | `#renew`, or `#no-connection` |
//! | `bring_your_own_key` | `#byok-form` (`#key-provider`, `#submit`) |

pub(crate) mod actions;
mod sections;

use std::collections::HashMap;

use axum::{
    extract::{RawQuery, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{
    Shared,
    api::{INTENTS, expired},
    setup::ops,
    state::{LINK_LIFETIME, Link, Store},
};

/// The fields of a query string or a submitted form; the first value of each name wins.
#[derive(Debug, Default)]
pub(crate) struct Form(HashMap<String, String>);

impl Form {
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        let mut fields = HashMap::new();
        for (key, value) in form_urlencoded::parse(bytes) {
            fields
                .entry(key.into_owned())
                .or_insert_with(|| value.into_owned());
        }
        Self(fields)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// A link that was checked and may be used, with its secret.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) secret: String,
    pub(crate) link: Link,
}

impl Session {
    /// Checks the link behind `secret` as the launch page does: known, not revoked, not
    /// expired, its organization still there. `Err` is the page to answer with.
    pub(crate) fn open(store: &Store, secret: &str) -> Result<Self, Box<Response>> {
        let refuse = |status, title, text| Err(Box::new(page(status, title, text)));
        let Some(link) = store.links.get(secret) else {
            return refuse(
                StatusCode::NOT_FOUND,
                "Link not valid",
                "<p>This Admin Portal link is not valid.</p>",
            );
        };
        if link.revoked {
            return refuse(
                StatusCode::GONE,
                "Link revoked",
                "<p>This Admin Portal link was revoked.</p>",
            );
        }
        if expired(link, store.now()) {
            let rule = if link.lifetime == LINK_LIFETIME {
                "links work for five minutes".to_owned()
            } else {
                format!(
                    "invitation links work for {} days",
                    link.lifetime.as_secs() / 86_400
                )
            };
            return Err(Box::new(page(
                StatusCode::GONE,
                "Link expired",
                &format!("<p>This Admin Portal link has expired: {rule}.</p>"),
            )));
        }
        if !store.organizations.contains_key(&link.organization_id) {
            return refuse(
                StatusCode::NOT_FOUND,
                "Organization deleted",
                "<p>The organization no longer exists.</p>",
            );
        }
        Ok(Self {
            secret: secret.to_owned(),
            link: link.clone(),
        })
    }

    /// The intent a page or form works on: the link's own, or for a link minted without one,
    /// the one chosen from the menu.
    pub(crate) fn intent<'a>(&'a self, chosen: Option<&'a str>) -> Option<&'a str> {
        match &self.link.intent {
            Some(intent) => Some(intent),
            None => chosen.filter(|c| self.offers(c)),
        }
    }

    /// Whether this link may run `intent`: its own intent, or one its menu offers (every
    /// intent, unless an invitation limited the menu to the intents it named).
    pub(crate) fn offers(&self, intent: &str) -> bool {
        match (&self.link.intent, &self.link.menu) {
            (Some(own), _) => own == intent,
            (None, Some(menu)) => menu.contains(&intent),
            (None, None) => INTENTS.contains(&intent),
        }
    }

    /// Where the admin goes when a flow is done: the link's success URL, else its return URL,
    /// else the emulator's exit page (WorkOS would use the dashboard's settings).
    pub(crate) fn finish_url(&self, origin: &str) -> String {
        self.link
            .success_url
            .clone()
            .or_else(|| self.link.return_url.clone())
            .unwrap_or_else(|| format!("{origin}/portal/exit"))
    }

    /// This link's page for `intent` (the menu when `None`).
    pub(crate) fn launch_url(&self, intent: Option<&str>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("secret", &self.secret);
        if let Some(intent) = intent {
            query.append_pair("intent", intent);
        }
        format!("/portal/launch?{}", query.finish())
    }
}

/// `GET /portal/launch?secret=...[&intent=...]`
pub(crate) async fn launch(State(shared): State<Shared>, RawQuery(query): RawQuery) -> Response {
    let query = Form::parse(query.as_deref().unwrap_or_default().as_bytes());
    let mut store = shared.store();
    let session = match Session::open(&store, query.get("secret").unwrap_or_default()) {
        Ok(session) => session,
        Err(page) => return *page,
    };
    let intent = session.intent(query.get("intent"));
    // Opening the audit log viewer turns audit logs on for an organization that never had
    // them: WorkOS offers the viewer only where audit logs are in use, and this gives the
    // portal, like the control API, a way to create the configuration.
    if intent == Some("audit_logs") {
        ops::ensure_audit_logs(&mut store, &session.link.organization_id);
    }
    render(&shared, &store, &session, intent, None, &Form::default())
}

/// A refusal to show above a form, with the status to answer with.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

/// The portal page of `session` for `intent`, with `refusal` above the form and the refused
/// form's values (`previous`) filled in again.
pub(crate) fn render(
    shared: &Shared,
    store: &Store,
    session: &Session,
    intent: Option<&str>,
    refusal: Option<Refusal>,
    previous: &Form,
) -> Response {
    let Some(organization) = store.organizations.get(&session.link.organization_id) else {
        return page(
            StatusCode::NOT_FOUND,
            "Organization deleted",
            "<p>The organization no longer exists.</p>",
        );
    };
    let exit = format!("{}/portal/exit", shared.origin);
    let return_url = session.link.return_url.as_deref().unwrap_or(&exit);
    let success_url = session.link.success_url.as_deref().unwrap_or(&exit);
    let mut body = format!(
        "<p>Organization: <strong id=\"organization\">{}</strong> (<code>{}</code>)</p>\n\
         <p>Intent: <strong id=\"intent\">{}</strong></p>\n",
        escape(&organization.name),
        escape(&organization.id),
        escape(intent.unwrap_or("(choose one below)")),
    );
    let status = match &refusal {
        Some(refusal) => {
            body.push_str(&format!(
                "<p id=\"error\" class=\"error\" role=\"alert\">{}</p>\n",
                escape(&refusal.message)
            ));
            refusal.status
        }
        None => StatusCode::OK,
    };
    match intent {
        Some(intent) => {
            body.push_str(&sections::section(store, session, intent, previous));
            if session.link.intent.is_none() {
                body.push_str(&format!(
                    "<p><a id=\"menu\" href=\"{}\">All setup steps</a></p>\n",
                    escape(&session.launch_url(None))
                ));
            }
        }
        None => body.push_str(&sections::menu(session)),
    }
    body.push_str(&format!(
        "<p><a id=\"return\" href=\"{}\">Back to the application</a></p>\n\
         <p><a id=\"success\" href=\"{}\">Finish setup</a></p>",
        escape(return_url),
        escape(success_url),
    ));
    page(status, "Admin Portal", &body)
}

/// `GET /portal/exit`: where the portal sends the admin when the link named no return or success
/// URL (WorkOS would use the dashboard's setting).
pub(crate) async fn exit() -> Response {
    page(
        StatusCode::OK,
        "Admin Portal closed",
        "<p>You have left the Admin Portal.</p>",
    )
}

/// Just enough style to read the pages at a glance.
const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;\
padding:0 1rem;color:#1d1d35;line-height:1.4}h1{font-size:1.5rem}h2{font-size:1.2rem}\
form{margin:1rem 0;padding:1rem;border:1px solid #d8d8e4;border-radius:8px}\
form.inline{margin:0;padding:0;border:0}label{display:block;margin:.6rem 0 .2rem;\
font-weight:600}input,select{width:100%;padding:.4rem;box-sizing:border-box}\
button{margin-top:.8rem;padding:.5rem 1rem;border:0;border-radius:6px;background:#5b5bd6;\
color:#fff;cursor:pointer}form.inline button{margin:0}.error{color:#b00020;font-weight:600}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:.4rem;\
text-align:left;vertical-align:top}code{word-break:break-all}nav a{display:block;margin:.4rem 0}";

pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title} (WorkOS emulator)</title><style>{STYLE}</style></head>\n<body>\n\
         <h1>{title}</h1>\n{body}\n\
         <p><small>Served by the portal-gateway WorkOS emulator, not by WorkOS.</small></p>\n\
         </body></html>\n"
    );
    let mut response = (status, html).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Escapes text for HTML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
