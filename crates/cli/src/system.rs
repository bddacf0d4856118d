//! `container system start|stop|status`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use container_protocol::api::{ApiRequest, ApiResponse};
use container_store::Paths;

use crate::client::{call, connect, try_connect, ConnectError};
use crate::output::{self, Format};

const START_TIMEOUT: Duration = Duration::from_secs(15);

fn sibling(name: &str) -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)));
    match beside {
        Some(p) if p.exists() => p,
        _ => PathBuf::from(name),
    }
}

/// Starts the apiserver detached when no supervisor runs it, and waits until it answers.
pub async fn start(paths: &Paths) -> Result<()> {
    let socket = paths.apiserver_socket();
    match try_connect(&socket).await {
        Ok(client) => {
            if let ApiResponse::Status(s) = call(&client, ApiRequest::Status).await? {
                println!("apiserver already running (pid {})", s.pid);
            }
            return Ok(());
        }
        Err(ConnectError::NotRunning) => {}
        Err(ConnectError::Other(e)) => return Err(e),
    }
    std::fs::create_dir_all(&paths.run)
        .with_context(|| format!("create {}", paths.run.display()))?;
    let log_path = paths.apiserver_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let binary = sibling("container-apiserver");
    let mut cmd = std::process::Command::new(&binary);
    cmd.arg("--root")
        .arg(&paths.root)
        .arg("--run-dir")
        .arg(&paths.run)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own session: closing this terminal must not stop it.
    use std::os::unix::process::CommandExt;
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(Into::into));
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(client) = try_connect(&socket).await {
            if let ApiResponse::Status(s) = call(&client, ApiRequest::Status).await? {
                println!("apiserver started (pid {})", s.pid);
            }
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the apiserver exited while starting ({status}){}",
                tail(&log_path)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the apiserver did not answer within {}s{}",
                START_TIMEOUT.as_secs(),
                tail(&log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tail(path: &Path) -> String {
    // The last few KiB hold the last lines: the log may be 10 MiB.
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file
            .seek(SeekFrom::End(-4096))
            .or_else(|_| file.seek(SeekFrom::Start(0)));
        let _ = file.take(4096).read_to_end(&mut bytes);
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    if lines.is_empty() {
        return String::new();
    }
    format!(
        "; {} ends: {}",
        path.display(),
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    )
}

/// Stops every helper and then the apiserver, and waits until it is gone.
pub async fn stop(paths: &Paths) -> Result<()> {
    let socket = paths.apiserver_socket();
    let client = match try_connect(&socket).await {
        Ok(c) => c,
        Err(ConnectError::NotRunning) => {
            println!("apiserver is not running");
            return Ok(());
        }
        Err(ConnectError::Other(e)) => return Err(e),
    };
    match client.call(ApiRequest::Stop { helpers: true }).await {
        Ok(_) => {}
        // It may exit before its answer leaves: that is what we asked for.
        Err(e) if e.is_gone() => {}
        Err(e) => return Err(anyhow!("{e}")),
    }
    client.closed().await;
    let deadline = Instant::now() + START_TIMEOUT;
    while socket.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("apiserver stopped");
    Ok(())
}

pub async fn status(paths: &Paths, format: Format) -> Result<()> {
    let client = connect(&paths.apiserver_socket()).await?;
    let ApiResponse::Status(s) = call(&client, ApiRequest::Status).await? else {
        bail!("unexpected answer from the apiserver");
    };
    if format == Format::Json {
        return output::json(&s);
    }
    println!(
        "apiserver  {} (pid {}, up {})",
        s.version,
        s.pid,
        output::duration(s.uptime_secs)
    );
    println!("root       {}", s.root);
    println!("run dir    {}", s.run_dir);
    println!();
    let rows: Vec<Vec<String>> = s
        .helpers
        .iter()
        .map(|h| vec![h.kind.to_string(), h.id.clone(), h.pid.to_string()])
        .collect();
    output::table(&["KIND", "ID", "PID"], &rows)?;
    if !s.operations.is_empty() {
        println!();
        println!("in flight  {}", s.operations.join(", "));
    }
    Ok(())
}

/// Lists leaked or inconsistent resources; exits non-zero if there is any (after
/// `--fix`, if any could not be repaired).
pub async fn check(paths: &Paths, fix: bool, digests: bool, format: Format) -> Result<i32> {
    let client = connect(&paths.apiserver_socket()).await?;
    let req = if digests {
        ApiRequest::CheckDeep { fix }
    } else {
        ApiRequest::Check { fix }
    };
    let ApiResponse::Findings(findings) = call(&client, req).await? else {
        bail!("unexpected answer from the apiserver");
    };
    if format == Format::Json {
        output::json(&findings)?;
    } else if findings.is_empty() {
        println!("no leaked or inconsistent resources");
    } else {
        let rows: Vec<Vec<String>> = findings
            .iter()
            .map(|f| {
                vec![
                    f.kind.to_string(),
                    f.object.clone(),
                    f.detail.clone(),
                    if f.fixed { "fixed".into() } else { "-".into() },
                ]
            })
            .collect();
        output::table(&["KIND", "OBJECT", "DETAIL", "FIX"], &rows)?;
    }
    let unresolved = findings.iter().any(|f| !(fix && f.fixed));
    Ok(if unresolved { 1 } else { 0 })
}

/// `system prune`: the apiserver removes, in one operation, what nothing uses.
pub async fn prune(paths: &Paths, all: bool, volumes: bool, format: Format) -> Result<i32> {
    let client = connect(&paths.apiserver_socket()).await?;
    let ApiResponse::Json(j) = call(&client, ApiRequest::SystemPrune { all, volumes }).await?
    else {
        bail!("unexpected answer from the apiserver");
    };
    let v: serde_json::Value = serde_json::from_str(&j)?;
    if format == Format::Json {
        output::json(&v)?;
        return Ok(0);
    }
    for (key, title) in [
        ("containers", "Deleted containers"),
        ("networks", "Deleted networks"),
        ("volumes", "Deleted volumes"),
    ] {
        let list: Vec<&str> = v[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .collect();
        if !list.is_empty() {
            println!("{title}:");
            for x in list {
                println!("{x}");
            }
            println!();
        }
    }
    let images: Vec<&str> = v["images"]["images"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str())
        .collect();
    if !images.is_empty() {
        println!("Deleted images:");
        for x in images {
            println!("{x}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        crate::image::size(v["images"]["reclaimed"].as_u64().unwrap_or(0))
    );
    let failed: Vec<&str> = v["failed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str())
        .collect();
    for f in &failed {
        eprintln!("container: not removed: {f}");
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}
