//! Cleaning up after a dead sandbox by running `container-sandbox-helper cleanup`: the
//! sandbox's own code knows what a sandbox leaves on the host (veth names, the netns
//! mount, its files, how a returned device is found); the apiserver passes what its
//! record says, as JSON on the helper's stdin, and logs the report.

use std::time::Duration;

use container_protocol::sandbox::NetDeviceRecord;
use container_protocol::HelperKind;
use container_store::Paths;
use tokio::io::AsyncWriteExt;

use container_supervise::Spawner;

/// A hang guard: a cleanup takes milliseconds, or about two seconds waiting for devices.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the cleanup of container `id`'s sandbox. Failures are logged: a cleanup is
/// best effort, and running it again is safe.
pub async fn run(
    spawner: &Spawner,
    paths: &Paths,
    id: &str,
    ifnames: &[String],
    net_devices: &[NetDeviceRecord],
) {
    let input = serde_json::json!({ "ifnames": ifnames, "net_devices": net_devices });
    match tokio::time::timeout(TIMEOUT, spawn(spawner, paths, id, input.to_string())).await {
        Ok(Ok(report)) => log(id, &report),
        Ok(Err(e)) => tracing::warn!("container {id}: sandbox cleanup: {e}"),
        Err(_) => tracing::warn!("container {id}: sandbox cleanup did not finish in {TIMEOUT:?}"),
    }
}

async fn spawn(
    spawner: &Spawner,
    paths: &Paths,
    id: &str,
    input: String,
) -> Result<String, String> {
    let binary = spawner.binary(HelperKind::Sandbox);
    let mut child = tokio::process::Command::new(&binary)
        .arg("cleanup")
        .arg("--root")
        .arg(&paths.root)
        .arg("--run-dir")
        .arg(&paths.run)
        .arg("--id")
        .arg(id)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", binary.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| format!("write its input: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("wait: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() || out.status.code() == Some(1) {
        Ok(stdout)
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn log(id: &str, report: &str) {
    let Ok(report) = serde_json::from_str::<serde_json::Value>(report) else {
        tracing::warn!("container {id}: sandbox cleanup: unreadable report {report:?}");
        return;
    };
    let list = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    for name in list("restored") {
        tracing::info!("container {id}: net device {name} restored on the host");
    }
    for name in list("missing") {
        tracing::warn!(
            "container {id}: net device {name} did not come back (a virtual device dies with its namespace)"
        );
    }
    for e in list("errors") {
        tracing::warn!("container {id}: sandbox cleanup: {e}");
    }
}
