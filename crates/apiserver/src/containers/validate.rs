//! A container configuration checked whole before anything is written, and `create`.

use container_protocol::container::{HealthConfig, RestartPolicy};
use std::net::IpAddr;
use std::sync::Arc;

use container_protocol::network::PortMap;
use container_protocol::sandbox::{NetDeviceSpec, ProcessSpec};
use container_store::container::{ContainerConfig, ContainerState, CONTAINER_RECORD_VERSION};
use container_store::{unix_now, validate_id, NameKind, NetworkConfig};

use super::Containers;
use crate::claims::Claim;
use crate::error::{bad, ApiError};

/// `KEY=VALUE` entries with a non-empty key.
pub(super) fn check_env(env: &[String]) -> Result<(), String> {
    match env.iter().find(|e| !e.contains('=') || e.starts_with('=')) {
        Some(e) => Err(format!(
            "invalid environment entry {e:?}: expected KEY=VALUE"
        )),
        None => Ok(()),
    }
}

fn random_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::io("random id")(e.into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 63
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !h.starts_with('-')
}

/// A hostname made from a container name, which may hold characters a hostname can't
/// (`a_b` becomes `a-b`), as Docker users expect a name to give a usable hostname.
fn hostname_for(id: &str) -> String {
    let mapped: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let edge = |c: char| c == '-' || c == '.';
    let trimmed: String = mapped.trim_matches(edge).chars().take(63).collect();
    let trimmed = trimmed.trim_end_matches(edge).to_string();
    if trimmed.is_empty() {
        "container".to_string()
    } else {
        trimmed
    }
}

pub(super) fn net_device_specs(config: &ContainerConfig) -> Vec<NetDeviceSpec> {
    config
        .net_devices
        .iter()
        .map(|(host, dev)| NetDeviceSpec {
            host_name: host.clone(),
            name: dev.name.clone(),
        })
        .collect()
}

pub(super) fn process_spec(
    config: &ContainerConfig,
    args: &[String],
    extra_env: &[String],
) -> ProcessSpec {
    let mut env = config.process.env.clone();
    env.extend(extra_env.iter().cloned());
    ProcessSpec {
        args: args.to_vec(),
        env,
        cwd: config.process.cwd.clone(),
        user: config.process.user(),
        tty: config.process.tty,
    }
}

/// The addresses an attachment asks for by `--ip`/`--ip6`.
pub(super) fn static_addresses(
    att: &container_store::container::NetworkAttachmentConfig,
) -> Vec<IpAddr> {
    att.ip
        .map(IpAddr::V4)
        .into_iter()
        .chain(att.ip6.map(IpAddr::V6))
        .collect()
}

/// What a container holds exclusively while it runs.
pub(super) fn claims_of(config: &ContainerConfig) -> Vec<Claim> {
    let mut claims: Vec<Claim> = config.ports.iter().map(Claim::port).collect();
    claims.extend(config.net_devices.keys().cloned().map(Claim::NetDevice));
    for att in &config.networks {
        if let Some(mac) = att.mac {
            claims.push(Claim::Mac {
                network: att.network.clone(),
                mac: mac.0,
            });
        }
    }
    claims
}

impl Containers {
    pub async fn create(self: &Arc<Self>, config: ContainerConfig) -> Result<String, ApiError> {
        if config.version > CONTAINER_RECORD_VERSION {
            return Err(bad(format!(
                "invalid container configuration: version {} is newer than this build understands ({CONTAINER_RECORD_VERSION})",
                config.version,
            )));
        }
        let _create = self.create.lock().await;
        // An image a new container names stays until its record is written.
        let _image = self.images.using().await;
        let config = self.validate(config).await?;
        let id = config.id.clone();
        // Volumes it names are made now (Docker's "created on first use"); held from
        // here to the record, so no `volume rm` takes one meanwhile.
        let _volumes = self.volumes.lock.lock().await;
        let made = self.volumes.ensure_for(&config)?;
        // Nothing half made stays: not even the directory, nor the volumes just made.
        if let Err(e) = self
            .records
            .create_container(config, ContainerState::default())
        {
            self.volumes.discard(&made);
            return Err(ApiError::from(e).context(format!("container {id}: create")));
        }
        tracing::info!("container {id} created");
        self.publish("create", &id, &[]);
        Ok(id)
    }

