//! `create --config FILE`: the record's JSON shape, read strictly, plus the forms the
//! flags know. Every key that is not part of the shape is an error naming its path
//! (`linux.netdevices`), so a typo cannot pass for a setting.
//!
//! What a file may say beyond the record:
//! * `linux.netDevices`, the OCI position (seed 003), as well as the top-level
//!   `netDevices`; both at once is an error;
//! * `network: "SPEC"` for one network, and `networks` entries as the `--network` flag's
//!   strings (`"n1,ip=10.1.0.5"`, `"none"`) or as objects;
//! * no `network`/`networks` key: the `default` network, as without `--network` (an
//!   empty `networks` list, as a record of `--network none` has: loopback only);
//! * a relative `rootfs`, resolved here against the caller's working directory.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use container_protocol::network::PortMap;
use container_store::container::{
    ContainerConfig, LogConfig, NetDeviceConfig, NetworkAttachmentConfig, ProcessConfig,
};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    version: u32,
    #[serde(default)]
    id: String,
    process: ProcessConfig,
    #[serde(default)]
    rootfs: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    dns: Vec<IpAddr>,
    #[serde(default)]
    networks: Option<Vec<Attachment>>,
    #[serde(default)]
    network: Option<Attachment>,
    #[serde(default, rename = "netDevices")]
    net_devices: Option<BTreeMap<String, NetDeviceConfig>>,
    #[serde(default)]
    linux: Option<Linux>,
    #[serde(default)]
    ports: Vec<PortMap>,
    #[serde(default)]
    auto_remove: bool,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    created: u64,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    security: container_protocol::security::SecurityConfig,
    #[serde(default)]
    resources: container_protocol::resources::ResourceConfig,
    #[serde(default)]
    userns: Option<container_protocol::resources::UsernsMode>,
    image: Option<container_protocol::container::ImageUse>,
    #[serde(default)]
    mounts: Vec<container_protocol::volume::MountConfig>,
    #[serde(default)]
    restart: container_protocol::container::RestartPolicy,
    #[serde(default)]
    health_flags: container_protocol::container::HealthFlags,
    #[serde(default)]
    healthcheck: Option<container_protocol::container::HealthConfig>,
}

/// The part of OCI's `linux` object this runtime reads.
#[derive(Deserialize)]
struct Linux {
    #[serde(default, rename = "netDevices")]
    net_devices: Option<BTreeMap<String, NetDeviceConfig>>,
}

/// One network entry: `none`, or a network to join.
enum Attachment {
    None,
    Network(NetworkAttachmentConfig),
}

