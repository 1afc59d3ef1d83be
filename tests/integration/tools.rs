//! The real binary and the real client tools: the README's grpcurl examples, the official WorkOS
//! Python SDK against the emulator, and the command line's refusals.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use crate::helpers::{TestEmulator, ensure_clients, repo_root};

const BINARY: &str = env!("CARGO_BIN_EXE_portal-gateway");

#[test]
fn the_readme_grpcurl_examples_work_against_the_real_binary() {
    ensure_clients();
    let output = Command::new(repo_root().join("scripts/grpcurl-examples.sh"))
        .arg(BINARY)
        .output()
        .expect("run scripts/grpcurl-examples.sh");
    assert!(
        output.status.success(),
        "grpcurl examples failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_official_python_sdk_accepts_the_emulator() {
    let bin = ensure_clients();
    let emulator = TestEmulator::start().await;
    let script = repo_root().join("clients/python/workos_conformance.py");
    let output = tokio::process::Command::new(bin.join("python"))
        .arg(script)
        .arg(&emulator.url)
        .output()
        .await
        .expect("run the conformance script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with("passed, 0 failed") && !last.starts_with("0 passed"),
        "{last}"
    );
}

/// Runs `serve` with a config file and only the given environment.
fn serve_with(config: &str, env: &[(&str, &str)]) -> (i32, String) {
    let path = std::env::temp_dir().join(format!(
        "portal-gateway-test-{}-{}.toml",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::write(&path, config).expect("write config");
    let output = Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(&path)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run serve");
    let _ = std::fs::remove_file(&path);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

#[test]
fn serve_refuses_a_missing_or_misshapen_key_with_exit_64() {
    let (code, stderr) = serve_with("listen = \"127.0.0.1:0\"\n", &[]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("WORKOS_API_KEY: is not set"), "{stderr}");
    let (code, stderr) = serve_with(
        "listen = \"127.0.0.1:0\"\n",
        &[("WORKOS_API_KEY", "pk_canary_value_123")],
    );
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("WORKOS_API_KEY: is not shaped like a WorkOS API key"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("pk_canary_value_123"),
        "the key is never echoed"
    );
}

#[test]
fn serve_names_every_problem_in_a_bad_config_one_line_each() {
    let config = "listen = \"here\"\n[workos]\nbase_url = \"ftp://x\"\nrequest_timeout = \"fast\"\n[portal.intents.payroll]\n";
    let (code, stderr) = serve_with(config, &[("WORKOS_API_KEY", "sk_test_abcdefgh")]);
    assert_eq!(code, 64, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    for setting in [
        "listen:",
        "workos.base_url:",
        "workos.request_timeout:",
        "portal.intents.payroll:",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(setting)),
            "{setting} in {stderr}"
        );
    }
    let (code, stderr) = serve_with(
        "[portal]\nallow_http = true\n",
        &[("WORKOS_API_KEY", "sk_test_abcdefgh")],
    );
    assert_eq!(code, 64);
    assert!(stderr.contains("allow_http"), "{stderr}");
    let (code, stderr) = serve_with("listen = [", &[("WORKOS_API_KEY", "sk_test_abcdefgh")]);
    assert_eq!(code, 64);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn the_emulator_command_prints_its_address_and_serves() {
    let mut child = Command::new(BINARY)
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            "sk_test_cli",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start emulator");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read address");
    let url = line
        .trim()
        .strip_prefix("WorkOS emulator listening on ")
        .expect("address line")
        .to_owned();
    let answer = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Authorization: Bearer sk_test_cli",
        ])
        .arg(format!("{url}/organizations"))
        .output()
        .expect("curl");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(String::from_utf8_lossy(&answer.stdout), "200");
}

/// Reads lines from a child's stdout until one starts with `prefix`; returns the rest of it.
/// Standard output of a started process, read line by line.
pub(crate) type Stdout = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Starts `program` with `args`, its standard output piped for reading and its errors dropped;
/// it is killed when the handle is dropped.
pub(crate) fn start_process(program: &str, args: &[&str]) -> (tokio::process::Child, Stdout) {
    use tokio::io::AsyncBufReadExt;

    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the process");
    let stdout = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    (child, stdout)
}

pub(crate) async fn wait_for_line(lines: &mut Stdout, prefix: &str) -> String {
    let found = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
        panic!("the process exited before printing {prefix:?}");
    });
    found
        .await
        .expect("the process printed its address in time")
}

