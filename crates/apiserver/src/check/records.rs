//! The apiserver's view of its records against the disk: the view answers every call,
//! so what the disk says differently is found here. `--fix` does what a restart would
//! do with a container's record (a record gone from disk is a container gone; one only
//! on disk is taken in), and writes the view back where the disk lost or changed it
//! otherwise.

use container_protocol::api::FindingKind;
use container_store::container::{list_containers, load_config, load_state, Status};
use container_store::network::load_networks;

use super::Check;

impl Check<'_> {
    pub(super) async fn records(&mut self) {
        let records = self.containers.records().clone();
        let on_disk = list_containers(self.paths);
        for id in &on_disk {
            if self.ops.holds_container(id) {
                continue;
            }
            let known = records.container(id);
            let disk =
                load_config(self.paths, id).and_then(|c| Ok((c, load_state(self.paths, id)?)));
            match (known, disk) {
                (None, Ok((config, state))) if records.unreadable(id).is_none() => {
                    let mut fixed = false;
                    if self.fix {
                        let running = state.status == Status::Running;
                        records.adopt_container(config, state);
                        // Taken in as a restart would: a running record without a helper
                        // is finished.
                        fixed = !running || self.finish_orphan_record(id).await;
                    }
                    self.report(
                        FindingKind::Container,
                        id,
                        "record on disk that the apiserver did not know",
                        fixed,
                    );
                }
                (None, Err(e)) => {
                    self.report(
                        FindingKind::Container,
                        id,
                        format!("record unreadable: {e}"),
                        false,
                    );
                }
                (Some(_), Err(e)) => {
                    // The view is what the apiserver did: the disk gets it back.
                    let fixed = self.fix && records.rewrite_container(id).is_ok();
                    self.report(
                        FindingKind::Container,
                        id,
                        format!("record on disk unreadable while the apiserver has it: {e}"),
                        fixed,
                    );
                }
                (Some(known), Ok((_, state))) if !known.unsaved && state != *known.state => {
                    let fixed = self.fix && records.set_state(id, (*known.state).clone()).is_ok();
                    self.report(
                        FindingKind::Container,
                        id,
                        format!(
                            "state on disk ({}) differs from the apiserver's ({})",
                            state.status, known.state.status
                        ),
                        fixed,
                    );
                }
                _ => {}
            }
        }
        for id in records.container_ids() {
            if on_disk.contains(&id) || self.ops.holds_container(&id) {
                continue;
            }
            let mut fixed = false;
            if self.fix {
                // Gone from disk: gone, as a restart would find it. What it held goes
                // (out of the view first, so its finish writes nothing back).
                records.forget_container(&id);
                self.containers.sandboxes().kill(&id).await;
                self.containers.remove_sandbox_remains(&id, &[]).await;
                fixed = true;
            }
            self.report(
                FindingKind::Container,
                &id,
                "its record is gone from disk",
                fixed,
            );
        }

        let (disk_networks, unreadable) = load_networks(self.paths);
        for net in records.networks() {
            if self.ops.holds_network(&net.id) {
                continue;
            }
            let file = self
                .paths
                .network_config(&net.id)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let bad_file = unreadable.iter().find(|e| e.to_string().contains(&file));
            match disk_networks.iter().find(|d| d.id == net.id) {
                None if bad_file.is_some() => {
                    let fixed = self.fix && records.save_network(&net).is_ok();
                    self.report(
                        FindingKind::Network,
                        &net.id,
                        format!(
                            "record on disk unreadable while the apiserver has it: {}",
                            bad_file.map(|e| e.to_string()).unwrap_or_default()
                        ),
                        fixed,
                    );
                }
                None => {
                    // A network's record is its user's configuration: written back.
                    let fixed = self.fix && records.save_network(&net).is_ok();
                    self.report(
                        FindingKind::Network,
                        &net.id,
                        "its record is gone from disk",
                        fixed,
                    );
                }
                Some(d) if *d != net => {
                    let fixed = self.fix && records.save_network(&net).is_ok();
                    self.report(
                        FindingKind::Network,
                        &net.id,
                        "record on disk differs from the apiserver's",
                        fixed,
                    );
                }
                Some(_) => {}
            }
        }
    }

    async fn finish_orphan_record(&self, id: &str) -> bool {
        if self.containers.sandboxes().get(id).is_some() {
            return true; // its helper lives: it is watched from now on
        }
        let reason = "taken in from disk by system check with no sandbox helper";
        self.containers
            .finish(id, None, Some(reason.into()))
            .await
            .is_ok()
    }
}
