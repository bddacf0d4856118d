//! `network rm` and `prune`, resumable: the record is marked `removing` before anything
//! is torn down, so a removal cut short by a crash or a kill is finished at the next
//! start instead of leaving a listed network whose bridge and rules are gone.

use std::sync::Arc;

use container_protocol::{fault, HelperKind};

use super::{Networks, Purpose};
use crate::error::ApiError;
use crate::ops::Holds;

impl Networks {
    pub async fn remove(self: &Arc<Self>, names: Vec<String>) -> Result<Vec<String>, ApiError> {
        let _op = self.ops.begin(
            &format!("network rm {}", names.join(" ")),
            Holds::networks(&names),
        )?;
        {
            // Check them all before removing any, so a bad name leaves every network
            // alone; then mark them, so no container starts on them meanwhile.
            let _checks = self.checks.lock().await;
            let mut configs = Vec::new();
            for name in &names {
                let config = self.config(name)?;
                if config.builtin {
                    return Err(ApiError::Conflict(format!(
                        "network {name} is built in and cannot be removed"
                    )));
                }
                let users = self.containers_on(name);
                if !users.is_empty() {
                    return Err(ApiError::Conflict(format!(
                        "network {name} is in use by container(s) {}",
                        users.join(", ")
                    )));
                }
                configs.push(config);
            }
            for mut config in configs {
                if !config.removing {
                    config.removing = true;
                    self.records.save_network(&config).map_err(|e| {
                        ApiError::from(e).context(format!("network {}: rm", config.id))
                    })?;
                }
            }
        }
        let mut removed = Vec::new();
        for name in names {
            self.finish_removal(&name).await?;
            removed.push(name);
        }
        Ok(removed)
    }

    /// A removal, once recorded, is carried to its end: a helper that dies or stops
    /// answering on the way is replaced (the one that did not answer is killed first:
    /// never two) and the teardown, idempotent, runs again.
    pub(super) async fn finish_removal(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.destroy(name).await {
                Ok(()) => return Ok(()),
                Err(e)
                    if attempt < ATTEMPTS
                        && (e.is_gone()
                            || e.is_timeout()
                            || e.kind() == container_protocol::ErrorKind::Unavailable) =>
                {
                    tracing::warn!("network {name}: rm: {e}; trying again with a new helper");
                    self.table.kill(name).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Tears a network marked `removing` down and removes its record. Safe to run again
    /// after any interruption: every step is idempotent.
    pub(super) async fn destroy(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        let context = || format!("network {name}: rm");
        let helper = self
            .helper_for(name, Purpose::Remove)
            .await
            .map_err(|e| e.context(context()))?;
        helper
            .teardown()
            .await
            .map_err(|e| ApiError::from(e).context(context()))?;
        fault::point("apiserver:network-rm-after-teardown");
        self.table
            .shutdown(name, self.table.deadlines().quick)
            .await;
        self.records
            .remove_network(name)
            .map_err(|e| ApiError::from(e).context(context()))?;
        self.table.spawner().remove_log(HelperKind::Network, name);
        self.per_network.forget(name);
        tracing::info!("network {name} removed");
        self.events.publish(
            container_protocol::api::EventType::Network,
            "destroy",
            name,
            &[],
        );
        Ok(())
    }

    pub async fn prune(self: &Arc<Self>) -> Result<Vec<String>, ApiError> {
        let unused: Vec<String> = self
            .records
            .networks()
            .into_iter()
            .filter(|c| !c.builtin && self.containers_on(&c.id).is_empty())
            .map(|c| c.id)
            .collect();
        self.remove(unused).await
    }
}