#[tokio::test]
async fn canary_secrets_never_reach_logs_statuses_or_the_audit_trail() {
    use portal_gateway::proto::{self, Intent};
    use tokio::io::AsyncBufReadExt;

    const KEY: &str = "sk_test_CANARYKEY7c1d9e";
    const TOKEN: &str = "canary-caller-token-4b2f8a";
    const WRONG_TOKEN: &str = "canary-wrong-token-1e5d3c";
    const PROXY_PASSWORD: &str = "canary-proxy-password-8d2a";
    // Basic base64("relay:canary-proxy-password-8d2a"), as the proxy must receive it.
    const PROXY_AUTHORIZATION: &str = "Basic cmVsYXk6Y2FuYXJ5LXByb3h5LXBhc3N3b3JkLThkMmE=";

    let mut emulator = tokio::process::Command::new(BINARY)
        .args(["emulator", "--listen", "127.0.0.1:0", "--api-key", KEY])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start emulator");
    let mut emulator_out =
        tokio::io::BufReader::new(emulator.stdout.take().expect("stdout")).lines();
    let emulator_url = wait_for_line(&mut emulator_out, "WorkOS emulator listening on ").await;

    // Every WorkOS call goes through a forward proxy, password included.
    let (proxy, tunnels) =
        crate::helpers::start_connect_proxy(Some(PROXY_AUTHORIZATION.to_owned())).await;
    let config_path = crate::helpers::temp_path("canary.toml");
    std::fs::write(
        &config_path,
        format!(
            "[workos]\nbase_url = {emulator_url:?}\nproxy = \"http://relay:{PROXY_PASSWORD}@{proxy}\"\nrequest_timeout = \"2s\"\n[server]\ndrain_delay = \"0s\"\n[auth]\ntokens = [{{ identity = \"canary\", sha256 = \"{}\" }}]\n[[policy.callers]]\nname = \"canary\"\nidentities = [\"token:canary\"]\nrpcs = [\"*\"]\nintents = [\"*\"]\norganizations = [\"*\"]\nreturn_origins = [\"https://app.example.com\"]\n",
            crate::helpers::digest(TOKEN)
        ),
    )
    .expect("config");
    let stdout_path = crate::helpers::temp_path("canary.stdout");
    let stderr_path = crate::helpers::temp_path("canary.stderr");
    let mut gateway = tokio::process::Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config_path)
        .env("WORKOS_API_KEY", KEY)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .kill_on_drop(true)
        .spawn()
        .expect("start gateway");
    let mut gateway_out = tokio::io::BufReader::new(gateway.stdout.take().expect("stdout")).lines();
    let address = wait_for_line(&mut gateway_out, "portal-gateway listening on ").await;
    // Keep draining stdout (audit records) into a file while the calls run.
    let drain_path = stdout_path.clone();
    let drain = tokio::spawn(async move {
        let mut captured = String::new();
        while let Ok(Some(line)) = gateway_out.next_line().await {
            captured.push_str(&line);
            captured.push('\n');
        }
        std::fs::write(drain_path, captured).expect("write stdout");
    });

    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let credentials = |token: &str| crate::helpers::Credentials {
        token: Some(token.into()),
        ..Default::default()
    };
    let good = crate::helpers::Clients::new(channel.clone(), credentials(TOKEN));
    let wrong = crate::helpers::Clients::new(channel, credentials(WRONG_TOKEN));
    let mut statuses: Vec<tonic::Status> = Vec::new();
    let mut secrets: Vec<String> = Vec::new();

    let ensure = proto::EnsureOrganizationRequest {
        external_id: "acme".into(),
        name: "Acme".into(),
        ..Default::default()
    };
    good.orgs
        .clone()
        .ensure_organization(ensure)
        .await
        .expect("ensure");
    for intent in [Intent::Sso, Intent::Dsync, Intent::BringYourOwnKey] {
        let request = proto::GenerateLinkRequest {
            organization: Some(proto::generate_link_request::Organization::ExternalId(
                "acme".into(),
            )),
            intent: intent as i32,
            return_url: "https://app.example.com/back".into(),
            external_user_id: "admin-1".into(),
            ..Default::default()
        };
        let link = good
            .portal
            .clone()
            .generate_link(request)
            .await
            .expect("mint")
            .into_inner()
            .portal_link
            .expect("link");
        secrets.push(link.link.clone());
        secrets.push(
            link.link
                .split("secret=")
                .nth(1)
                .expect("secret")
                .to_owned(),
        );
    }
    // One call with the caller's request id and trace context, to find its log line.
    let mut traced = tonic::Request::new(proto::ListIntentsRequest {});
    traced
        .metadata_mut()
        .insert("x-request-id", "req-canary-log-1".parse().expect("ascii"));
    traced.metadata_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .expect("ascii"),
    );
    let answer = good
        .portal
        .clone()
        .list_intents(traced)
        .await
        .expect("intents");
    assert_eq!(
        answer
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("req-canary-log-1")
    );
    let unknown = proto::GetOrganizationRequest {
        organization: Some(proto::get_organization_request::Organization::Id(
            "org_01EHWNCE74X7JSDV0X3SZ3KJNY".into(),
        )),
    };
    statuses.push(
        good.orgs
            .clone()
            .get_organization(unknown.clone())
            .await
            .expect_err("unknown"),
    );
    statuses.push(
        wrong
            .orgs
            .clone()
            .get_organization(unknown.clone())
            .await
            .expect_err("wrong token"),
    );
    let http = reqwest::Client::new();
    for fault in [
        serde_json::json!({"route": "*", "status": 401, "count": 1}),
        serde_json::json!({"route": "*", "status": 503, "count": 1}),
        serde_json::json!({"route": "*", "malformed": true, "count": 1}),
        serde_json::json!({"route": "*", "status": 429, "retry_after": 3, "count": 1}),
    ] {
        http.post(format!("{emulator_url}/_emulator/faults"))
            .json(&fault)
            .send()
            .await
            .expect("fault");
        statuses.push(
            good.orgs
                .clone()
                .get_organization(unknown.clone())
                .await
                .expect_err("fault"),
        );
    }
    let hostile = proto::GenerateLinkRequest {
        organization: Some(proto::generate_link_request::Organization::ExternalId(
            "acme".into(),
        )),
        intent: Intent::Sso as i32,
        return_url: format!("https://evil.example/?token={TOKEN}"),
        ..Default::default()
    };
    statuses.push(
        good.portal
            .clone()
            .generate_link(hostile)
            .await
            .expect_err("hostile"),
    );

    let pid = gateway.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let exit = tokio::time::timeout(std::time::Duration::from_secs(15), gateway.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(exit.success(), "graceful exit on SIGTERM: {exit:?}");
    drain.await.expect("drain");
    let _ = emulator.kill().await;

    let stdout = std::fs::read_to_string(&stdout_path).expect("stdout");
    let stderr = std::fs::read_to_string(&stderr_path).expect("stderr");
    assert!(
        stderr.lines().count() > 20,
        "trace logging was on: {} lines",
        stderr.lines().count()
    );
    assert!(
        stdout.contains("\"rpc\":\"GenerateLink\""),
        "the audit trail was captured"
    );
    // One JSON log line per RPC, with the fields operators filter on.
    let rpc_lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "portal_gateway::rpc")
        .collect();
    assert_eq!(
        rpc_lines.len(),
        1 + 3 + 1 + 1 + 1 + 4 + 1,
        "one line per RPC"
    );
    let traced_line = rpc_lines
        .iter()
        .find(|l| l["fields"]["request_id"] == "req-canary-log-1")
        .expect("the traced call's line");
    assert_eq!(traced_line["fields"]["method"], "ListIntents");
    assert_eq!(traced_line["fields"]["caller"], "token:canary");
    assert_eq!(traced_line["fields"]["code"], "OK");
    assert!(
        traced_line["fields"]["latency_ms"]
            .as_f64()
            .is_some_and(|ms| ms >= 0.0)
    );
    let denied = rpc_lines
        .iter()
        .find(|l| l["fields"]["code"] == "UNAUTHENTICATED")
        .expect("the wrong token's line");
    assert_eq!(denied["fields"]["reason"], "INVALID_TOKEN");
    let statuses_text: String = statuses
        .iter()
        .map(|s| format!("{s:?}\n{}\n", s.message()))
        .collect();
    assert!(
        !tunnels.lock().expect("tunnels").is_empty(),
        "WorkOS was reached through the proxy"
    );
    let canaries = [
        KEY,
        TOKEN,
        WRONG_TOKEN,
        PROXY_PASSWORD,
        PROXY_AUTHORIZATION.trim_start_matches("Basic "),
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(secrets);
    for canary in canaries {
        for (place, text) in [
            ("logs", &stderr),
            ("stdout and audit", &stdout),
            ("statuses", &statuses_text),
        ] {
            assert!(!text.contains(&canary), "{canary:?} leaked into {place}");
        }
    }
    for path in [config_path, stdout_path, stderr_path] {
        let _ = std::fs::remove_file(path);
    }
}

