//! The Python and Node clients' own suites against the real binary, and the README snippets,
//! which must be exactly the code those suites run.

use std::process::Command;

use crate::helpers::repo_root;

const BINARY: &str = env!("CARGO_BIN_EXE_portal-gateway");

/// Runs one language's suite through `scripts/client-suites.sh` (which installs what it needs).
fn suite(language: &str) {
    let output = Command::new(repo_root().join("scripts/client-suites.sh"))
        .arg(language)
        .env("PORTAL_GATEWAY_BIN", BINARY)
        .output()
        .expect("run scripts/client-suites.sh");
    assert!(
        output.status.success(),
        "the {language} client suite failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_python_client_suite_passes_against_the_binary() {
    suite("python");
}

#[test]
fn the_node_client_suite_passes_against_the_binary() {
    suite("node");
}

/// The lines between `snippet:<name>-start` and `snippet:<name>-end` in `file`, dedented.
fn region(file: &str, name: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join(file)).expect("snippet source");
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end().ends_with(&format!("snippet:{name}-start")))
        .unwrap_or_else(|| panic!("{file} has no snippet:{name}-start"));
    let end = lines
        .iter()
        .position(|l| l.trim_end().ends_with(&format!("snippet:{name}-end")))
        .unwrap_or_else(|| panic!("{file} has no snippet:{name}-end"));
    let body = &lines[start + 1..end];
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn readme_snippets_are_the_tested_code() {
    let mut checked = 0;
    for readme in ["README.md", "clients/README.md"] {
        let text = std::fs::read_to_string(repo_root().join(readme)).expect("readme");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(rest) = line.strip_prefix("<!-- snippet:") else {
                continue;
            };
            let (name, source) = rest
                .trim_end_matches(" -->")
                .split_once(" (")
                .expect("<!-- snippet:NAME (path) -->");
            let source = source.trim_end_matches(')');
            let fence = lines[i + 1];
            assert!(
                fence.starts_with("```"),
                "{readme}: a code block follows {name}"
            );
            let close = lines[i + 2..]
                .iter()
                .position(|l| l.starts_with("```"))
                .expect("closing fence");
            let shown = lines[i + 2..i + 2 + close].join("\n");
            assert_eq!(
                shown,
                region(source, name),
                "{readme}: snippet {name} differs from {source}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} snippets found");
}
