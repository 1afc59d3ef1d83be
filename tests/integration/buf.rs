//! The buf CLI against the API: `buf curl` discovers and calls the running binary through
//! reflection, and `buf breaking` refuses a change that would break callers compiled against the
//! proto.

use std::{path::Path, process::Command};

use crate::{
    helpers::{repo_root, temp_path},
    tools::{start_process, wait_for_line},
};

const BINARY: &str = env!("CARGO_BIN_EXE_portal-gateway");

/// The pinned buf binary (installed on first use by `scripts/ensure-buf.sh`).
fn buf() -> String {
    let output = Command::new(repo_root().join("scripts/ensure-buf.sh"))
        .output()
        .expect("run scripts/ensure-buf.sh");
    assert!(
        output.status.success(),
        "buf could not be installed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test]
async fn buf_curl_discovers_and_calls_the_gateway_through_reflection() {
    let buf = buf();
    let (_child, mut stdout) = start_process(
        BINARY,
        &[
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--emulator-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    let line = wait_for_line(&mut stdout, "portal-gateway listening on ").await;
    let address = line.split_whitespace().next().expect("address").to_owned();
    let url = format!("http://{address}");
    let run = |args: &[&str]| {
        let output = Command::new(&buf)
            .arg("curl")
            .args(["--protocol", "grpc", "--http2-prior-knowledge"])
            .args(args)
            .output()
            .expect("run buf curl");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, listed, err) = run(&["--list-services", &url]);
    assert!(ok, "{err}");
    for service in [
        "adminportal.v1.PortalService",
        "adminportal.v1.SetupService",
        "grpc.health.v1.Health",
    ] {
        assert!(listed.contains(service), "{service} not in {listed}");
    }
    let (ok, intents, err) = run(&[
        "-H",
        "authorization: Bearer dev",
        "-d",
        "{}",
        &format!("{url}/adminportal.v1.PortalService/ListIntents"),
    ]);
    assert!(ok, "{err}");
    assert!(intents.contains("INTENT_BRING_YOUR_OWN_KEY"), "{intents}");
    // Errors come back with their google.rpc details, decoded through reflection.
    let (ok, _, err) = run(&[
        "-H",
        "authorization: Bearer dev",
        "-d",
        r#"{"external_id":"nobody-has-this"}"#,
        &format!("{url}/adminportal.v1.OrganizationService/GetOrganization"),
    ]);
    assert!(!ok);
    let error: serde_json::Value = serde_json::from_str(&err).expect("buf curl prints the error");
    assert_eq!(error["code"], "not_found", "{err}");
    // buf curl shows the details as base64 protobuf; the ErrorInfo holds the reason.
    let info = error["details"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["type"] == "google.rpc.ErrorInfo"))
        .expect("an ErrorInfo");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(info["value"].as_str().expect("value"))
        .expect("base64");
    assert!(
        String::from_utf8_lossy(&bytes).contains("ORGANIZATION_NOT_FOUND"),
        "{err}"
    );
}

/// A copy of the buf module (buf.yaml and proto/) in `dir`.
fn copy_module(dir: &Path) {
    let root = repo_root();
    std::fs::create_dir_all(dir.join("proto/adminportal/v1")).expect("mkdir");
    std::fs::copy(root.join("buf.yaml"), dir.join("buf.yaml")).expect("buf.yaml");
    for entry in std::fs::read_dir(root.join("proto/adminportal/v1")).expect("proto dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(
            &path,
            dir.join("proto/adminportal/v1")
                .join(path.file_name().expect("name")),
        )
        .expect("copy proto");
    }
}

#[test]
fn buf_breaking_allows_additions_and_refuses_a_renamed_field() {
    let buf = buf();
    let before = temp_path("proto-before");
    copy_module(&before);
    let breaking = |changed: &Path| {
        let output = Command::new(&buf)
            .current_dir(changed)
            .args(["breaking", "--against"])
            .arg(&before)
            .output()
            .expect("run buf breaking");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let edit = |name: &str, from: &str, to: &str| {
        let dir = temp_path(name);
        copy_module(&dir);
        let file = dir.join("proto/adminportal/v1/portal.proto");
        let text = std::fs::read_to_string(&file).expect("portal.proto");
        assert!(text.contains(from), "portal.proto no longer has {from:?}");
        std::fs::write(&file, text.replacen(from, to, 1)).expect("write");
        dir
    };
    // A new field is an addition: callers compiled against the old proto keep working.
    let added = edit(
        "proto-added",
        "  repeated string it_contact_emails = 7;\n",
        "  repeated string it_contact_emails = 7;\n  // A new field.\n  string note = 8;\n",
    );
    let (ok, report) = breaking(&added);
    assert!(ok, "an added field was called breaking: {report}");
    // A renamed field breaks JSON callers; a changed number breaks every caller.
    let renamed = edit("proto-renamed", "string link = 1;", "string url = 1;");
    let (ok, report) = breaking(&renamed);
    assert!(!ok, "a renamed field passed buf breaking");
    assert!(report.contains("link"), "{report}");
    let renumbered = edit("proto-renumbered", "string link = 1;", "string link = 9;");
    let (ok, _) = breaking(&renumbered);
    assert!(!ok, "a changed field number passed buf breaking");
    for dir in [before, added, renamed, renumbered] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
