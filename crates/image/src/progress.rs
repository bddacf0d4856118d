//! Progress of a pull or load, as events: the apiserver writes them as JSON lines into
//! a pipe the CLI passed with its call, and the CLI draws them.

use std::io::Write;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Resolving the reference, fetching manifests.
    Resolving,
    Waiting,
    Downloading,
    /// Already in the store.
    Exists,
    Unpacking,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// A layer's short digest, or the reference for whole-image events.
    pub id: String,
    pub status: Status,
    #[serde(default)]
    pub current: u64,
    #[serde(default)]
    pub total: u64,
}

pub trait Progress: Send + Sync {
    fn event(&self, e: Event);
}

/// Nobody listens.
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: Event) {}
}

/// JSON lines into a file or pipe; a reader gone away is no error (the work goes on).
pub struct JsonLines {
    out: Mutex<Option<std::fs::File>>,
}

impl JsonLines {
    pub fn new(out: std::fs::File) -> JsonLines {
        JsonLines {
            out: Mutex::new(Some(out)),
        }
    }
}

impl Progress for JsonLines {
    fn event(&self, e: Event) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let Some(f) = out.as_mut() else { return };
        let Ok(mut line) = serde_json::to_vec(&e) else {
            return;
        };
        line.push(b'\n');
        if f.write_all(&line).is_err() {
            // EPIPE: the CLI went away; stop writing.
            *out = None;
        }
    }
}

/// Downloads report at most this often per layer, so a fast loopback pull does not
/// spend its time on events.
pub const EVERY_BYTES: u64 = 1 << 20;
