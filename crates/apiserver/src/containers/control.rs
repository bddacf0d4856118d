//! Stop, kill, remove, wait. A helper that does not answer never hangs these: `stop`
//! and `rm -f` escalate (a grace period, then SIGKILL of the helper's whole process
//! group, then the cleanup a dead helper gets), `kill` fails with a timeout.

use std::sync::Arc;

use container_protocol::sandbox::ExitStatus;
use container_protocol::HelperKind;
use container_store::container::Status;
use container_supervise::{Helper, SandboxProto};

use super::Containers;
use crate::error::ApiError;
use crate::ops::Holds;

/// The helper of a running container, as far as calls to it go.
enum Sandbox {
    Answering(Helper<SandboxProto>),
    /// Alive, not answering.
    Stuck(u32),
    Gone,
}

impl Containers {
    fn sandbox(&self, id: &str) -> Sandbox {
        if let Some(h) = self.sandboxes.get(id) {
            return Sandbox::Answering(h);
        }
        match self.sandboxes.stuck(id) {
            Some(s) => Sandbox::Stuck(s.pidfd.pid()),
            None => Sandbox::Gone,
        }
    }

    /// The helper of a running container that answers, or why there is none.
    pub(super) fn running_helper(&self, id: &str) -> Result<Helper<SandboxProto>, ApiError> {
        let (_, state) = self.load(id)?;
        if state.status != Status::Running {
            return Err(ApiError::Conflict(format!("container {id} is not running")));
        }
        match self.sandbox(id) {
            Sandbox::Answering(h) => Ok(h),
            Sandbox::Stuck(pid) => Err(ApiError::Unavailable(format!(
                "container {id}: its sandbox helper (pid {pid}) is alive but does not answer"
            ))),
            Sandbox::Gone => Err(ApiError::Conflict(format!(
                "container {id}: its sandbox helper is gone"
            ))),
        }
    }

    pub async fn kill(self: &Arc<Self>, id: &str, signal: i32) -> Result<(), ApiError> {
        let helper = self.running_helper(id)?;
        // A signal meant to end it ends it for the restart policy too; others (HUP,
        // USR1) are messages to a workload that goes on.
        if [
            nix::libc::SIGKILL,
            nix::libc::SIGTERM,
            nix::libc::SIGINT,
            nix::libc::SIGQUIT,
        ]
        .contains(&signal)
        {
            self.mark_user_stop(id);
        }
        helper
            .kill(signal)
            .await
            .map_err(|e| ApiError::from(e).context(format!("container {id}: kill")))
    }

    /// `signal`, then SIGKILL after `timeout_secs`; returns once the container is
    /// stopped and its record says so.
    pub async fn stop(
        self: &Arc<Self>,
        id: &str,
        signal: i32,
        timeout_secs: u64,
    ) -> Result<(), ApiError> {
        let _op = self
            .ops
            .begin(&format!("stop {id}"), Holds::container(id))?;
        // Subscribed before the state is read, so an exit in between is not missed.
        let mut rx = self.exit_watch(id).subscribe();
        let seen = rx.borrow_and_update().0;
        // Read under the container's lock, so a start in flight has ended first: its
        // record says `running` before its workload is started, and a stop that came
        // in between would find a helper with nothing to stop, kill it, and wait for
        // an exit the start's undo never announces.
        let (config, state) = {
            let lock = self.locks.get(id);
            let _guard = lock.lock().await;
            self.load(id)?
        };
        if state.status != Status::Running {
            return Err(ApiError::Conflict(format!("container {id} is not running")));
        }
        self.mark_user_stop(id);
        // 0: the container's own stop signal (its image's StopSignal), else SIGTERM.
        let signal = if signal == 0 {
            stop_signal(&config)
        } else {
            signal
        };
        let escalate = match self.sandbox(id) {
            Sandbox::Answering(helper) => match helper.stop(signal, timeout_secs).await {
                Ok(_) => None,
                // Its watcher finishes it.
                Err(e) if e.is_gone() => None,
                Err(e) => Some(format!("{e}")),
            },
            Sandbox::Stuck(pid) => Some(format!("its sandbox helper (pid {pid}) does not answer")),
            Sandbox::Gone => Some("its sandbox helper is gone".to_string()),
        };
        if let Some(why) = escalate {
            tracing::warn!("container {id}: stop: {why}; killing the sandbox");
            self.sandboxes.kill(id).await;
            // Finished here rather than by a watcher, which a stuck helper never had.
            self.finish(id, None, Some(format!("killed by stop: {why}")))
                .await?;
            // Finished, by this or by its watcher: there is no exit left to wait for.
            if !matches!(self.load(id), Ok((_, s)) if s.status == Status::Running) {
                return Ok(());
            }
        }
        let finished = rx
            .wait_for(|(seq, _)| *seq > seen)
            .await
            .map(|v| v.1.clone())
            .map_err(|_| ApiError::Internal(format!("container {id}: stop: wait abandoned")))?;
        match finished.and_then(|f| f.unsaved) {
            Some(unsaved) => Err(ApiError::Internal(unsaved)),
            None => Ok(()),
        }
    }

