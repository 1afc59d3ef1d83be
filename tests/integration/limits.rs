//! Hostile input through gRPC: work and answers stay bounded whatever a request holds, and one
//! caller's bad request never reaches WorkOS or changes another caller's answers.

use portal_gateway::proto::{self, Intent};
use tonic::Code;

use crate::helpers::{bad_fields, details, spawn_app};

/// A raw HTTP/2 connection to the gateway, to send what no gRPC client would.
async fn raw_http2(app: &crate::helpers::TestApp) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(app.address)
        .await
        .expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    client
}

/// The head of a gRPC call to `method` (`package.Service/Method`) as the admin caller.
fn grpc_request(app: &crate::helpers::TestApp, method: &str) -> http::Request<()> {
    http::Request::post(format!("http://{}/{method}", app.address))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header(
            "authorization",
            format!("Bearer {}", crate::helpers::ADMIN_TOKEN),
        )
        .body(())
        .expect("request")
}

/// What a status's trailers carry: its message and its encoded details.
fn trailer_bytes(status: &tonic::Status) -> usize {
    status.message().len() + status.details().len()
}

#[tokio::test]
async fn a_huge_list_of_domains_is_refused_with_one_violation_and_no_upstream_call() {
    let app = spawn_app().await;
    // As many as fit in a request message (128 KiB), far more than allowed.
    let domains = (0..5_000)
        .map(|i| proto::OrganizationDomain {
            domain: format!("d{i}.example.com"),
            ..Default::default()
        })
        .collect();
    let status = app
        .orgs
        .clone()
        .ensure_organization(proto::EnsureOrganizationRequest {
            external_id: "huge".into(),
            name: "Huge".into(),
            domains,
            ..Default::default()
        })
        .await
        .expect_err("too many domains");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&status), ["domains"]);
    assert!(
        status.message().contains("at most 100"),
        "{}",
        status.message()
    );
    assert_eq!(
        app.emulator.total_requests().await,
        0,
        "WorkOS was never asked"
    );
}

#[tokio::test]
async fn error_details_stay_bounded_whatever_the_input() {
    let app = spawn_app().await;
    let link = |emails: Vec<String>| proto::GenerateLinkRequest {
        organization: Some(proto::generate_link_request::Organization::ExternalId(
            "acme".into(),
        )),
        intent: Intent::Sso as i32,
        it_contact_emails: emails,
        ..Default::default()
    };
    // Far more addresses than allowed: one violation, not one per address.
    let many = (0..10_000).map(|i| format!("x{i}")).collect();
    let status = app
        .portal
        .clone()
        .generate_link(link(many))
        .await
        .expect_err("too many");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&status), ["it_contact_emails"]);
    // As many as allowed, each one huge and invalid, plus other bad fields: the list is capped,
    // each entry is cut short, and the rest are counted.
    let huge = (0..20)
        .map(|i| format!("{i}{}", "x".repeat(5_000)))
        .collect();
    let mut request = link(huge);
    request.return_url = "ftp://nowhere".into();
    request.success_url = "not a url".into();
    let status = app
        .portal
        .clone()
        .generate_link(request)
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = details(&status)
        .bad_request()
        .expect("BadRequest")
        .field_violations
        .clone();
    assert_eq!(violations.len(), 21, "{violations:?}");
    assert_eq!(violations[20].field, "request");
    assert!(
        violations[20].description.contains("2 more"),
        "{violations:?}"
    );
    assert!(
        trailer_bytes(&status) < 16 * 1024,
        "{} bytes of trailers",
        trailer_bytes(&status)
    );
}

