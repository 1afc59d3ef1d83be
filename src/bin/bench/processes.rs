//! The processes under test: finding and building the gateway binary, pinning processes to
//! cores, starting them, and reading their CPU time and memory from `/proc`.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// The `portal-gateway` binary beside this one. Under `cargo run` it is rebuilt first (a no-op
/// when fresh), so the benchmark never measures a stale binary.
pub(crate) fn gateway_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let binary = me.with_file_name("portal-gateway");
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "--release", "--locked", "--bin", "portal-gateway"]);
        // `cargo run` gives this process the package's variables; a build script that watches
        // one (ring's watches CARGO_MANIFEST_DIR and OUT_DIR) would otherwise see it change
        // between this build and a plain `cargo build`, and rebuild ring and all above it.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || matches!(
                    &*name,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "OUT_DIR"
                )
            {
                build.env_remove(&*name);
            }
        }
        let status = build.status()?;
        if !status.success() {
            bail!("cargo could not build portal-gateway");
        }
    }
    if !binary.exists() {
        bail!(
            "{} is missing: run `cargo build --release` first",
            binary.display()
        );
    }
    Ok(binary)
}

/// Cores on the machine (not only those this process is pinned to).
pub(crate) fn cores() -> usize {
    std::env::var("PORTAL_GATEWAY_BENCH_CORES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

pub(crate) fn have_taskset() -> bool {
    std::process::Command::new("taskset")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A command pinned to `core` when pinning is possible.
pub(crate) fn pinned(core: usize, program: &Path) -> Command {
    if cores() >= 2 && have_taskset() {
        let mut command = Command::new("taskset");
        command.arg("-c").arg(core.to_string()).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Starts a child and waits for the line that starts with `prefix`; returns the rest of it.
pub(crate) async fn start(mut command: Command, prefix: &str) -> anyhow::Result<(Child, String)> {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok::<_, anyhow::Error>(rest.to_owned());
            }
        }
        bail!("exited before printing {prefix:?}")
    })
    .await
    .context("timed out waiting for the process to start")??;
    // Keep draining stdout (audit lines) so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, found))
}

/// (user + system CPU time, resident set size now, peak resident set size) of a process.
pub(crate) fn process_stats(pid: u32) -> anyhow::Result<(Duration, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit_once(") ").context("stat format")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let hz = clock_ticks_per_second();
    Ok((
        Duration::from_secs_f64(ticks as f64 / hz),
        kib("VmRSS:") * 1024,
        kib("VmHWM:") * 1024,
    ))
}

pub(crate) fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The pid of the real process (not `taskset`, which execs into it, so the pid is the same).
pub(crate) fn pid(child: &Child) -> anyhow::Result<u32> {
    child.id().context("child pid")
}

pub(crate) async fn emulator_requests(
    http: &reqwest::Client,
    emulator: &str,
) -> anyhow::Result<u64> {
    let body = http
        .get(format!("{emulator}/_emulator/requests"))
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let counts: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(counts["total"].as_u64().unwrap_or(0))
}
