//! Health checks: while a container with a check runs, the apiserver execs the check
//! inside it every interval, confined exactly as `exec` is, and keeps the outcome in
//! memory (status, failing streak, the last few results) for `ls`, `inspect` and
//! `events`. An unhealthy container is killed or restarted when it asked for that.
//!
//! One task per run: it ends when the run it was started for ends (a restart is a new
//! run, with a new task), so no check ever runs against a later run's workload.

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use container_protocol::container::{HealthAction, HealthConfig};
use container_protocol::sandbox::Stdio;
use container_store::container::Status;
use container_store::unix_now;
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::validate::process_spec;
use super::Containers;

/// Results kept per container, as Docker keeps them.
const KEPT_RESULTS: usize = 5;
/// Output kept per result.
const KEPT_OUTPUT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HealthResult {
    pub start: u64,
    pub end: u64,
    pub exit_code: i32,
    pub output: String,
}

/// What `inspect` shows under `state.health`.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub status: HealthStatus,
    pub failing_streak: u32,
    pub log: VecDeque<HealthResult>,
    /// Which run these results are of (its start time).
    #[serde(skip)]
    run: Option<u64>,
}

#[derive(Default)]
pub struct HealthTable(std::sync::Mutex<HashMap<String, Health>>);

impl HealthTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Health>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<Health> {
        self.lock().get(id).cloned()
    }

    /// Each checked container's status, for `ls`: one lock, no logs copied.
    pub fn statuses(&self) -> HashMap<String, String> {
        self.lock()
            .iter()
            .map(|(id, h)| (id.clone(), h.status.as_str().to_string()))
            .collect()
    }

    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// The next status after one result, and whether it changed. Pure.
pub fn next_status(
    health: &Health,
    passed: bool,
    retries: u32,
    in_start_period: bool,
) -> (HealthStatus, u32) {
    if passed {
        return (HealthStatus::Healthy, 0);
    }
    // Failures in the start period do not count, unless the check passed once.
    if in_start_period && health.status == HealthStatus::Starting {
        return (HealthStatus::Starting, health.failing_streak);
    }
    let streak = health.failing_streak.saturating_add(1);
    if streak >= retries.max(1) {
        (HealthStatus::Unhealthy, streak)
    } else {
        (health.status, streak)
    }
}

impl Containers {
    /// Begins checking a run that just started.
    pub(super) fn begin_health(self: &Arc<Self>, id: &str, check: HealthConfig) {
        let Ok((_, state)) = self.load(id) else {
            return;
        };
        let run = state.started_at;
        self.health.lock().insert(
            id.to_string(),
            Health {
                status: HealthStatus::Starting,
                failing_streak: 0,
                log: VecDeque::new(),
                run,
            },
        );
        let containers = self.clone();
        let id = id.to_string();
        tokio::spawn(async move { containers.check_loop(id, check, run).await });
    }

    fn same_run(&self, id: &str, run: Option<u64>) -> bool {
        self.load(id)
            .is_ok_and(|(_, s)| s.status == Status::Running && s.started_at == run)
    }

    async fn check_loop(self: Arc<Self>, id: String, check: HealthConfig, run: Option<u64>) {
        let started = std::time::Instant::now();
        let interval = Duration::from_millis(check.interval_ms);
        loop {
            tokio::time::sleep(interval).await;
            if !self.same_run(&id, run) {
                return;
            }
            let result = self.check_once(&id, &check).await;
            if !self.same_run(&id, run) {
                return;
            }
            let in_start = started.elapsed() < Duration::from_millis(check.start_period_ms);
            let changed = {
                let mut table = self.health.lock();
                let Some(h) = table.get_mut(&id).filter(|h| h.run == run) else {
                    return;
                };
                let (status, streak) =
                    next_status(h, result.exit_code == 0, check.retries, in_start);
                let changed = status != h.status;
                h.status = status;
                h.failing_streak = streak;
                if h.log.len() >= KEPT_RESULTS {
                    h.log.pop_front();
                }
                h.log.push_back(result);
                changed.then_some(status)
            };
            let Some(status) = changed else { continue };
            self.publish(&format!("health_status: {}", status.as_str()), &id, &[]);
            if status == HealthStatus::Unhealthy {
                match check.on_failure {
                    HealthAction::None => {}
                    HealthAction::Kill | HealthAction::Restart => {
                        tracing::warn!(
                            "container {id}: unhealthy: {}",
                            match check.on_failure {
                                HealthAction::Restart => "restarting it",
                                _ => "killing it",
                            }
                        );
                        if check.on_failure == HealthAction::Restart {
                            self.mark_health_restart(&id);
                        }
                        if let Ok(helper) = self.running_helper(&id) {
                            if let Err(e) = helper.kill(nix::libc::SIGKILL).await {
                                tracing::warn!("container {id}: kill an unhealthy workload: {e}");
                            }
                        }
                        return;
                    }
                }
            }
        }
    }

