//! Shared set-up of the network helper's tests: an isolated namespace, a runtime whose
//! threads live in it, a network config on disk and the helper serving it in-process.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use container_network_helper::NetworkHelper;
use container_protocol::network::{Attachment, NetworkRequest, NetworkResponse};
use container_protocol::{HelperInfo, HelperKind};
use container_store::{NetworkConfig, Paths};
use container_testkit::Isolated;
use serde_json::Value;
use tokio::sync::Notify;

pub struct Env {
    pub iso: Isolated,
    pub rt: tokio::runtime::Runtime,
}

impl Env {
    /// Isolates the calling thread FIRST, then builds the runtime so that its threads
    /// (and processes they spawn, such as nft and CNI plugins) inherit the namespaces.
    pub fn new() -> Env {
        let iso = container_testkit::isolate().expect("isolate");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        Env { iso, rt }
    }

    pub fn paths(&self) -> Paths {
        Paths::new(self.iso.root(), self.iso.run_dir())
    }

    /// Saves `config` and starts a helper on it as the binary does: from disk.
    pub fn helper(&self, config: &NetworkConfig) -> Arc<NetworkHelper> {
        container_store::network::save_network(&self.paths(), config).expect("save network");
        let info = HelperInfo {
            kind: HelperKind::Network,
            id: config.id.clone(),
            pid: std::process::id(),
            version: "test".into(),
            started: 0,
        };
        let paths = self.paths();
        let helper = self
            .rt
            .block_on(async move { NetworkHelper::load(info, paths, Arc::new(Notify::new())) })
            .expect("helper");
        Arc::new(helper)
    }

    pub fn call(
        &self,
        helper: &NetworkHelper,
        req: NetworkRequest,
    ) -> Result<NetworkResponse, String> {
        self.rt
            .block_on(helper.dispatch(req))
            .map_err(|e| e.message)
    }
}

pub fn config(
    id: &str,
    plugin: &str,
    subnet: Option<&str>,
    options: &[(&str, &str)],
) -> NetworkConfig {
    NetworkConfig {
        version: 1,
        id: id.into(),
        plugin: plugin.parse().expect("plugin"),
        subnet: subnet.map(|s| s.parse().expect("subnet")),
        gateway: None,
        subnet_v6: None,
        gateway_v6: None,
        internal: false,
        labels: BTreeMap::new(),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        created: 0,
        builtin: false,
        disable_dns: false,
        removing: false,
    }
}

pub fn attachment(network: &str, container: &str, ifname: &str) -> Attachment {
    Attachment {
        network: network.into(),
        container_id: container.into(),
        ifname: ifname.into(),
        ipv4: None,
        ipv6: None,
        mac: None,
        netns: None,
        ports: vec![],
    }
}

pub fn allocate(
    env: &Env,
    helper: &NetworkHelper,
    att: Attachment,
) -> Result<container_protocol::network::Allocation, String> {
    match env.call(helper, NetworkRequest::Allocate(att))? {
        NetworkResponse::Allocated(a) => Ok(a),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Runs a command and parses its JSON output (`ip -j`, `nft -j`).
pub fn json(cmd: &str, args: &[&str]) -> Option<Value> {
    let out = Command::new(cmd).args(args).output().expect("run command");
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

pub fn run(cmd: &str, args: &[&str]) {
    let status = Command::new(cmd).args(args).status().expect("run command");
    assert!(status.success(), "{cmd} {args:?} failed");
}

/// Global addresses of a link as `ip -j addr show dev NAME` reports them (`a.b.c.d/len`), or
/// `None` when the link does not exist.
pub fn link_addresses(dev: &str) -> Option<Vec<String>> {
    let v = json("ip", &["-j", "addr", "show", "dev", dev])?;
    let link = v.as_array()?.first()?.clone();
    Some(
        link["addr_info"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            // The kernel's own fe80:: address is not ours to check.
            .filter(|a| a["scope"] != "link")
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
            .collect(),
    )
}

/// Names of the chains in `table inet container`, empty when the table is absent.
pub fn nft_chains() -> Vec<String> {
    let Some(v) = json("nft", &["-j", "list", "table", "inet", "container"]) else {
        return Vec::new();
    };
    v["nftables"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|o| {
            o.get("chain")
                .and_then(|c| c["name"].as_str())
                .map(str::to_string)
        })
        .collect()
}

/// The whole ruleset as text, to look for a network's traces.
pub fn nft_ruleset() -> String {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .expect("nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
