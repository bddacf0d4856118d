//! What the CLI reads: `ls`, `inspect`, `logs`.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use container_protocol::api::ContainerSummary;
use container_store::container::Status;

use super::Containers;
use crate::error::{bad, ApiError};

impl Containers {
    /// The container `given` names: the one of that name (its id), else the only one
    /// whose id begins with it. Unknown is left as given, for the verb's own "not
    /// found"; two matches are refused, naming them.
    pub fn resolve(&self, given: &str) -> Result<String, ApiError> {
        if given.is_empty() || self.records.container(given).is_some() {
            return Ok(given.to_string());
        }
        let mut matches: Vec<String> = self.records.scan(|all| {
            all.map(|(id, _)| id)
                .filter(|id| id.starts_with(given))
                .map(str::to_string)
                .collect()
        });
        matches.sort();
        match matches.len() {
            0 => Ok(given.to_string()),
            1 => Ok(matches.remove(0)),
            _ => Err(bad(format!(
                "container {given:?} is ambiguous: it begins {}",
                matches.join(", ")
            ))),
        }
    }

    pub fn list(&self, all: bool) -> Vec<Arc<ContainerSummary>> {
        let health = self.health.statuses();
        self.records.scan(|records| {
            records
                .filter(|(_, r)| all || r.state.status == Status::Running)
                .map(|(id, r)| match health.get(id) {
                    Some(h) if r.state.status == Status::Running => {
                        let mut s = (*r.summary).clone();
                        s.health = Some(h.clone());
                        Arc::new(s)
                    }
                    _ => r.summary.clone(),
                })
                .collect()
        })
    }

    pub fn inspect(&self, ids: Vec<String>) -> Result<String, ApiError> {
        let mut out = Vec::new();
        for id in ids {
            let (config, state) = self.load(&id)?;
            let mut state =
                serde_json::to_value(&state).map_err(|e| bad(format!("encode: {e}")))?;
            if let (Some(h), Some(obj)) = (self.health.get(&id), state.as_object_mut()) {
                obj.insert(
                    "health".into(),
                    serde_json::to_value(&h).map_err(|e| bad(format!("encode: {e}")))?,
                );
            }
            out.push(serde_json::json!({ "config": config, "state": state }));
        }
        serde_json::to_string_pretty(&out).map_err(|e| bad(format!("encode: {e}")))
    }

    /// The log's files, oldest first (the current one last), for the CLI to read.
    pub fn logs(&self, id: &str) -> Result<(bool, Vec<OwnedFd>), ApiError> {
        let (config, state) = self.load(id)?;
        let path = self.log_path(id)?;
        let mut fds = Vec::new();
        for file in container_store::logfile::files(&path, config.log.max_files) {
            match std::fs::File::open(&file) {
                Ok(f) => fds.push(OwnedFd::from(f)),
                // Rotated away between listing and opening: the next one is newer.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ApiError::io(format!("open {}", file.display()))(e)),
            }
        }
        Ok((state.status == Status::Running, fds))
    }
}