    /// One run of the check: its exit code (or -1 when it could not run or timed out)
    /// and the start of its output.
    async fn check_once(&self, id: &str, check: &HealthConfig) -> HealthResult {
        let start = unix_now();
        let outcome = tokio::time::timeout(
            Duration::from_millis(check.timeout_ms),
            self.exec_captured(id, &check.test),
        )
        .await;
        let (exit_code, output) = match outcome {
            Ok(Ok((code, out))) => (code, out),
            Ok(Err(e)) => (-1, format!("health check could not run: {e}")),
            Err(_) => (
                -1,
                format!(
                    "health check exceeded its timeout ({} ms)",
                    check.timeout_ms
                ),
            ),
        };
        HealthResult {
            start,
            end: unix_now(),
            exit_code,
            output,
        }
    }

    /// Execs `args` in the container with stdout and stderr into one pipe read here
    /// (the first 4 KiB kept); kills it if it outlives the caller's timeout.
    async fn exec_captured(&self, id: &str, args: &[String]) -> Result<(i32, String), String> {
        let (config, _) = self.load(id).map_err(|e| e.to_string())?;
        let helper = self.running_helper(id).map_err(|e| e.to_string())?;
        let (read, write) = nix::unistd::pipe().map_err(|e| e.to_string())?;
        let null: OwnedFd = std::fs::File::open("/dev/null")
            .map_err(|e| e.to_string())?
            .into();
        let err = write.try_clone().map_err(|e| e.to_string())?;
        let process = process_spec(&config, args, &[]);
        let (pid, _) = helper
            .exec(process, Stdio::Inherit, vec![null, write, err])
            .await
            .map_err(|e| e.to_string())?;
        // Killed if this future is dropped at the timeout: the helper has not reaped it
        // until `exec_wait` returns, so the pid is still its.
        let guard = KillOnDrop(Some(pid));
        let mut pipe =
            tokio::net::unix::pipe::Receiver::from_owned_fd(read).map_err(|e| e.to_string())?;
        let reader = async {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let room = KEPT_OUTPUT.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                }
            }
            kept
        };
        let (status, kept) = tokio::join!(helper.exec_wait(pid), reader);
        let mut guard = guard;
        guard.0 = None;
        let status = status.map_err(|e| e.to_string())?;
        Ok((status.code, String::from_utf8_lossy(&kept).into_owned()))
    }

    fn mark_health_restart(&self, id: &str) {
        self.health_restarts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
    }

    /// Whether the run that just ended was killed for being unhealthy, to be restarted.
    pub(super) fn take_health_restart(&self, id: &str) -> bool {
        self.health_restarts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }
}

struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(status: HealthStatus, streak: u32) -> Health {
        Health {
            status,
            failing_streak: streak,
            log: VecDeque::new(),
            run: None,
        }
    }

    #[test]
    fn retries_failures_in_a_row_make_it_unhealthy() {
        use HealthStatus::*;
        assert_eq!(next_status(&at(Starting, 0), true, 3, false), (Healthy, 0));
        assert_eq!(next_status(&at(Healthy, 0), false, 3, false), (Healthy, 1));
        assert_eq!(next_status(&at(Healthy, 1), false, 3, false), (Healthy, 2));
        assert_eq!(
            next_status(&at(Healthy, 2), false, 3, false),
            (Unhealthy, 3)
        );
        assert_eq!(next_status(&at(Unhealthy, 3), true, 3, false), (Healthy, 0));
        // The start period forgives failures until the first pass.
        assert_eq!(next_status(&at(Starting, 0), false, 1, true), (Starting, 0));
        assert_eq!(
            next_status(&at(Starting, 0), false, 1, false),
            (Unhealthy, 1)
        );
        assert_eq!(next_status(&at(Healthy, 0), false, 1, true), (Unhealthy, 1));
    }
}