#[tokio::test]
async fn an_oversized_list_query_is_the_callers_problem_and_never_trips_the_breaker() {
    let app = spawn_app().await;
    let domains: Vec<String> = (0..4_000).map(|i| format!("d{i}.example.com")).collect();
    for _ in 0..10 {
        let status = app
            .orgs
            .clone()
            .list_organizations(proto::ListOrganizationsRequest {
                domains: domains.clone(),
                ..Default::default()
            })
            .await
            .expect_err("too many filters");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(bad_fields(&status), ["domains"]);
    }
    assert_eq!(app.emulator.total_requests().await, 0);
    // Everyone else's calls still work.
    app.orgs
        .clone()
        .list_organizations(proto::ListOrganizationsRequest::default())
        .await
        .expect("a normal listing");
}

#[tokio::test]
async fn with_the_audit_sink_failing_no_link_leaves_and_health_says_so() {
    use reqwest::Method;
    use serde_json::json;
    use tonic_health::pb::health_check_response::ServingStatus;

    let emulator = crate::helpers::TestEmulator::start().await;
    let config = crate::helpers::base_config(&emulator.url) + "[audit]\nfile = \"/dev/full\"\n";
    let (app, admin) = crate::helpers::spawn_app_with_admin(emulator, &config).await;
    app.emulator
        .control(
            Method::POST,
            "/seed",
            Some(json!({"organizations": [{"name": "Acme", "external_id": "acme"}]})),
        )
        .await;
    let status = app
        .portal
        .clone()
        .generate_link(proto::GenerateLinkRequest {
            organization: Some(proto::generate_link_request::Organization::ExternalId(
                "acme".into(),
            )),
            intent: Intent::Sso as i32,
            ..Default::default()
        })
        .await
        .expect_err("no record, no link");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(crate::helpers::reason(&status), "AUDIT_UNAVAILABLE");
    assert!(
        !format!("{status:?}").contains("http"),
        "no link in {status:?}"
    );
    // Reads need no record and keep working.
    app.orgs
        .clone()
        .get_organization(proto::GetOrganizationRequest {
            organization: Some(proto::get_organization_request::Organization::ExternalId(
                "acme".into(),
            )),
        })
        .await
        .expect("a read");
    crate::helpers::wait_until(|| async {
        app.health_of("adminportal.v1.PortalService").await == ServingStatus::NotServing
    })
    .await;
    let http = reqwest::Client::new();
    let healthz = http
        .get(format!("http://{admin}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(healthz.status().as_u16(), 503);
    assert!(healthz.text().await.expect("body").contains("audit"));
    let metrics = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains("portal_gateway_audit_sink_failing 1"),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(
            |l| l.starts_with("portal_gateway_audit_write_failures_total ") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stream_whose_body_never_finishes_is_ended_and_streams_per_connection_are_capped() {
    let emulator = crate::helpers::TestEmulator::start().await;
    let config = crate::helpers::base_config(&emulator.url)
        .replacen("request_timeout = \"5s\"", "request_timeout = \"200ms\"", 1)
        .replacen("[server]\n", "[server]\nrequest_timeout = \"300ms\"\n", 1);
    let app = crate::helpers::spawn_app_with(emulator, &config, crate::helpers::API_KEY).await;
    let client = raw_http2(&app).await;
    let mut client = client.ready().await.expect("ready");
    let request = grpc_request(&app, "adminportal.v1.PortalService/ListIntents");
    let (response, mut body) = client.send_request(request, false).expect("stream");
    // Three of the five bytes of the gRPC message prefix, then nothing more.
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0]), false)
        .expect("partial body");
    let started = std::time::Instant::now();
    let answered = tokio::time::timeout(std::time::Duration::from_secs(5), response)
        .await
        .expect("the server ends the stream instead of waiting forever");
    eprintln!("an unfinished body was ended after {:?}", started.elapsed());
    if let Ok(response) = answered {
        let status = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(status.as_deref(), Some("1"), "CANCELLED: {response:?}");
    }
    assert_eq!(
        client.current_max_send_streams(),
        portal_gateway::server::MAX_STREAMS_PER_CONNECTION as usize,
        "the server advertises its stream limit"
    );
}

#[tokio::test]
async fn names_that_would_read_differently_from_what_they_hold_are_refused() {
    let app = spawn_app().await;
    for name in [
        "Acme\u{202E}moc.evil",
        "Acme\0Corp",
        "Acme\u{2066}x\u{2069}",
    ] {
        let status = app
            .orgs
            .clone()
            .create_organization(proto::CreateOrganizationRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{name:?}");
        assert_eq!(bad_fields(&status), ["name"], "{name:?}");
    }
    assert_eq!(app.emulator.total_requests().await, 0);
}

#[tokio::test]
async fn a_message_that_cannot_be_decoded_is_invalid_argument_with_error_info() {
    let app = spawn_app().await;
    let client = raw_http2(&app).await;
    // A string field (organization_id) holding bytes that are not UTF-8, and a truncated field.
    for payload in [&[0x0a_u8, 0x02, 0xff, 0xfe][..], &[0x0a, 0x7f, 0x41][..]] {
        let mut client = client.clone().ready().await.expect("ready");
        let request = grpc_request(&app, "adminportal.v1.PortalService/GenerateLink");
        let (response, mut body) = client.send_request(request, false).expect("stream");
        let mut frame = vec![0, 0, 0, 0, payload.len() as u8];
        frame.extend_from_slice(payload);
        body.send_data(bytes::Bytes::from(frame), true)
            .expect("body");
        let response = response.await.expect("answer");
        let headers = response.headers().clone();
        let trailers = response
            .into_body()
            .trailers()
            .await
            .expect("trailers")
            .unwrap_or_default();
        let get = |name: &str| {
            headers
                .get(name)
                .or_else(|| trailers.get(name))
                .map(|v| v.to_str().expect("text").to_owned())
        };
        assert_eq!(get("grpc-status").as_deref(), Some("3"), "{payload:?}");
        let details = get("grpc-status-details-bin").expect("details");
        let status = tonic::Status::from_header_map(&{
            let mut map = http::HeaderMap::new();
            map.insert("grpc-status", "3".parse().expect("status"));
            map.insert(
                "grpc-status-details-bin",
                details.parse().expect("details header"),
            );
            map
        })
        .expect("a status");
        assert_eq!(crate::helpers::reason(&status), "MALFORMED_REQUEST");
    }
    assert_eq!(app.emulator.total_requests().await, 0);
}

#[tokio::test]
async fn a_message_larger_than_any_request_needs_is_refused_before_decoding() {
    let app = spawn_app().await;
    let status = app
        .portal
        .clone()
        .generate_link(proto::GenerateLinkRequest {
            organization: Some(proto::generate_link_request::Organization::ExternalId(
                "acme".into(),
            )),
            intent: Intent::Sso as i32,
            it_contact_emails: vec!["x".repeat(200 * 1024)],
            ..Default::default()
        })
        .await
        .expect_err("200 KiB");
    assert_eq!(status.code(), Code::OutOfRange);
    assert_eq!(crate::helpers::reason(&status), "REQUEST_TOO_LARGE");
    assert!(status.message().contains("128 KiB"), "{}", status.message());
    assert_eq!(app.emulator.total_requests().await, 0);
}

#[tokio::test]
async fn a_flood_of_unauthenticated_calls_is_summed_up_not_recorded_one_by_one() {
    let app = spawn_app().await;
    let anonymous = app.clients(crate::helpers::Credentials::default());
    let started = std::time::Instant::now();
    for _ in 0..500 {
        let status = anonymous
            .portal
            .clone()
            .list_intents(proto::ListIntentsRequest {})
            .await
            .expect_err("no credentials");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let summed = || {
        app.audit_records()
            .iter()
            .filter(|r| r["rpc"] == "UnauthenticatedCalls")
            .filter_map(|r| r["count"].as_u64())
            .sum::<u64>()
    };
    crate::helpers::wait_until(|| async { summed() >= 500 }).await;
    let records = app.audit_records();
    assert_eq!(summed(), 500);
    // One summary per interval (50 ms in the tests) at most, however many calls it holds:
    // bounded by time, not by calls (a slow machine takes more intervals for the 500).
    let intervals = started.elapsed().as_millis() / 50 + 2;
    assert!(
        records.len() as u128 <= intervals.min(100),
        "{} records for 500 calls over {intervals} intervals",
        records.len()
    );
    let summary = records
        .iter()
        .find(|r| r["rpc"] == "UnauthenticatedCalls")
        .expect("a summary");
    assert_eq!(summary["reason"], "MISSING_CREDENTIALS");
    assert_eq!(summary["peer"], "127.0.0.1");
}

#[tokio::test]
async fn past_the_connection_cap_the_server_stops_accepting_until_one_closes() {
    use std::time::Duration;

    use tonic::transport::Channel;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let emulator = crate::helpers::TestEmulator::start().await;
    let config = crate::helpers::base_config(&emulator.url)
        .replace("[server]\n", "[server]\nmax_connections = 3\n");
    let app = crate::helpers::spawn_app_with(emulator, &config, crate::helpers::API_KEY).await;
    let connect = || {
        let endpoint = Channel::from_shared(format!("http://{}", app.address)).expect("endpoint");
        async move {
            let channel = tokio::time::timeout(Duration::from_millis(500), endpoint.connect())
                .await
                .ok()?
                .ok()?;
            let mut health = HealthClient::new(channel.clone());
            tokio::time::timeout(
                Duration::from_millis(500),
                health.check(HealthCheckRequest {
                    service: String::new(),
                }),
            )
            .await
            .ok()?
            .ok()?;
            Some(channel)
        }
    };
    // The app's own client holds one place; two more fill the cap.
    let first = connect().await.expect("second connection");
    let _second = connect().await.expect("third connection");
    assert!(connect().await.is_none(), "a fourth connection was served");
    // Health over the connections already held still works.
    assert_eq!(
        app.health_of("").await,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    drop(first);
    crate::helpers::wait_until(|| async { connect().await.is_some() }).await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_once_it_reaches_its_age() {
    use std::time::Duration;

    let emulator = crate::helpers::TestEmulator::start().await;
    let config = crate::helpers::base_config(&emulator.url).replace(
        "[server]\n",
        "[server]\nmax_connection_age = \"300ms\"\nmax_connection_age_grace = \"200ms\"\n",
    );
    let app = crate::helpers::spawn_app_with(emulator, &config, crate::helpers::API_KEY).await;
    let tcp = tokio::net::TcpStream::connect(app.address)
        .await
        .expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    // Idle: no stream ever opened. The server ends the connection itself.
    let ended = tokio::time::timeout(Duration::from_secs(5), connection).await;
    assert!(ended.is_ok(), "an idle connection outlived its age");
    drop(client);
}

/// Opens a stream to `method` and sends three of the five bytes of the gRPC message prefix,
/// then nothing more: a request that has not arrived whole.
fn half_sent(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    app: &crate::helpers::TestApp,
    method: &str,
) -> (h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>) {
    let (response, mut body) = client
        .send_request(grpc_request(app, method), false)
        .expect("stream");
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0]), false)
        .expect("partial body");
    (response, body)
}

/// Sends the rest of each half-sent (empty) message; returns each stream's gRPC status.
async fn finish(
    streams: Vec<(h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>)>,
) -> Vec<String> {
    let mut answers = Vec::new();
    for (response, mut body) in streams {
        // A stream the server already answered may refuse more data; its status says why.
        let _ = body.send_data(bytes::Bytes::from_static(&[0, 0]), true);
        answers.push(response);
    }
    let mut codes = Vec::new();
    for response in answers {
        codes.push(grpc_status(response).await.0);
    }
    codes
}

/// The gRPC status of an answer (trailers-only or in trailers), and its ErrorInfo reason.
async fn grpc_status(response: h2::client::ResponseFuture) -> (String, String) {
    let answer = async {
        let response = response.await.expect("an answer");
        let mut headers = response.headers().clone();
        if !headers.contains_key("grpc-status") {
            // Trailers come after the message, which must be read first.
            let mut body = response.into_body();
            while let Some(data) = body.data().await {
                let data = data.expect("message");
                let _ = body.flow_control().release_capacity(data.len());
            }
            let trailers = body.trailers().await.expect("trailers");
            headers.extend(trailers.unwrap_or_default());
        }
        headers
    };
    let headers = tokio::time::timeout(std::time::Duration::from_secs(5), answer)
        .await
        .expect("answered within 5 s");
    let code = headers["grpc-status"].to_str().expect("text").to_owned();
    let reason = tonic::Status::from_header_map(&headers)
        .filter(|status| !status.details().is_empty())
        .map(|status| crate::helpers::reason(&status))
        .unwrap_or_default();
    (code, reason)
}

#[tokio::test]
async fn past_the_bound_on_unfinished_requests_half_sent_streams_are_refused_and_health_answers() {
    use tonic::transport::Channel;
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };

    const BOUND: usize = 8;
    const LIST_INTENTS: &str = "adminportal.v1.PortalService/ListIntents";
    const GENERATE_LINK: &str = "adminportal.v1.PortalService/GenerateLink";
    let emulator = crate::helpers::TestEmulator::start().await;
    let config = crate::helpers::base_config(&emulator.url).replace(
        "[server]\n",
        &format!("[server]\nmax_unfinished_requests = {BOUND}\n"),
    );
    let app = crate::helpers::spawn_app_with(emulator, &config, crate::helpers::API_KEY).await;

    // Fill the bound from one connection. A stream sent after them on the same connection is
    // refused (after a short grace), which shows that they hold every place (a connection's
    // streams reach the server in order).
    let fill = |client: h2::client::SendRequest<bytes::Bytes>| {
        let app = &app;
        async move {
            let mut client = client.ready().await.expect("ready");
            let held: Vec<_> = (0..BOUND)
                .map(|_| half_sent(&mut client, app, LIST_INTENTS))
                .collect();
            let (refused, _body) = half_sent(&mut client, app, GENERATE_LINK);
            (held, grpc_status(refused).await)
        }
    };
    let (held, past_the_bound) = fill(raw_http2(&app).await).await;
    assert_eq!(
        past_the_bound,
        ("8".to_owned(), "TOO_MANY_UNFINISHED_REQUESTS".to_owned()),
        "RESOURCE_EXHAUSTED"
    );

    // A flood on other connections is refused stream by stream, as it arrives.
    for _ in 0..3 {
        let mut client = raw_http2(&app).await.ready().await.expect("ready");
        let flood: Vec<_> = (0..50)
            .map(|_| half_sent(&mut client, &app, GENERATE_LINK))
            .collect();
        for (response, _body) in flood {
            assert_eq!(grpc_status(response).await.0, "8");
        }
    }

    // A health check and a whole call, each on a fresh connection, are served: a request that
    // arrives whole waits for nothing and needs no place.
    let fresh = Channel::from_shared(format!("http://{}", app.address))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let health = HealthClient::new(fresh)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health during the flood")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
    let mut whole = raw_http2(&app).await.ready().await.expect("ready");
    let (response, mut body) = whole
        .send_request(grpc_request(&app, LIST_INTENTS), false)
        .expect("stream");
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .expect("whole body");
    assert_eq!(grpc_status(response).await.0, "0", "a whole call is served");

    // The held requests were admitted: finished now, each is served, and gives its place back,
    // so as many half-sent requests are held again, and no more.
    assert_eq!(
        finish(held).await,
        ["0"; BOUND],
        "the held calls are served"
    );
    let (held, past_the_bound) = fill(raw_http2(&app).await).await;
    assert_eq!(past_the_bound.0, "8");
    assert_eq!(finish(held).await, ["0"; BOUND], "the places came back");
    assert_eq!(app.emulator.total_requests().await, 0);
}
