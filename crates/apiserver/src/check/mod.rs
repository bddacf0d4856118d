//! `container system check [--fix]`: every leaked or inconsistent resource, found from
//! the kernel and the disk rather than from memory. `--fix` repairs with the same code
//! the apiserver runs at start and on exit paths. What an operation in flight holds is
//! never reported, let alone removed: it is not leaked, it is being made.
//! `resources`: cgroups and user-namespace ranges (issue 10).

mod addresses;
mod containers;
mod host;
mod networks;
mod records;
mod resources;

use std::collections::HashSet;
use std::sync::Arc;

use container_protocol::api::{Finding, FindingKind};
use container_store::container::{list_containers, Status};
use container_store::Paths;

use crate::containers::Containers;
use crate::networks::Networks;
use crate::ops::Ops;

struct Check<'a> {
    paths: &'a Paths,
    containers: &'a Arc<Containers>,
    networks: &'a Arc<Networks>,
    ops: &'a Ops,
    fix: bool,
    found: Vec<Finding>,
}

impl Check<'_> {
    fn report(
        &mut self,
        kind: FindingKind,
        object: impl Into<String>,
        detail: impl Into<String>,
        fixed: bool,
    ) {
        self.found.push(Finding {
            kind,
            object: object.into(),
            detail: detail.into(),
            fixed,
        });
    }

    /// Running containers (the state as it is, written or not) and those an operation
    /// is starting, stopping or removing right now.
    fn live_containers(&self) -> HashSet<String> {
        self.containers
            .records()
            .containers()
            .into_iter()
            .filter(|(id, r)| self.ops.holds_container(id) || r.state.status == Status::Running)
            .map(|(id, _)| id)
            .chain(
                list_containers(self.paths)
                    .into_iter()
                    .filter(|id| self.ops.holds_container(id)),
            )
            .collect()
    }
}

pub async fn check(
    paths: &Paths,
    containers: &Arc<Containers>,
    networks: &Arc<Networks>,
    ops: &Ops,
    fix: bool,
) -> Vec<Finding> {
    let mut c = Check {
        paths,
        containers,
        networks,
        ops,
        fix,
        found: Vec::new(),
    };
    // The view against the disk first, then containers: the rest is judged against the
    // live set they define.
    c.records().await;
    c.containers().await;
    c.addresses().await;
    c.networks().await;
    c.host().await;
    c.resources().await;
    c.found
}

/// The image store's own check (`container_image::store::check`), as findings.
pub async fn images(images: &crate::images::Images, fix: bool, digests: bool) -> Vec<Finding> {
    let held = images.held();
    match images.store().check(fix, digests, &held).await {
        Ok(problems) => problems
            .into_iter()
            .map(|p| Finding {
                kind: FindingKind::Image,
                object: format!("{} {}", p.kind, p.object),
                detail: p.detail,
                fixed: p.fixed,
            })
            .collect(),
        Err(e) => vec![Finding {
            kind: FindingKind::Image,
            object: "store".into(),
            detail: format!("could not be checked: {e}"),
            fixed: false,
        }],
    }
}
