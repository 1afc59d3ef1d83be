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
