//! Running one CNI plugin binary (CNI spec 1.0, "Execution Protocol").

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use crate::error::PluginError;

/// A plugin that hangs (a stuck DHCP client) must not wedge the helper forever.
const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
        }
    }
}

/// The environment of one invocation.
pub struct Invocation<'a> {
    pub command: Command,
    pub container_id: &'a str,
    /// Optional for DEL only.
    pub netns: Option<&'a str>,
    pub ifname: &'a str,
    pub cni_path: &'a str,
    /// `CNI_ARGS` (`K=V;K=V`), e.g. a MAC for bridge and tuning.
    pub args: Option<&'a str>,
    /// Capability values (`ips`, `portMappings`) for the plugins that declare them.
    pub runtime: &'a Map<String, Value>,
}

/// Finds `name` in the colon-separated `cni_path`, as runtimes resolve `type`.
pub fn find_binary(name: &str, cni_path: &str) -> Option<PathBuf> {
    cni_path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The stdin of a plugin: its own conflist entry plus the list's name and version, the
/// previous result when there is one, and in `runtimeConfig` the values of the
/// capabilities the entry declares (libcni's rule: a plugin gets only what it asked
/// for).
pub fn stdin_config(
    entry: &Map<String, Value>,
    name: &str,
    cni_version: &str,
    prev_result: Option<&Value>,
    runtime: &Map<String, Value>,
) -> Vec<u8> {
    let mut conf = entry.clone();
    conf.insert("name".into(), Value::String(name.to_string()));
    conf.insert("cniVersion".into(), Value::String(cni_version.to_string()));
    let wanted: Map<String, Value> = runtime
        .iter()
        .filter(|(capability, _)| super::conflist::declares(entry, capability))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if wanted.is_empty() {
        conf.remove("runtimeConfig");
    } else {
        conf.insert("runtimeConfig".into(), Value::Object(wanted));
    }
    match prev_result {
        Some(prev) => conf.insert("prevResult".into(), prev.clone()),
        None => conf.remove("prevResult"),
    };
    // Serialising a Map of Values cannot fail.
    serde_json::to_vec(&Value::Object(conf)).unwrap_or_default()
}

/// Runs plugin `plugin_type` and returns its stdout as JSON (ADD's result; DEL and CHECK
/// print nothing on success).
pub async fn run(
    plugin_type: &str,
    stdin: Vec<u8>,
    inv: &Invocation<'_>,
) -> Result<Option<Value>, PluginError> {
    let fail = |message: String| PluginError::Cni {
        plugin: plugin_type.to_string(),
        command: inv.command.as_str(),
        message,
    };
    let binary = find_binary(plugin_type, inv.cni_path)
        .ok_or_else(|| fail(format!("binary not found in CNI_PATH {}", inv.cni_path)))?;
    let mut cmd = tokio::process::Command::new(&binary);
    cmd.env("CNI_COMMAND", inv.command.as_str())
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns.unwrap_or(""))
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_PATH", inv.cni_path)
        .env("CNI_ARGS", inv.args.unwrap_or(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("run {}: {e}", binary.display())))?;
    let pipe = child.stdin.take();
    // Written while the output is read, so a chatty plugin cannot deadlock on a full pipe.
    let write = async move {
        if let Some(mut pipe) = pipe {
            pipe.write_all(&stdin).await?;
            pipe.shutdown().await?;
        }
        Ok::<(), std::io::Error>(())
    };
    let run = async { tokio::join!(write, child.wait_with_output()) };
    let (written, output) = tokio::time::timeout(TIMEOUT, run)
        .await
        .map_err(|_| fail(format!("no answer within {}s", TIMEOUT.as_secs())))?;
    let output = output.map_err(|e| fail(format!("wait: {e}")))?;
    if !output.status.success() {
        return Err(fail(error_message(
            &output.stdout,
            &output.stderr,
            output.status,
        )));
    }
    // A plugin may exit before reading stdin only if it failed; success with a broken
    // pipe means it never saw its config.
    written.map_err(|e| fail(format!("write config: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if stdout.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(stdout.trim())
        .map(Some)
        .map_err(|e| fail(format!("result is not valid JSON: {e}")))
}

/// The spec's error object (`code`, `msg`, `details`) when the plugin printed one, else
/// its stderr.
fn error_message(stdout: &[u8], stderr: &[u8], status: std::process::ExitStatus) -> String {
    if let Ok(Value::Object(err)) = serde_json::from_slice::<Value>(stdout) {
        let msg = err.get("msg").and_then(Value::as_str).unwrap_or("failed");
        let mut text = msg.to_string();
        if let Some(details) = err.get("details").and_then(Value::as_str) {
            if !details.is_empty() {
                text = format!("{text}: {details}");
            }
        }
        if let Some(code) = err.get("code").and_then(Value::as_u64) {
            text = format!("{text} (code {code})");
        }
        return text;
    }
    let stderr = String::from_utf8_lossy(stderr);
    let stderr = stderr.trim();
    if stderr.is_empty() {
        format!("exited with {status}")
    } else {
        format!("exited with {status}: {stderr}")
    }
}
