//! Leaked cgroups under the runtime's parent and user-namespace ranges of containers
//! that do not run (issue 10). `--fix` removes a cgroup as a dead sandbox's is removed
//! (killing what still runs there) and releases a range as the finish path does.

use container_protocol::api::FindingKind;

use super::Check;

impl Check<'_> {
    pub(super) async fn resources(&mut self) {
        let live = self.live_containers();
        let settings = &self.containers.resources;
        let parent = settings.cgroup_parent.clone();
        for name in crate::resources::cgroups_under(&parent) {
            if live.contains(&name) {
                continue;
            }
            let rel = format!("{parent}/{name}");
            let fixed = self.fix && {
                let r = rel.clone();
                match tokio::task::spawn_blocking(move || crate::resources::remove_cgroup(&r)).await
                {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        tracing::warn!("check: {e}");
                        false
                    }
                    Err(e) => {
                        tracing::warn!("check: cgroup {rel}: {e}");
                        false
                    }
                }
            };
            self.report(
                FindingKind::Cgroup,
                rel,
                "no running container owns this cgroup",
                fixed,
            );
        }
        let ranges = match settings.ranges.list() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("check: {e}");
                return;
            }
        };
        for (range, owner) in ranges {
            if live.contains(&owner) {
                continue;
            }
            let fixed = self.fix
                && match self.containers.resources.ranges.release(&owner) {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!("check: {e}");
                        false
                    }
                };
            let who = if owner.is_empty() {
                "nobody (a torn reservation)".to_string()
            } else {
                format!("container {owner}, which does not run")
            };
            self.report(
                FindingKind::UsernsRange,
                format!("{}:{}", range.start, range.size),
                format!("reserved for {who}"),
                fixed,
            );
        }
    }
}
