//! What each network's name server answers, computed from the records and sent whole
//! (issue 13). The records are the truth and the helper's table a copy: every change
//! that could alter a network's names (a start, a finish, a connect, a disconnect, a
//! helper started) sends the network's table again, so a lost or failed update is
//! mended by the next, and a restarted helper gets its table with its set-up.

use std::sync::Arc;

use container_protocol::network::NameEntry;
use container_store::container::Status;

use super::Networks;

impl Networks {
    /// Sends `network`'s table to its helper, if it runs and serves names. `leaving`
    /// is a container whose names go now although its record still says running (a
    /// finish, before it releases the addresses). Failures are logged: names are
    /// derived state, put right by the next send.
    pub async fn sync_names(self: &Arc<Self>, network: &str, leaving: Option<&str>) {
        let Ok(config) = self.config(network) else {
            return;
        };
        let serves = container_network_helper::Plugin::for_config(&config)
            .map(|p| p.serves_dns())
            .unwrap_or(false);
        if !serves {
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
        let entries = self.name_entries(network, leaving);
        if let Err(e) = helper.names(entries).await {
            tracing::warn!("network {network}: update names: {e}");
        }
    }

    /// One entry per running container's attachment to `network`: its name (the id),
    /// its hostname and its aliases there, for the attachment's addresses.
    pub fn name_entries(&self, network: &str, leaving: Option<&str>) -> Vec<NameEntry> {
        let mut out = Vec::new();
        for (id, r) in self.records.containers() {
            if r.state.status != Status::Running || Some(id.as_str()) == leaving {
                continue;
            }
            for a in r.state.allocations.iter().filter(|a| a.network == network) {
                let mut names = vec![id.clone()];
                if let Some(h) = &r.config.hostname {
                    names.push(h.clone());
                }
                if let Some(att) = r.config.networks.iter().find(|n| n.network == network) {
                    names.extend(att.aliases.iter().cloned());
                }
                names.dedup();
                out.push(NameEntry {
                    container_id: id.clone(),
                    names,
                    addresses: a.addresses.iter().map(|n| n.addr()).collect(),
                });
            }
        }
        out.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        out
    }

    /// Who already answers to `name` on `network`, other than `except`: a container
    /// named so (on any network: names are unique among containers) or one with that
    /// alias there.
    pub fn name_holder(&self, network: &str, name: &str, except: &str) -> Option<String> {
        let lower = name.to_ascii_lowercase();
        self.records
            .containers()
            .into_iter()
            .filter(|(id, _)| id != except)
            .find(|(id, r)| {
                id.to_ascii_lowercase() == lower
                    || r.config
                        .networks
                        .iter()
                        .filter(|n| n.network == network)
                        .any(|n| n.aliases.iter().any(|a| a.to_ascii_lowercase() == lower))
            })
            .map(|(id, _)| id)
    }
}
