//! What each network's name server answers, computed from the records (issue 13).
//! The records are the truth and the helper's table a copy. A change to one
//! container's names (a start, a finish, a connect, a disconnect) sends that
//! container's entries alone, so its cost does not grow with the containers on the
//! network (issue 16); a new helper gets the whole table with its set-up, and so does
//! a helper whose last update failed, at the next change.

use std::sync::Arc;

use container_protocol::network::NameEntry;
use container_store::container::Status;

use super::Networks;
use crate::records::ContainerRecord;

impl Networks {
    /// Sends what `container` answers to on `network` to its helper, if it runs and
    /// serves names. `leaving`: its names go now although its record still says
    /// running (a finish, before it releases the addresses). Failures are logged, and
    /// the next change sends the whole table: names are derived state.
    pub async fn sync_names(self: &Arc<Self>, network: &str, container: &str, leaving: bool) {
        self.send_names(network, Some((container, leaving))).await;
    }

    /// Sends `network`'s whole table (a helper that has just started).
    pub async fn sync_all_names(self: &Arc<Self>, network: &str) {
        self.send_names(network, None).await;
    }

    async fn send_names(self: &Arc<Self>, network: &str, one: Option<(&str, bool)>) {
        if !self.serves_names(network) {
            return;
        }
        // One send per network at a time, each computed after the last: the table the
        // helper keeps is the newest one computed.
        let lock = self.names.get(network);
        let _one = lock.lock().await;
        let Some(helper) = self.table.get(network) else {
            // Nothing answers names now; the next helper gets them when it starts.
            return;
        };
        let whole = one.is_none() || self.stale_names().contains(network);
        let sent = match one {
            Some((id, leaving)) if !whole => {
                let entries = match self.records.container(id) {
                    Some(r) if !leaving => entries_of(id, &r, network),
                    _ => Vec::new(),
                };
                helper.names_of(id.to_string(), entries).await
            }
            _ => {
                let leaving = one.and_then(|(id, leaving)| leaving.then_some(id));
                helper.names(self.name_entries(network, leaving)).await
            }
        };
        match sent {
            Ok(()) if whole => {
                self.stale_names().remove(network);
            }
            Ok(()) => {}
            Err(e) => {
                tracing::warn!("network {network}: update names: {e}");
                self.stale_names().insert(network.to_string());
            }
        }
    }

    /// Networks whose helper may have missed an update: the next send is whole.
    fn stale_names(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.names_stale.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn serves_names(&self, network: &str) -> bool {
        let Ok(config) = self.config(network) else {
            return false;
        };
        container_network_helper::Plugin::for_config(&config)
            .map(|p| p.serves_dns())
            .unwrap_or(false)
    }

    /// One entry per running container's attachment to `network`, but `leaving`'s:
    /// its name (the id), its hostname and its aliases there, for the attachment's
    /// addresses.
    pub fn name_entries(&self, network: &str, leaving: Option<&str>) -> Vec<NameEntry> {
        self.records.scan(|all| {
            all.filter(|(id, _)| Some(*id) != leaving)
                .flat_map(|(id, r)| entries_of(id, r, network))
                .collect()
        })
    }

    /// Who already answers to `name` on `network`, other than `except`: a container
    /// named so (on any network: names are unique among containers) or one with that
    /// alias there.
    pub fn name_holder(&self, network: &str, name: &str, except: &str) -> Option<String> {
        // Ids are lowercase: a name equal to one whatever its case is that id.
        let id = name.to_ascii_lowercase();
        if id != except && self.records.has_container(&id) {
            return Some(id);
        }
        self.records.scan_aliased(|aliased| {
            aliased
                .filter(|(id, _)| *id != except)
                .find(|(_, r)| {
                    r.config
                        .networks
                        .iter()
                        .filter(|n| n.network == network)
                        .any(|n| n.aliases.iter().any(|a| a.eq_ignore_ascii_case(name)))
                })
                .map(|(id, _)| id.to_string())
        })
    }
}

/// What one container answers to on `network`: nothing unless it runs.
fn entries_of(id: &str, r: &ContainerRecord, network: &str) -> Vec<NameEntry> {
    if r.state.status != Status::Running {
        return Vec::new();
    }
    let att = r.config.networks.iter().find(|n| n.network == network);
    r.state
        .allocations
        .iter()
        .filter(|a| a.network == network)
        .map(|a| {
            let mut names = vec![id.to_string()];
            let others = r.config.hostname.iter();
            for n in others.chain(att.iter().flat_map(|n| n.aliases.iter())) {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
            NameEntry {
                container_id: id.to_string(),
                names,
                addresses: a.addresses.iter().map(|n| n.addr()).collect(),
            }
        })
        .collect()
}
