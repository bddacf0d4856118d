//! Restart policies. After `finish` has recorded an exit, the apiserver decides, as its
//! own explicit step, whether the policy restarts the container; if so it records the
//! decision (`restart_pending`), waits out a back-off, and starts the container again
//! with a fresh sandbox helper, as a user's `start` would. Nothing is restarted as a
//! side effect of a call, and nothing restarts while the apiserver shuts down: a
//! pending restart is carried out by the next apiserver instead.

use std::sync::Arc;
use std::time::Duration;

use container_protocol::container::RestartPolicy;
use container_protocol::sandbox::Stdio;
use container_store::container::{ContainerState, Status};
use container_store::unix_now;

use super::Containers;

/// The first delay; it doubles with each quick exit in a row.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the back-off.
const RESET_AFTER_SECS: u64 = 10;

/// Whether `policy` restarts a container whose run ended as `state` records, and
/// after how long. `state` is the stopped state `finish` wrote (exit code, start time,
/// counters). Pure: the tests read it as a table.
pub fn decide(policy: RestartPolicy, state: &ContainerState, now: u64) -> Option<(Duration, u32)> {
    if state.stopped_by_user {
        return None;
    }
    match policy {
        RestartPolicy::No => return None,
        RestartPolicy::OnFailure { max } => {
            if state.exit_code == Some(0) {
                return None;
            }
            if max.is_some_and(|m| state.restart_count >= m) {
                return None;
            }
        }
        RestartPolicy::Always | RestartPolicy::UnlessStopped => {}
    }
    let ran = state
        .finished_at
        .unwrap_or(now)
        .saturating_sub(state.started_at.unwrap_or(0));
    let backoff = if ran >= RESET_AFTER_SECS {
        0
    } else {
        state.restart_backoff
    };
    let delay = FIRST_DELAY
        .checked_mul(1u32 << backoff.min(16))
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY);
    Some((delay, backoff.saturating_add(1)))
}

impl Containers {
    /// Called by `finish` once the stopped state is written.
    pub(super) fn consider_restart(self: &Arc<Self>, id: &str, policy: RestartPolicy) {
        // Killed for being unhealthy with `--health-on-failure=restart`: restarted
        // whatever the policy, with its back-off.
        let policy = if self.take_health_restart(id) {
            RestartPolicy::Always
        } else {
            policy
        };
        // Helpers stopped with the apiserver: `always` ones come back at its next start.
        if policy == RestartPolicy::No || self.ops.is_closed() {
            return;
        }
        let Ok((_, mut state)) = self.load(id) else {
            return;
        };
        let Some((delay, backoff)) = decide(policy, &state, unix_now()) else {
            return;
        };
        state.restart_pending = true;
        state.restart_backoff = backoff;
        if let Err(e) = self.persist(id, &state) {
            tracing::warn!("container {id}: restart decision not recorded: {e}");
        }
        container_protocol::fault::point("apiserver:restart-pending");
        tracing::info!(
            "container {id}: restart policy {}: restarting in {delay:?}",
            String::from(policy)
        );
        self.restart_after(id.to_string(), delay);
    }