    pub async fn remove(
        self: &Arc<Self>,
        id: &str,
        force: bool,
        volumes: bool,
    ) -> Result<(), ApiError> {
        let _op = self.ops.begin(&format!("rm {id}"), Holds::container(id))?;
        let state = match self.load(id) {
            Ok((_, state)) => state,
            // An unreadable record can still be removed by force, with whatever of it
            // may be left on the host.
            Err(ApiError::Store(e)) if force => {
                tracing::warn!("container {id}: removing an unreadable record: {e}");
                self.sandboxes.kill(id).await;
                self.remove_sandbox_remains(id, &[]).await;
                self.records.remove_container(id)?;
                self.sandboxes.spawner().remove_log(HelperKind::Sandbox, id);
                self.forget(id);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if state.status == Status::Running {
            if !force {
                return Err(ApiError::Conflict(format!(
                    "container {id} is running: stop it first or use rm -f"
                )));
            }
            match self
                .stop(id, nix::sys::signal::Signal::SIGKILL as i32, 0)
                .await
            {
                // Stopped meanwhile, or stopped with a record not yet written: it is
                // about to be removed anyway.
                Ok(()) | Err(ApiError::Conflict(_)) | Err(ApiError::Internal(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        if let Ok((_, state)) = self.load(id) {
            if state.status == Status::Running {
                return Err(ApiError::Conflict(format!(
                    "container {id} started again while being removed"
                )));
            }
        }
        let config = self.load(id).ok().map(|(c, _)| c);
        self.records
            .remove_container(id)
            .map_err(|e| ApiError::from(e).context(format!("container {id}: rm")))?;
        self.sandboxes.spawner().remove_log(HelperKind::Sandbox, id);
        self.forget(id);
        if let (true, Some(config)) = (volumes, &config) {
            self.remove_anonymous_volumes(config).await;
        }
        tracing::info!("container {id} removed");
        self.publish("destroy", id, &[]);
        Ok(())
    }

    /// Resolves when the container next stops, at once if it is stopped.
    pub async fn wait(self: &Arc<Self>, id: &str) -> Result<ExitStatus, ApiError> {
        let mut rx = self.exit_watch(id).subscribe();
        let seen = rx.borrow_and_update().0;
        let state = match self.load(id) {
            Ok((_, state)) => state,
            Err(ApiError::NotFound { kind, name }) => {
                self.forget(id);
                return self
                    .removed_exit(id)
                    .ok_or(ApiError::NotFound { kind, name });
            }
            Err(e) => return Err(e),
        };
        // A created container is waited for: its start is on its way (`start -a`).
        if state.status == Status::Stopped {
            return Ok(ExitStatus::new(state.exit_code.unwrap_or(137), None));
        }
        let finished = rx
            .wait_for(|(seq, _)| *seq > seen)
            .await
            .map(|v| v.1.clone())
            .map_err(|_| ApiError::Internal(format!("container {id}: wait abandoned")))?;
        finished
            .map(|f| f.status)
            .ok_or_else(|| ApiError::Internal(format!("container {id}: no exit status")))
    }
}

/// An image's StopSignal (`SIGQUIT`, `QUIT`, `3`), else SIGTERM, as Docker.
fn stop_signal(config: &container_store::container::ContainerConfig) -> i32 {
    use nix::sys::signal::Signal;
    let parsed = config
        .image
        .as_ref()
        .and_then(|i| i.stop_signal.as_deref())
        .and_then(|s| {
            if let Ok(n) = s.parse::<i32>() {
                return Signal::try_from(n).ok();
            }
            let upper = s.to_ascii_uppercase();
            let name = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            name.parse::<Signal>().ok()
        });
    parsed.unwrap_or(Signal::SIGTERM) as i32
}