    /// Checks a configuration and fills in what defaults to something; changes nothing.
    async fn validate(&self, mut config: ContainerConfig) -> Result<ContainerConfig, ApiError> {
        if config.id.is_empty() {
            config.id = random_id()?;
        }
        validate_id(NameKind::Container, &config.id)?;
        let id = config.id.clone();
        if self.paths.container_dir(&id)?.join("config.json").exists() {
            return Err(ApiError::Conflict(format!("container {id} already exists")));
        }
        // The image's config makes the command, so it comes before the checks of it.
        validate_health(&config)?;
        config.healthcheck = HealthConfig::resolve(&config.health_flags, None);
        // An image's HEALTHCHECK, under the flags.
        self.images.resolve_for(&mut config)?;
        if config.process.args.is_empty() || config.process.args[0].is_empty() {
            return Err(bad(format!("container {id}: no command given")));
        }
        check_env(&config.process.env).map_err(|e| bad(format!("container {id}: {e}")))?;
        config
            .process
            .check_user()
            .map_err(|e| bad(format!("container {id}: {e}")))?;
        config
            .log
            .check()
            .map_err(|e| bad(format!("container {id}: {e}")))?;
        if let Some(rootfs) = &config.rootfs {
            let meta = std::fs::metadata(rootfs)
                .map_err(|e| bad(format!("container {id}: rootfs {rootfs}: {e}")))?;
            if !meta.is_dir() {
                return Err(bad(format!(
                    "container {id}: rootfs {rootfs} is not a directory"
                )));
            }
        }
        if let Some(cwd) = &config.process.cwd {
            if !cwd.starts_with('/') {
                return Err(bad(format!(
                    "container {id}: working directory {cwd:?} must be absolute"
                )));
            }
        }
        let hostname = config.hostname.clone().unwrap_or_else(|| hostname_for(&id));
        if !valid_hostname(&hostname) {
            return Err(bad(format!(
                "container {id}: invalid hostname {hostname:?}"
            )));
        }
        config.hostname = Some(hostname);
        if config.auto_remove && config.restart != RestartPolicy::No {
            return Err(bad(format!(
                "container {}: --rm and --restart {} conflict: a removed container cannot be restarted",
                config.id,
                String::from(config.restart)
            )));
        }
        crate::resources::fill(&mut config, &self.resources)?;

        let mut ifnames: Vec<String> = Vec::new();
        let mut joined: Vec<String> = Vec::new();
        for (i, att) in config.networks.iter_mut().enumerate() {
            validate_id(NameKind::Network, &att.network)?;
            if joined.contains(&att.network) {
                return Err(bad(format!(
                    "container {id}: network {} is given twice: a container joins a network once",
                    att.network
                )));
            }
            joined.push(att.network.clone());
            let net = self.networks.config(&att.network)?;
            if net.removing {
                return Err(ApiError::Conflict(format!(
                    "container {id}: network {} is being removed",
                    att.network
                )));
            }
            let ifname = att.ifname.clone().unwrap_or_else(|| format!("eth{i}"));
            container_netlink::valid_ifname(&ifname)
                .map_err(|e| bad(format!("container {id}: network {}: {e}", att.network)))?;
            if ifnames.contains(&ifname) {
                return Err(bad(format!(
                    "container {id}: interface name {ifname} is used twice"
                )));
            }
            ifnames.push(ifname.clone());
            att.ifname = Some(ifname);
            let statics = static_addresses(att);
            if !statics.is_empty() {
                check_static_addresses(&id, &att.network, &net, &statics)?;
            }
            check_aliases(&self.networks, &id, att)?;
        }
        // A name answers one container: not someone's alias on a network this one joins.
        for att in &config.networks {
            if let Some(holder) = self.networks.name_holder(&att.network, &id, &id) {
                return Err(ApiError::Conflict(format!(
                    "container {id}: the name {id} is already taken by container {holder} on network {}",
                    att.network
                )));
            }
        }
        if !config.ports.is_empty() {
            self.check_ports(&config).await?;
        }
        for (host, dev) in &config.net_devices {
            let target = dev.name.clone().unwrap_or_else(|| host.clone());
            if ifnames.contains(&target) {
                return Err(bad(format!("container {id}: net device {host}: name {target} is already an interface of the container")));
            }
            ifnames.push(target);
        }
        if !config.net_devices.is_empty() {
            let specs = net_device_specs(&config);
            let networks_ifnames: Vec<String> = config
                .networks
                .iter()
                .filter_map(|n| n.ifname.clone())
                .collect();
            container_sandbox_helper::netdev::check(
                self.networks.host_netlink(),
                &specs,
                &networks_ifnames,
            )
            .await
            .map_err(|e| bad(format!("container {id}: {e}")))?;
        }
        self.resolve_security(&mut config)?;
        crate::volumes::check_mounts(&mut config)?;
        let image_dirs = match &config.image {
            Some(_) => vec![
                self.images.store().dir().join("layers"),
                self.paths.containers(),
            ],
            None => Vec::new(),
        };
        crate::volumes::check_idmappable(&self.volumes, &config, &image_dirs)?;
        config.created = unix_now();
        Ok(config)
    }

