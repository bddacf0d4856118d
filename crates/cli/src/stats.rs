//! `container stats [--no-stream] [--format json] [ID...]`: CPU, memory, pids and
//! network of running containers. The apiserver answers counters; the CLI takes two
//! readings a second apart and shows the CPU share between them (100% = one CPU), as
//! Docker does.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Result};
use container_protocol::api::{ApiRequest, ApiResponse, ContainerStats};
use container_store::Paths;
use serde::Serialize;

use crate::client::{call, connect, ApiClient};
use crate::output::{self, Format};

const INTERVAL: Duration = Duration::from_secs(1);

/// One line of `stats`, as `--format json` prints it.
#[derive(Debug, Serialize)]
struct Line {
    id: String,
    cpu_percent: Option<f64>,
    memory_usage: Option<u64>,
    memory_limit: Option<u64>,
    memory_percent: Option<f64>,
    pids: Option<u64>,
    net_rx_bytes: u64,
    net_tx_bytes: u64,
}

async fn read(client: &ApiClient, ids: &[String]) -> Result<Vec<ContainerStats>> {
    match call(client, ApiRequest::ContainerStats(ids.to_vec())).await? {
        ApiResponse::Stats(s) => Ok(s),
        _ => bail!("unexpected answer from the apiserver"),
    }
}

fn lines(before: &HashMap<String, ContainerStats>, now: &[ContainerStats]) -> Vec<Line> {
    now.iter()
        .map(|s| {
            let cpu_percent = before.get(&s.id).and_then(|b| {
                let used = s.cpu_usage_ns?.checked_sub(b.cpu_usage_ns?)?;
                let wall = s.read_at_ns.checked_sub(b.read_at_ns).filter(|w| *w > 0)?;
                Some(used as f64 * 100.0 / wall as f64)
            });
            let memory_percent = match (s.memory_usage, s.memory_limit) {
                (Some(u), Some(l)) if l > 0 => Some(u as f64 * 100.0 / l as f64),
                _ => None,
            };
            Line {
                id: s.id.clone(),
                cpu_percent,
                memory_usage: s.memory_usage,
                memory_limit: s.memory_limit,
                memory_percent,
                pids: s.pids,
                net_rx_bytes: s.net_rx_bytes,
                net_tx_bytes: s.net_tx_bytes,
            }
        })
        .collect()
}

/// 1.5KiB, 12MiB: units of 1024, as Docker shows them.
fn size(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", units[i])
    }
}

fn print(lines: &[Line], format: Format) -> Result<()> {
    if format == Format::Json {
        return output::json(&lines);
    }
    let pct = |p: Option<f64>| p.map_or("--".to_string(), |p| format!("{p:.2}%"));
    let opt = |v: Option<u64>| v.map_or("--".to_string(), size);
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            vec![
                l.id.clone(),
                pct(l.cpu_percent),
                format!("{} / {}", opt(l.memory_usage), opt(l.memory_limit)),
                pct(l.memory_percent),
                format!("{} / {}", size(l.net_rx_bytes), size(l.net_tx_bytes)),
                l.pids.map_or("--".into(), |p| p.to_string()),
            ]
        })
        .collect();
    output::table(
        &[
            "CONTAINER",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "PIDS",
        ],
        &rows,
    )?;
    Ok(())
}

pub async fn stats(
    paths: &Paths,
    ids: Vec<String>,
    no_stream: bool,
    format: Format,
) -> Result<i32> {
    let client = connect(&paths.apiserver_socket()).await?;
    let mut before: HashMap<String, ContainerStats> = read(&client, &ids)
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    loop {
        tokio::time::sleep(INTERVAL).await;
        let now = read(&client, &ids).await?;
        print(&lines(&before, &now), format)?;
        if no_stream {
            return Ok(0);
        }
        before = now.into_iter().map(|s| (s.id.clone(), s)).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_share_is_cpu_time_over_wall_time() {
        let at = |t: u64, cpu: u64| ContainerStats {
            id: "a".into(),
            read_at_ns: t,
            cpu_usage_ns: Some(cpu),
            memory_usage: Some(50),
            memory_limit: Some(200),
            pids: Some(1),
            net_rx_bytes: 0,
            net_tx_bytes: 0,
        };
        let before: HashMap<String, ContainerStats> = [("a".to_string(), at(0, 0))].into();
        let l = lines(&before, &[at(1_000_000_000, 500_000_000)]);
        assert_eq!(l[0].cpu_percent, Some(50.0));
        assert_eq!(l[0].memory_percent, Some(25.0));
        assert_eq!(size(1536), "1.5KiB");
    }
}