impl<'de> Deserialize<'de> for Attachment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Attachment;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a --network string ("n1,ip=10.1.0.5", "none") or an object"#)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Attachment, E> {
                match s {
                    "none" => Ok(Attachment::None),
                    spec => crate::container::parse_network(spec)
                        .map(Attachment::Network)
                        .map_err(|e| E::custom(format!("{e:#}"))),
                }
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Attachment, M::Error> {
                // Through the map access we were given, so unknown keys inside are
                // still seen (and named) by the strict reader.
                let att = NetworkAttachmentConfig::deserialize(
                    de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(match att.network.as_str() {
                    "none" => Attachment::None,
                    _ => Attachment::Network(att),
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `linux.netDevices`, as serde_ignored's path says it (without its `?` for options).
fn dotted(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    fn walk(path: &Path, out: &mut Vec<String>) {
        match path {
            Path::Root => {}
            Path::Seq { parent, index } => {
                walk(parent, out);
                out.push(index.to_string());
            }
            Path::Map { parent, key } => {
                walk(parent, out);
                out.push(key.clone());
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    let mut segments = Vec::new();
    walk(path, &mut segments);
    segments.join(".")
}

/// Reads `text` (from `origin`, for messages) into the configuration the apiserver gets.
pub fn parse(text: &str, origin: &str) -> Result<ContainerConfig> {
    let invalid = |what: String| anyhow!("invalid container configuration {origin}: {what}");
    let mut unknown = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let file: File = serde_ignored::deserialize(&mut de, |path| unknown.push(dotted(&path)))
        .map_err(|e| invalid(e.to_string()))?;
    de.end().map_err(|e| invalid(e.to_string()))?;
    if !unknown.is_empty() {
        let s = if unknown.len() == 1 { "" } else { "s" };
        return Err(invalid(format!("unknown key{s} {}", unknown.join(", "))));
    }

    let networks = match (file.networks, file.network) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "both `network` and `networks` are given: use one".into(),
            ))
        }
        (None, None) => vec![Attachment::Network(default_network())],
        (Some(list), None) => list,
        (None, Some(one)) => vec![one],
    };
    let networks = match networks.as_slice() {
        [Attachment::None] => vec![],
        list if list.iter().any(|a| matches!(a, Attachment::None)) => {
            return Err(invalid(
                "network none cannot be combined with other networks".into(),
            ))
        }
        _ => networks
            .into_iter()
            .filter_map(|a| match a {
                Attachment::Network(n) => Some(n),
                Attachment::None => None,
            })
            .collect(),
    };
    let net_devices = match (file.net_devices, file.linux.and_then(|l| l.net_devices)) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "netDevices is given twice, at the top level and as linux.netDevices: use one"
                    .into(),
            ))
        }
        (Some(d), None) | (None, Some(d)) => d,
        (None, None) => BTreeMap::new(),
    };
    Ok(ContainerConfig {
        version: file.version,
        id: file.id,
        process: file.process,
        rootfs: file.rootfs,
        hostname: file.hostname,
        dns: file.dns,
        networks,
        net_devices,
        ports: file.ports,
        auto_remove: file.auto_remove,
        labels: file.labels,
        created: file.created,
        log: file.log,
        restart: file.restart,
        health_flags: file.health_flags,
        healthcheck: file.healthcheck,
        security: file.security,
        resources: file.resources,
        userns: file.userns,
        image: file.image,
        mounts: file.mounts,
    })
}

/// The network a container joins when none is named.
pub fn default_network() -> NetworkAttachmentConfig {
    NetworkAttachmentConfig {
        network: "default".into(),
        ip: None,
        ip6: None,
        mac: None,
        ifname: None,
        aliases: Vec::new(),
    }
}

/// Reads a `--config` file; a relative `rootfs` is taken from the caller's directory.
pub fn load(path: &Path) -> Result<ContainerConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut config = parse(&text, &path.display().to_string())?;
    if let Some(rootfs) = &config.rootfs {
        config.rootfs = Some(absolute_rootfs(Path::new(rootfs))?);
    }
    Ok(config)
}