    /// Published ports need a bridge network first and distinct non-zero ports. Whether
    /// another container holds a host port is decided when this one starts.
    async fn check_ports(&self, config: &ContainerConfig) -> Result<(), ApiError> {
        let id = &config.id;
        let Some(first) = config.networks.first() else {
            return Err(bad(format!(
                "container {id}: publishing ports needs a network"
            )));
        };
        let net = self.networks.config(&first.network)?;
        let publishes = container_network_helper::Plugin::for_config(&net)
            .map_err(|e| bad(format!("container {id}: network {}: {e}", first.network)))?
            .publishes_ports();
        if !publishes {
            return Err(bad(format!(
                "container {id}: ports are published on the first network, and {} ({} network) cannot publish them (use a bridge network, or a CNI conflist with a \"portMappings\" plugin, first)",
                first.network, net.plugin
            )));
        }
        self.check_host_ips(config, &net).await?;
        let clash = |a: &PortMap, b: &PortMap| {
            a.host_port == b.host_port
                && a.protocol == b.protocol
                && (a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip)
        };
        for (i, p) in config.ports.iter().enumerate() {
            if p.host_port == 0 || p.container_port == 0 {
                return Err(bad(format!("container {id}: port 0 cannot be published")));
            }
            if config.ports[..i].iter().any(|q| clash(p, q)) {
                return Err(bad(format!(
                    "container {id}: host port {} is published twice",
                    p.host_port
                )));
            }
        }
        Ok(())
    }

    /// A host address a port is published on must be one this host has (or `0.0.0.0`,
    /// `::`), of a family the network carries: a forward to any other would never see
    /// a packet.
    async fn check_host_ips(
        &self,
        config: &ContainerConfig,
        net: &NetworkConfig,
    ) -> Result<(), ApiError> {
        let id = &config.id;
        let wanted: Vec<IpAddr> = config.ports.iter().filter_map(|p| p.host_ip).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let subnets = container_network_helper::plugins::subnets(net);
        for ip in &wanted {
            if !subnets.iter().any(|s| s.addr().is_ipv4() == ip.is_ipv4()) {
                let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
                return Err(bad(format!(
                    "container {id}: host address {ip}: network {} has no {family} subnet",
                    net.id
                )));
            }
        }
        let local: Vec<IpAddr> = self
            .networks
            .host_netlink()
            .all_addresses()
            .await
            .map_err(|e| {
                ApiError::io(format!("container {id}: list host addresses"))(std::io::Error::other(
                    e,
                ))
            })?
            .into_iter()
            .map(|a| a.address.addr())
            .collect();
        if let Some(ip) = wanted
            .iter()
            .find(|ip| !ip.is_unspecified() && !local.contains(ip))
        {
            return Err(bad(format!(
                "container {id}: cannot publish on {ip}: not an address of this host"
            )));
        }
        Ok(())
    }
}

