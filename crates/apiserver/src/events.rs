//! The event bus: every lifecycle change the apiserver makes is published here, kept
//! in a bounded ring for `--since`, and streamed to `container events` subscribers.
//! Publishing never waits on a subscriber: a slow one misses what it could not take,
//! and is told so.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use container_protocol::api::{Event, EventFilter, EventType};
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;

/// How many past events `--since` can reach back to.
const KEPT: usize = 1024;

/// Each event is kept once and shared by the ring and the live channel, whose slots
/// hold theirs until overwritten: two copies of 1,024 events were a tenth of the
/// apiserver's memory with 1,000 containers.
pub struct Events {
    state: Mutex<(u64, VecDeque<Arc<Event>>)>,
    live: broadcast::Sender<Arc<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            state: Mutex::new((0, VecDeque::with_capacity(KEPT))),
            live: broadcast::channel(KEPT).0,
        }
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Events {
    pub fn publish(&self, kind: EventType, action: &str, id: &str, attributes: &[(&str, String)]) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 += 1;
        let event = Arc::new(Event {
            seq: st.0,
            time_nano: now_nanos(),
            kind,
            action: action.to_string(),
            id: id.to_string(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        });
        if st.1.len() >= KEPT {
            st.1.pop_front();
        }
        st.1.push_back(event.clone());
        // Sent under the lock, so live events follow the ring's order.
        let _ = self.live.send(event);
    }

    /// Streams events as JSON lines into `out`: the kept ones from `since`, then live
    /// ones, until `until` (seconds since the epoch) or until the reader goes.
    pub async fn stream(
        &self,
        out: std::os::fd::OwnedFd,
        since: Option<u64>,
        until: Option<u64>,
        filters: &[EventFilter],
    ) -> std::io::Result<()> {
        let mut out = tokio::net::unix::pipe::Sender::from_owned_fd(out)?;
        let (past, mut live) = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let past: Vec<Arc<Event>> = match since {
                Some(s) => {
                    st.1.iter()
                        .filter(|e| e.time_nano >= s.saturating_mul(1_000_000_000))
                        .cloned()
                        .collect()
                }
                None => Vec::new(),
            };
            (past, self.live.subscribe())
        };
        // `until` is a whole second, and takes in all of it.
        let until_nanos =
            until.map(|u| u.saturating_mul(1_000_000_000).saturating_add(999_999_999));
        let mut last = 0;
        for e in past {
            if until_nanos.is_some_and(|u| e.time_nano > u) {
                return Ok(());
            }
            last = e.seq;
            if e.matches(filters) {
                write_line(&mut out, &e).await?;
            }
        }
        loop {
            let next = match until_nanos {
                Some(u) => {
                    let left = u.saturating_sub(now_nanos());
                    match tokio::time::timeout(std::time::Duration::from_nanos(left), live.recv())
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => return Ok(()),
                    }
                }
                None => live.recv().await,
            };
            match next {
                Ok(e) if e.seq <= last => continue,
                Ok(e) => {
                    if until_nanos.is_some_and(|u| e.time_nano > u) {
                        return Ok(());
                    }
                    last = e.seq;
                    if e.matches(filters) {
                        write_line(&mut out, &e).await?;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("an events subscriber fell {n} events behind");
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }
}

async fn write_line(out: &mut tokio::net::unix::pipe::Sender, e: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line).await
}
