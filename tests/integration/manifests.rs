//! The Kubernetes manifests in deploy/kubernetes: `scripts/validate-manifests.sh` (Kubernetes
//! schemas, yamllint, consistency checks) finds them valid, and finds a broken copy invalid, so
//! the check is known to be able to fail.

use std::{fs, path::Path, process::Command};

use crate::helpers::{repo_root, temp_path};

/// Runs the validator on `dir` (on deploy/kubernetes when `None`): whether it passed, and
/// everything it printed.
fn validate(dir: Option<&Path>) -> (bool, String) {
    let mut command = Command::new(repo_root().join("scripts/validate-manifests.sh"));
    if let Some(dir) = dir {
        command.arg(dir);
    }
    let output = command.output().expect("run scripts/validate-manifests.sh");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

/// A fresh directory holding one file.
fn directory_with(name: &str, file: &str, contents: &str) -> std::path::PathBuf {
    let dir = temp_path(name);
    fs::create_dir_all(&dir).expect("create a temporary directory");
    fs::write(dir.join(file), contents).expect("write the manifest copy");
    dir
}

#[test]
fn the_kubernetes_manifests_are_valid() {
    let (ok, printed) = validate(None);
    assert!(ok, "scripts/validate-manifests.sh failed:\n{printed}");
    assert!(printed.contains("manifests valid"), "{printed}");
}

#[test]
fn a_broken_manifest_is_refused() {
    let deployment = fs::read_to_string(repo_root().join("deploy/kubernetes/deployment.yaml"))
        .expect("read deploy/kubernetes/deployment.yaml");

    // The unchanged copy passes on its own, so each failure below is its edit's doing.
    let intact = directory_with("manifests-intact", "deployment.yaml", &deployment);
    let (ok, printed) = validate(Some(intact.as_path()));
    assert!(ok, "the unchanged Deployment was refused:\n{printed}");
    let _ = fs::remove_dir_all(&intact);

    // (what, text in deployment.yaml, what it becomes, the name the failure must mention)
    let cases = [
        (
            "a misspelt field",
            "readinessProbe:",
            "readinesProbe:",
            "readinesProbe",
        ),
        (
            "a number written as a string",
            "terminationGracePeriodSeconds: 40",
            "terminationGracePeriodSeconds: \"40\"",
            "terminationGracePeriodSeconds",
        ),
    ];
    for (what, from, to, named) in cases {
        assert!(
            deployment.contains(from),
            "deployment.yaml no longer contains {from:?}: update this test"
        );
        let broken = directory_with(
            "manifests-broken",
            "deployment.yaml",
            &deployment.replacen(from, to, 1),
        );
        let (ok, printed) = validate(Some(broken.as_path()));
        let _ = fs::remove_dir_all(&broken);
        assert!(!ok, "{what} was accepted:\n{printed}");
        assert!(
            printed.contains(named),
            "{what}: the failure does not name {named}:\n{printed}"
        );
    }
}