/// Aliases are hostnames, and on their network each answers one container only.
pub(super) fn check_aliases(
    networks: &crate::networks::Networks,
    id: &str,
    att: &container_store::container::NetworkAttachmentConfig,
) -> Result<(), ApiError> {
    for (i, alias) in att.aliases.iter().enumerate() {
        if !valid_hostname(alias) {
            return Err(bad(format!(
                "container {id}: network {}: invalid alias {alias:?} (letters, digits, '-' and '.', at most 63)",
                att.network
            )));
        }
        if att.aliases[..i].contains(alias) {
            return Err(bad(format!(
                "container {id}: network {}: alias {alias} is given twice",
                att.network
            )));
        }
        if let Some(holder) = networks.name_holder(&att.network, alias, id) {
            return Err(ApiError::Conflict(format!(
                "container {id}: network {}: alias {alias} is already the name of container {holder} there",
                att.network
            )));
        }
    }
    Ok(())
}

/// Static addresses must be in the network's subnets (a conflist's declared ranges
/// count), on a network whose plugin takes them.
pub(super) fn check_static_addresses(
    id: &str,
    network: &str,
    net: &NetworkConfig,
    ips: &[IpAddr],
) -> Result<(), ApiError> {
    let plugin = container_network_helper::Plugin::for_config(net)
        .map_err(|e| bad(format!("container {id}: network {network}: {e}")))?;
    if !plugin.takes_static_addresses() {
        return Err(bad(format!(
            "container {id}: network {network} ({} network) cannot assign a static address (a bridge or macvlan network can, and a CNI conflist with an \"ips\" plugin)",
            net.plugin
        )));
    }
    let subnets = container_network_helper::plugins::subnets(net);
    for ip in ips {
        if !subnets.iter().any(|s| s.contains(ip)) {
            let list: Vec<String> = subnets.iter().map(|s| s.to_string()).collect();
            return Err(bad(format!(
                "container {id}: address {ip} is not in network {network} ({})",
                if list.is_empty() {
                    "no subnet".to_string()
                } else {
                    list.join(", ")
                }
            )));
        }
    }
    Ok(())
}

/// Health flags that cannot mean anything: a zero interval or timeout, zero retries,
/// an empty command.
fn validate_health(config: &ContainerConfig) -> Result<(), ApiError> {
    let f = &config.health_flags;
    let id = &config.id;
    for (flag, v) in [
        ("--health-interval", f.interval_ms),
        ("--health-timeout", f.timeout_ms),
    ] {
        if v == Some(0) {
            return Err(bad(format!(
                "container {id}: {flag} 0: give a duration of at least 1ms (e.g. 30s)"
            )));
        }
    }
    if f.retries == Some(0) {
        return Err(bad(format!(
            "container {id}: --health-retries 0: give a count of at least 1"
        )));
    }
    if f.test
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.iter().all(|a| a.trim().is_empty()))
    {
        return Err(bad(format!("container {id}: --health-cmd is empty")));
    }
    if f.disabled && f.test.is_some() {
        return Err(bad(format!(
            "container {id}: --health-cmd and --no-healthcheck are given together: use one"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_valid_hostnames() {
        for (name, want) in [
            ("web", "web"),
            ("a_b", "a-b"),
            ("_x_", "x"),
            ("a.b", "a.b"),
            ("___", "container"),
        ] {
            assert_eq!(hostname_for(name), want, "{name}");
            assert!(valid_hostname(&hostname_for(name)));
        }
        let long: String = "x".repeat(70);
        assert_eq!(hostname_for(&long).len(), 63);
    }
}
