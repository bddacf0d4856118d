//! `container events`: the apiserver writes events as JSON lines into a pipe handed over
//! with the call; they are printed here as they come, one per line, until `--until` or
//! until the user stops reading.

use std::io::{BufRead, BufReader, Write};

use anyhow::{anyhow, Result};
use container_protocol::api::{ApiRequest, ApiResponse, Event, EventFilter, EventType};

use crate::client::{call_fds, ApiClient};
use crate::output::Format;
use crate::when;

/// `--filter KEY=VALUE`, as Docker spells them.
pub fn parse_filter(s: &str) -> Result<EventFilter, String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("filter {s:?}: expected KEY=VALUE"))?;
    if value.is_empty() {
        return Err(format!("filter {s:?}: empty value"));
    }
    match key {
        "type" => value.parse::<EventType>().map(EventFilter::Type),
        "container" | "network" | "image" | "object" => Ok(EventFilter::Object(value.into())),
        "event" | "action" => Ok(EventFilter::Action(value.into())),
        other => Err(format!(
            "filter {s:?}: unknown key {other:?} (use type, container, network, image or event)"
        )),
    }
}

fn human(e: &Event) -> String {
    let mut line = format!(
        "{} {} {} {}",
        when::format_rfc3339(e.time_nano),
        e.kind.as_str(),
        e.action,
        e.id
    );
    if !e.attributes.is_empty() {
        let attrs: Vec<String> = e
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line
}

pub async fn events(
    client: &ApiClient,
    since: Option<String>,
    until: Option<String>,
    filters: Vec<EventFilter>,
    format: Format,
) -> Result<i32> {
    let now = when::now();
    let since = since.map(|s| when::parse_at(&s, now)).transpose()?;
    let until = until.map(|s| when::parse_at(&s, now)).transpose()?;
    let (read, write) = nix::unistd::pipe()?;
    // The reader runs beside the call: the call returns only at `until`.
    let printer = std::thread::spawn(move || -> std::io::Result<()> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for line in BufReader::new(std::fs::File::from(read)).lines() {
            let line = line?;
            match format {
                Format::Json => writeln!(out, "{line}")?,
                Format::Table => match serde_json::from_str::<Event>(&line) {
                    Ok(e) => writeln!(out, "{}", human(&e))?,
                    Err(_) => writeln!(out, "{line}")?,
                },
            }
            out.flush()?;
        }
        Ok(())
    });
    let req = ApiRequest::Events {
        since,
        until,
        filters,
    };
    let reply = call_fds(client, req, vec![write]).await;
    // The apiserver closed its end: the printer reaches the end of what was sent.
    let printed = printer
        .join()
        .map_err(|_| anyhow!("the event printer failed"))?;
    match printed {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
        other => other?,
    }
    match reply?.0 {
        ApiResponse::Done => Ok(0),
        _ => Err(anyhow!("unexpected answer from the apiserver")),
    }
}