/// A rootfs as the apiserver must see it: absolute, resolved from where the user is.
pub fn absolute_rootfs(path: &Path) -> Result<String> {
    match std::fs::canonicalize(path) {
        Ok(p) => Ok(p.display().to_string()),
        Err(e) => bail!("rootfs {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<ContainerConfig> {
        parse(text, "test.json")
    }

    fn err(text: &str) -> String {
        format!("{:#}", parsed(text).expect_err("should be refused"))
    }

    #[test]
    fn unknown_keys_are_named_with_their_paths() {
        let e = err(r#"{"process": {"args": ["true"], "tyy": true},
                       "linux": {"netdevices": {}}, "netdevices": {}}"#);
        assert!(e.contains("unknown keys"), "{e}");
        for path in ["process.tyy", "linux.netdevices", "netdevices"] {
            assert!(e.contains(path), "{path} is not named: {e}");
        }
        let e = err(r#"{"process": {"args": ["true"]},
                       "networks": [{"network": "n1", "addr": "10.0.0.1"}],
                       "ports": [{"host_port": 1, "container_port": 2, "protocol": "tcp", "host_ip": null, "x": 1}]}"#);
        assert!(
            e.contains("networks.0.addr") && e.contains("ports.0.x"),
            "{e}"
        );
    }

    #[test]
    fn net_devices_in_the_oci_position_or_at_the_top_but_not_both() {
        let oci = parsed(
            r#"{"process": {"args": ["true"]},
                            "linux": {"netDevices": {"nd0": {"name": "data0"}}}}"#,
        )
        .expect("linux.netDevices");
        assert_eq!(oci.net_devices["nd0"].name.as_deref(), Some("data0"));
        let top = parsed(
            r#"{"process": {"args": ["true"]},
                            "netDevices": {"nd0": {"name": "data0"}}}"#,
        )
        .expect("netDevices");
        assert_eq!(top.net_devices, oci.net_devices);
        let e = err(r#"{"process": {"args": ["true"]}, "netDevices": {},
                       "linux": {"netDevices": {}}}"#);
        assert!(e.contains("netDevices is given twice"), "{e}");
    }

    #[test]
    fn networks_default_like_the_flags() {
        let none_given = parsed(r#"{"process": {"args": ["true"]}}"#).expect("no networks");
        assert_eq!(none_given.networks, vec![default_network()]);
        for none in [
            r#"{"process": {"args": ["true"]}, "network": "none"}"#,
            r#"{"process": {"args": ["true"]}, "networks": ["none"]}"#,
            r#"{"process": {"args": ["true"]}, "networks": [{"network": "none"}]}"#,
            r#"{"process": {"args": ["true"]}, "networks": []}"#,
        ] {
            assert!(parsed(none).expect(none).networks.is_empty(), "{none}");
        }
        let spec = parsed(
            r#"{"process": {"args": ["true"]}, "networks": ["n1,ip=10.1.0.5", {"network": "n2"}]}"#,
        )
        .expect("specs");
        assert_eq!(spec.networks[0].network, "n1");
        assert_eq!(spec.networks[0].ip, Some("10.1.0.5".parse().expect("ip")));
        assert_eq!(spec.networks[1].network, "n2");
        let e = err(r#"{"process": {"args": ["true"]}, "networks": ["none", "n1"]}"#);
        assert!(e.contains("cannot be combined"), "{e}");
        let e = err(r#"{"process": {"args": ["true"]}, "network": "n1", "networks": ["n2"]}"#);
        assert!(e.contains("use one"), "{e}");
        let e = err(r#"{"process": {"args": ["true"]}, "networks": ["n1,bogus=1"]}"#);
        assert!(e.contains("unknown key \"bogus\""), "{e}");
    }

    #[test]
    fn a_record_written_by_the_apiserver_reads_back_the_same() {
        let record = r#"{"version": 1, "id": "c1", "process": {"args": ["sleep", "1"],
            "env": [], "cwd": null, "user": null, "uid": 0, "gid": 0, "tty": false,
            "interactive": false},
            "rootfs": null, "hostname": "c1", "dns": [],
            "networks": [{"network": "default", "ip": null, "ip6": null, "mac": null, "ifname": "eth0",
                "aliases": []}],
            "netDevices": {}, "ports": [], "auto_remove": false, "labels": {}, "created": 5,
            "log": {"max_size": 65536, "max_files": 2},
            "security": {"privileged": false, "cap_add": ["CAP_SYS_ADMIN"], "cap_drop": [],
            "capabilities": ["CAP_CHOWN"], "no_new_privileges": true, "seccomp": "default",
            "masked_paths": ["/proc/kcore"], "readonly_paths": [], "read_only": true,
            "shm_size": 1048576, "host_rootfs": false},
            "resources": {"memory": 67108864, "memory_swap": -1, "nano_cpus": 1500000000,
                "cpu_shares": 512, "pids_limit": 2048, "oom_score_adj": null,
                "ulimits": [{"name": "nofile", "soft": 1024, "hard": 2048}],
                "devices": [{"path_on_host": "/dev/fuse", "path_in_container": "/dev/fuse",
                    "permissions": "rwm"}]},
            "userns": "auto", "image": null, "restart": "on-failure:3",
            "health_flags": {"test": ["sh", "-c", "true"], "interval_ms": 1000, "timeout_ms": null,
                "start_period_ms": null, "retries": 2, "on_failure": "restart", "disabled": false},
            "healthcheck": {"test": ["sh", "-c", "true"], "interval_ms": 1000, "timeout_ms": 30000,
                "start_period_ms": 0, "retries": 2, "on_failure": "restart"},
            "mounts": [{"type": "bind", "source": "/srv", "target": "/data", "readonly": true,
                "propagation": "rslave", "create_source": true, "anonymous": false,
                "no_copy": false, "volume_opts": {}, "tmpfs_size": null, "tmpfs_mode": null,
                "tmpfs_exec": false}]}"#;
        let config = parsed(record).expect("a record");
        assert_eq!(
            serde_json::to_value(&config).expect("json"),
            serde_json::from_str::<serde_json::Value>(record).expect("json")
        );
    }
}
