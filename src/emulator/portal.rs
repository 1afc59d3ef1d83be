//! The emulator's stand-in for the hosted Admin Portal: the page a minted link opens. It names
//! the organization and intent and offers working "back" and "done" links, and refuses links that
//! are unknown (404), revoked or expired (410), each with a page that says which.

use super::{Shared, api::expired};
use axum::{
    extract::{RawQuery, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

/// `GET /portal/launch?secret=...`
pub(crate) async fn launch(State(shared): State<Shared>, RawQuery(query): RawQuery) -> Response {
    let secret = form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
        .find(|(key, _)| key == "secret")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let store = shared.store();
    let Some(link) = store.links.get(&secret) else {
        return page(
            StatusCode::NOT_FOUND,
            "Link not valid",
            "<p>This Admin Portal link is not valid.</p>",
        );
    };
    if link.revoked {
        return page(
            StatusCode::GONE,
            "Link revoked",
            "<p>This Admin Portal link was revoked.</p>",
        );
    }
    if expired(link, store.now()) {
        return page(
            StatusCode::GONE,
            "Link expired",
            "<p>This Admin Portal link has expired: links work for five minutes.</p>",
        );
    }
    let Some(organization) = store.organizations.get(&link.organization_id) else {
        return page(
            StatusCode::NOT_FOUND,
            "Organization deleted",
            "<p>The organization no longer exists.</p>",
        );
    };
    let exit = format!("{}/portal/exit", shared.origin);
    let return_url = link.return_url.as_deref().unwrap_or(&exit);
    let success_url = link.success_url.as_deref().unwrap_or(&exit);
    let body = format!(
        "<p>Organization: <strong id=\"organization\">{}</strong> (<code>{}</code>)</p>\n\
         <p>Intent: <strong id=\"intent\">{}</strong></p>\n\
         <p><a id=\"return\" href=\"{}\">Back to the application</a></p>\n\
         <p><a id=\"success\" href=\"{}\">Finish setup</a></p>",
        escape(&organization.name),
        escape(&organization.id),
        escape(&link.intent),
        escape(return_url),
        escape(success_url),
    );
    page(StatusCode::OK, "Admin Portal", &body)
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

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title} (WorkOS emulator)</title></head>\n<body>\n<h1>{title}</h1>\n{body}\n\
         <p><small>Served by the portal-gateway WorkOS emulator, not by WorkOS.</small></p>\n\
         </body></html>\n"
    );
    let mut response = (status, html).into_response();
    if let Ok(value) = "text/html; charset=utf-8".parse() {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// Escapes text for HTML content and attribute values.
fn escape(text: &str) -> String {
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
