//! Operations in flight. An operation the apiserver has begun runs to its end or to its
//! undo, whatever its client does; while it runs, what it holds (containers it is
//! starting, the attachments they are being given, networks being created or removed)
//! is live for GC and `system check`, which must never release or remove it. At
//! shutdown the apiserver refuses new operations and lets these finish.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::ApiError;

/// What an operation holds while it runs.
#[derive(Debug, Clone, Default)]
pub struct Holds {
    pub containers: Vec<String>,
    /// (network, container, ifname).
    pub attachments: Vec<(String, String, String)>,
    pub networks: Vec<String>,
}

impl Holds {
    pub fn container(id: &str) -> Holds {
        Holds {
            containers: vec![id.to_string()],
            ..Holds::default()
        }
    }

    pub fn networks(names: &[String]) -> Holds {
        Holds {
            networks: names.to_vec(),
            ..Holds::default()
        }
    }
}

struct Active {
    what: String,
    holds: Holds,
}

#[derive(Default)]
struct State {
    next: u64,
    active: HashMap<u64, Active>,
    closed: bool,
}

#[derive(Default)]
pub struct Ops {
    state: Mutex<State>,
    idle: Notify,
}

/// Held by a running operation; dropping it ends the operation.
pub struct OpGuard {
    ops: Arc<Ops>,
    id: u64,
}

impl Drop for OpGuard {
    fn drop(&mut self) {
        let empty = {
            let mut st = self.ops.lock();
            st.active.remove(&self.id);
            st.active.is_empty()
        };
        if empty {
            self.ops.idle.notify_waiters();
        }
    }
}

impl OpGuard {
    /// Adds to what the operation holds, as it learns more.
    pub fn hold(&self, more: Holds) {
        if let Some(a) = self.ops.lock().active.get_mut(&self.id) {
            a.holds.containers.extend(more.containers);
            a.holds.attachments.extend(more.attachments);
            a.holds.networks.extend(more.networks);
        }
    }
}

impl Ops {
    pub fn new() -> Arc<Ops> {
        Arc::new(Ops::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(self: &Arc<Self>, what: &str, holds: Holds) -> OpGuard {
        let mut st = self.lock();
        st.next += 1;
        let id = st.next;
        st.active.insert(
            id,
            Active {
                what: what.to_string(),
                holds,
            },
        );
        OpGuard {
            ops: self.clone(),
            id,
        }
    }

    /// Begins a client's operation; refused once the apiserver is shutting down.
    pub fn begin(self: &Arc<Self>, what: &str, holds: Holds) -> Result<OpGuard, ApiError> {
        if self.lock().closed {
            return Err(ApiError::Unavailable(format!(
                "{what}: the apiserver is shutting down; try again when it is back"
            )));
        }
        Ok(self.insert(what, holds))
    }

    /// Whether the apiserver is shutting down (no new operation begins).
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Tracks work the apiserver does on its own (a container's exit): never refused,
    /// and waited for at shutdown like the rest.
    pub fn track(self: &Arc<Self>, what: &str, holds: Holds) -> OpGuard {
        self.insert(what, holds)
    }

    pub fn holds_container(&self, id: &str) -> bool {
        self.lock()
            .active
            .values()
            .any(|a| a.holds.containers.iter().any(|c| c == id))
    }

    pub fn holds_network(&self, name: &str) -> bool {
        self.lock()
            .active
            .values()
            .any(|a| a.holds.networks.iter().any(|n| n == name))
    }

    /// (container, ifname) of every attachment being made on `network`.
    pub fn attachments_on(&self, network: &str) -> Vec<(String, String)> {
        self.lock()
            .active
            .values()
            .flat_map(|a| a.holds.attachments.iter())
            .filter(|(n, _, _)| n == network)
            .map(|(_, c, i)| (c.clone(), i.clone()))
            .collect()
    }

    pub fn in_flight(&self) -> Vec<String> {
        let mut what: Vec<String> = self
            .lock()
            .active
            .values()
            .map(|a| a.what.clone())
            .collect();
        what.sort();
        what
    }

    /// Refuses new operations from now on, then waits until those in flight are done or
    /// `deadline` passes. Returns what was still running.
    pub async fn drain(&self, deadline: Duration) -> Vec<String> {
        self.lock().closed = true;
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.lock().active.is_empty() {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
        self.in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn holds_last_as_long_as_the_guard_and_drain_waits_for_it() {
        let ops = Ops::new();
        let g = ops
            .begin(
                "start c1",
                Holds {
                    containers: vec!["c1".into()],
                    attachments: vec![("n1".into(), "c1".into(), "eth0".into())],
                    networks: vec![],
                },
            )
            .unwrap();
        assert!(ops.holds_container("c1"));
        assert_eq!(
            ops.attachments_on("n1"),
            vec![("c1".to_string(), "eth0".to_string())]
        );
        assert!(ops.attachments_on("n2").is_empty());
        g.hold(Holds::networks(&["n2".to_string()]));
        assert!(ops.holds_network("n2"));
        let o2 = ops.clone();
        let drained = tokio::spawn(async move { o2.drain(Duration::from_secs(20)).await });
        tokio::task::yield_now().await;
        assert!(
            ops.begin("late", Holds::default()).is_err(),
            "closed while draining"
        );
        let _tracked = ops.track("exit", Holds::default());
        drop(_tracked);
        drop(g);
        assert!(drained.await.unwrap().is_empty());
        assert!(!ops.holds_container("c1"));
    }
}