    fn restart_after(self: &Arc<Self>, id: String, delay: Duration) {
        let containers = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            containers.restart_now(&id).await;
        });
    }

    /// Carries out a pending restart, unless the user or a removal came first.
    async fn restart_now(self: &Arc<Self>, id: &str) {
        match self.start_by_policy(id, Stdio::Log, vec![]).await {
            Ok(Some(pid)) => tracing::info!("container {id}: restarted (pid {pid})"),
            Ok(None) => {}
            Err(e) => {
                // A start that failed undid itself (and counted itself); the policy sees
                // it as one more failed run.
                tracing::warn!("container {id}: restart: {e}");
                if let Ok((config, mut state)) = self.load(id) {
                    if state.status != Status::Running && !state.stopped_by_user {
                        state.exit_code = Some(state.exit_code.unwrap_or(125).max(1));
                        state.finished_at = Some(unix_now());
                        if self.persist(id, &state).is_ok() {
                            self.consider_restart(id, config.restart);
                        }
                    }
                }
            }
        }
    }

    /// At apiserver start: restarts a previous apiserver decided on but did not carry
    /// out, and every `always` container, and every `unless-stopped` one the user did
    /// not stop, as Docker brings them back when its daemon starts.
    pub async fn restart_at_boot(self: &Arc<Self>) {
        for (id, record) in self.records.containers() {
            let state = &record.state;
            if state.status == Status::Running {
                continue;
            }
            let policy = record.config.restart;
            let due = state.restart_pending
                || policy == RestartPolicy::Always
                || (policy == RestartPolicy::UnlessStopped && !state.stopped_by_user);
            // A container never started is not brought back by its policy.
            if !due || (state.status == Status::Created && !state.restart_pending) {
                continue;
            }
            // Recorded as decided, so a crash before it happens leaves it to the next
            // start too. Docker's `always`: a user's stop lasts until the daemon restarts.
            let mut s = (**state).clone();
            s.restart_pending = true;
            s.stopped_by_user = false;
            if let Err(e) = self.persist(&id, &s) {
                tracing::warn!("container {id}: restart decision not recorded: {e}");
                continue;
            }
            tracing::info!(
                "container {id}: restart policy {} at apiserver start",
                String::from(policy)
            );
            self.restart_after(id, Duration::ZERO);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(code: i32, ran: u64, count: u32, backoff: u32) -> ContainerState {
        ContainerState {
            status: Status::Stopped,
            exit_code: Some(code),
            started_at: Some(1000),
            finished_at: Some(1000 + ran),
            restart_count: count,
            restart_backoff: backoff,
            ..Default::default()
        }
    }

    #[test]
    fn policies_as_docker_documents_them() {
        let p = |s: &str| s.parse::<RestartPolicy>().unwrap();
        let now = 5000;
        assert_eq!(decide(p("no"), &ended(1, 0, 0, 0), now), None);
        assert_eq!(decide(p("on-failure"), &ended(0, 0, 0, 0), now), None);
        assert_eq!(
            decide(p("on-failure"), &ended(1, 0, 0, 0), now),
            Some((Duration::from_millis(100), 1))
        );
        assert_eq!(
            decide(p("on-failure:3"), &ended(1, 0, 2, 2), now),
            Some((Duration::from_millis(400), 3))
        );
        assert_eq!(decide(p("on-failure:3"), &ended(1, 0, 3, 3), now), None);
        assert!(decide(p("always"), &ended(0, 0, 9, 0), now).is_some());
        assert!(decide(p("unless-stopped"), &ended(0, 0, 0, 0), now).is_some());
        let mut by_user = ended(137, 0, 0, 0);
        by_user.stopped_by_user = true;
        assert_eq!(decide(p("always"), &by_user, now), None);
        // Doubling up to a minute; a run of 10 s resets it.
        assert_eq!(
            decide(p("always"), &ended(0, 1, 0, 20), now),
            Some((MAX_DELAY, 21))
        );
        assert_eq!(
            decide(p("always"), &ended(0, 10, 0, 20), now),
            Some((FIRST_DELAY, 1))
        );
    }

    #[test]
    fn bad_policies_are_named() {
        for bad in [
            "sometimes",
            "on-failure:-1",
            "on-failure:0",
            "on-failure:",
            "on-failure:x",
            "always:3",
        ] {
            let e = bad.parse::<RestartPolicy>().expect_err(bad);
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        for good in [
            "no",
            "on-failure",
            "on-failure:5",
            "always",
            "unless-stopped",
        ] {
            let p: RestartPolicy = good.parse().unwrap();
            assert_eq!(String::from(p), good);
        }
    }
}