#[tokio::test]
async fn sighup_reloads_the_policy_file() {
    use portal_gateway::proto;
    use tokio::io::AsyncBufReadExt;

    let emulator = crate::helpers::TestEmulator::start().await;
    let policy_path = crate::helpers::temp_path("sighup-policy.toml");
    // Polling once an hour: only SIGHUP can explain a reload within this test.
    let before = "reload_interval = \"1h\"\n[[callers]]\nname = \"other\"\nidentities = [\"token:other\"]\nrpcs = [\"*\"]\nintents = [\"*\"]\norganizations = [\"*\"]\n";
    std::fs::write(&policy_path, before).expect("policy");
    let config_path = crate::helpers::temp_path("sighup.toml");
    std::fs::write(
        &config_path,
        format!(
            "policy_file = {:?}\n[workos]\nbase_url = {:?}\n[server]\ndrain_delay = \"0s\"\n[auth]\ntokens = [{{ identity = \"late\", sha256 = \"{}\" }}]\n",
            policy_path.display().to_string(),
            emulator.url,
            crate::helpers::digest("late-token")
        ),
    )
    .expect("config");
    let mut gateway = tokio::process::Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config_path)
        .env("WORKOS_API_KEY", crate::helpers::API_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start gateway");
    let mut lines = tokio::io::BufReader::new(gateway.stdout.take().expect("stdout")).lines();
    let address = wait_for_line(&mut lines, "portal-gateway listening on ").await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let clients = crate::helpers::Clients::new(
        channel,
        crate::helpers::Credentials {
            token: Some("late-token".into()),
            ..Default::default()
        },
    );
    let mut portal = clients.portal;
    let status = portal
        .list_intents(proto::ListIntentsRequest {})
        .await
        .expect_err("not in the policy yet");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    std::fs::write(&policy_path, format!("{before}[[callers]]\nname = \"late\"\nidentities = [\"token:late\"]\nintents = [\"*\"]\nrpcs = [\"ListIntents\"]\norganizations = [\"*\"]\n")).expect("policy");
    let pid = gateway.id().expect("pid").to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let mut allowed = false;
    for _ in 0..250 {
        if portal
            .list_intents(proto::ListIntentsRequest {})
            .await
            .is_ok()
        {
            allowed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(allowed, "SIGHUP reloaded the policy");
    let _ = gateway.kill().await;
    for path in [policy_path, config_path] {
        let _ = std::fs::remove_file(path);
    }
}

#[tokio::test]
async fn sighup_never_ends_a_command_without_a_policy_file() {
    let (mut emulator, mut out) = start_process(BINARY, &["emulator", "--listen", "127.0.0.1:0"]);
    let url = wait_for_line(&mut out, "WorkOS emulator listening on ").await;
    let pid = emulator.id().expect("pid").to_string();
    for _ in 0..2 {
        let sent = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
    }
    // Still there, still answering.
    let answer = reqwest::Client::new()
        .get(format!("{url}/_emulator/requests"))
        .send()
        .await
        .expect("the emulator still answers after SIGHUP");
    assert!(answer.status().is_success());
    assert!(
        emulator.try_wait().expect("status").is_none(),
        "still running"
    );
    let _ = emulator.kill().await;
}

#[tokio::test]
async fn dev_starts_on_a_free_port_when_a_default_one_is_busy() {
    // Hold the default admin port, as a local Prometheus would (if something else already holds
    // it, the situation is the same).
    let _held = std::net::TcpListener::bind("127.0.0.1:9090");
    let (mut dev, mut out) = start_process(
        BINARY,
        &[
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--emulator-listen",
            "127.0.0.1:0",
        ],
    );
    let metrics = wait_for_line(&mut out, "Metrics on http://").await;
    let admin = metrics.split('/').next().expect("address").to_owned();
    assert_ne!(admin, "127.0.0.1:9090", "{metrics}");
    let healthz = reqwest::Client::new()
        .get(format!("http://{admin}/healthz"))
        .send()
        .await
        .expect("the admin port answers");
    assert_eq!(healthz.status().as_u16(), 200);
    let _ = dev.kill().await;
}

/// User plus system CPU time of a process so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[tokio::test]
async fn out_of_file_descriptors_the_accept_loop_pauses_instead_of_spinning() {
    let command = format!(
        "ulimit -n 48 && exec {BINARY} dev --listen 127.0.0.1:0 --emulator-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0"
    );
    let (mut dev, mut out) = start_process("sh", &["-c", &command]);
    let address = wait_for_line(&mut out, "portal-gateway listening on ").await;
    let address = address
        .split_whitespace()
        .next()
        .expect("address")
        .to_owned();
    let pid = dev.id().expect("pid");
    // More idle connections than descriptors are left: accepting soon fails with EMFILE.
    let mut idle = Vec::new();
    for _ in 0..80 {
        if let Ok(stream) = tokio::net::TcpStream::connect(&address).await {
            idle.push(stream);
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let spent = cpu_ticks(pid) - before;
    eprintln!("with descriptors exhausted the gateway used {spent} ticks in a second");
    // A spinning accept loop burns a whole core: about 100 ticks a second.
    assert!(spent < 30, "{spent} ticks in a second");
    drop(idle);
    let _ = dev.kill().await;
}
