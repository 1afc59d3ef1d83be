//! OTLP trace export (`cargo test --features otlp --test otlp`): the real binary, built with the
//! feature, joins the caller's trace, sends its own span to WorkOS as the parent, and exports to
//! the collector at OTEL_EXPORTER_OTLP_ENDPOINT.

use std::{process::Stdio, time::Duration};

use portal_gateway::{emulator, proto};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    net::TcpListener,
};

const BINARY: &str = env!("CARGO_BIN_EXE_portal-gateway");
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn rpc_spans_join_the_callers_trace_and_are_exported() {
    // The emulator, in-process.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let emulator_url = emulator::origin_of(listener.local_addr().expect("addr"));
    tokio::spawn(emulator::serve(
        listener,
        emulator::Options::default(),
        std::future::pending(),
    ));
    // A stand-in collector: records what the exporter sends on its first connection.
    let collector = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind collector");
    let collector_addr = collector.local_addr().expect("addr");
    let (received_tx, received_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    tokio::spawn(async move {
        if let Ok((mut socket, _)) = collector.accept().await {
            let mut bytes = vec![0u8; 24];
            let _ = socket.read_exact(&mut bytes).await;
            let _ = received_tx.send(bytes);
        }
    });

    let token = "otlp-test-token";
    let digest: String = portal_gateway::domain::hex(&portal_gateway::config::sha256(token));
    let config =
        std::env::temp_dir().join(format!("portal-gateway-otlp-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "[workos]\nbase_url = {emulator_url:?}\n[server]\ndrain_delay = \"0s\"\n[auth]\ntokens = [{{ identity = \"t\", sha256 = \"{digest}\" }}]\n[[policy.callers]]\nname = \"t\"\nidentities = [\"token:t\"]\nrpcs = [\"*\"]\nintents = [\"*\"]\norganizations = [\"*\"]\n"
        ),
    )
    .expect("config");
    let mut gateway = tokio::process::Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("WORKOS_API_KEY", emulator::DEFAULT_API_KEY)
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "500")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start gateway");
    let mut lines = BufReader::new(gateway.stdout.take().expect("stdout")).lines();
    let address = loop {
        let line = lines
            .next_line()
            .await
            .expect("read")
            .expect("the gateway printed its address");
        if let Some(address) = line.strip_prefix("portal-gateway listening on ") {
            break address.to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut orgs = proto::organization_service_client::OrganizationServiceClient::new(channel);
    let mut request = tonic::Request::new(proto::EnsureOrganizationRequest {
        external_id: "acme".into(),
        name: "Acme".into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN}-01")
            .parse()
            .expect("ascii"),
    );
    orgs.ensure_organization(request).await.expect("ensure");

    let recent: serde_json::Value = reqwest::get(format!("{emulator_url}/_emulator/requests"))
        .await
        .expect("requests")
        .json()
        .await
        .expect("json");
    for upstream in recent["recent"].as_array().expect("recent") {
        let traceparent = upstream["traceparent"]
            .as_str()
            .expect("a traceparent on every WorkOS call");
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(
            parts[1], TRACE_ID,
            "WorkOS calls stay in the caller's trace: {traceparent}"
        );
        assert_ne!(
            parts[2], CALLER_SPAN,
            "their parent is the gateway's span, not the caller's: {traceparent}"
        );
    }

    let pid = gateway.id().expect("pid").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let received = tokio::time::timeout(Duration::from_secs(15), received_rx)
        .await
        .expect("the exporter connected")
        .expect("bytes");
    assert_eq!(
        &received, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "the exporter speaks gRPC (HTTP/2)"
    );
    let _ = tokio::time::timeout(Duration::from_secs(15), gateway.wait()).await;
    let _ = std::fs::remove_file(config);
}
