//! Every check `network create` makes, with nothing changed yet: the name, the plugin
//! and its options, the subnets (given, or the first free /24 of the pool) against every
//! other network's, the gateways, and what only the host can tell.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use container_network_helper::plugins;
use container_protocol::api::NetworkCreate;
use container_protocol::network::{PluginKind, UnknownPlugin};
use container_store::{unix_now, validate_id, NameKind, NetworkConfig};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::Networks;
use crate::error::{bad, ApiError};
use crate::subnets;

fn parse_net<T: std::str::FromStr>(what: &str, example: &str, value: &str) -> Result<T, ApiError> {
    value.parse().map_err(|_| {
        ApiError::Invalid(format!(
            "invalid {what} {value:?}: expected a CIDR such as {example}"
        ))
    })
}

fn plugin_of(req: &NetworkCreate) -> Result<PluginKind, ApiError> {
    let plugin: PluginKind = match &req.plugin {
        Some(name) => name
            .parse()
            .map_err(|e: UnknownPlugin| bad(e.to_string()))?,
        None => container_store::network::DEFAULT_PLUGIN,
    };
    let addressing = req.subnet.is_some()
        || req.subnet_v6.is_some()
        || req.gateway.is_some()
        || req.gateway_v6.is_some();
    if !plugins::uses_ipam(plugin) && addressing {
        return Err(bad(format!(
            "plugin {plugin} takes no --subnet or --gateway"
        )));
    }
    Ok(plugin)
}

type Pairs = BTreeMap<String, String>;

fn labels_and_options(req: &NetworkCreate) -> Result<(Pairs, Pairs), ApiError> {
    let mut labels = BTreeMap::new();
    for (k, v) in &req.labels {
        if k.is_empty() {
            return Err(bad(format!("invalid label {k:?}={v:?}: empty key")));
        }
        labels.insert(k.clone(), v.clone());
    }
    let mut options = BTreeMap::new();
    for (k, v) in &req.options {
        if options.insert(k.clone(), v.clone()).is_some() {
            return Err(bad(format!("option {k} given twice")));
        }
    }
    Ok((labels, options))
}

fn subnet_v4(s: &str) -> Result<Ipv4Net, ApiError> {
    let net: Ipv4Net = parse_net("subnet", "10.1.2.0/24", s)?;
    if net.trunc() != net {
        return Err(bad(format!(
            "invalid subnet {s}: host bits are set (did you mean {}?)",
            net.trunc()
        )));
    }
    if net.prefix_len() > 30 {
        return Err(bad(format!(
            "invalid subnet {s}: a /{} leaves no room for containers (at most /30)",
            net.prefix_len()
        )));
    }
    Ok(net)
}

fn subnet_v6(s: &str) -> Result<Ipv6Net, ApiError> {
    let net: Ipv6Net = parse_net("IPv6 subnet", "fd00:1::/64", s)?;
    if net.trunc() != net {
        return Err(bad(format!(
            "invalid IPv6 subnet {s}: host bits are set (did you mean {}?)",
            net.trunc()
        )));
    }
    if net.prefix_len() > 126 {
        return Err(bad(format!(
            "invalid IPv6 subnet {s}: too small (at most /126)"
        )));
    }
    Ok(net)
}

/// Every other network's subnets, a CNI conflist's declared ranges among them.
struct Taken(Vec<(String, IpNet)>);

impl Taken {
    fn of(others: &[NetworkConfig]) -> Taken {
        Taken(
            others
                .iter()
                .flat_map(|n| plugins::subnets(n).into_iter().map(|s| (n.id.clone(), s)))
                .collect(),
        )
    }

    fn check(&self, net: IpNet) -> Result<(), ApiError> {
        match self.0.iter().find(|(_, s)| subnets::overlaps(s, &net)) {
            Some((other, s)) => Err(ApiError::Conflict(format!(
                "subnet {net} overlaps network {other} ({s})"
            ))),
            None => Ok(()),
        }
    }

    fn nets(&self) -> Vec<IpNet> {
        self.0.iter().map(|(_, s)| *s).collect()
    }
}

impl Networks {
    /// Every check a create makes, with nothing changed yet.
    pub async fn validate_network(&self, req: NetworkCreate) -> Result<NetworkConfig, ApiError> {
        validate_id(NameKind::Network, &req.name)?;
        if self.paths.network_config(&req.name)?.exists() {
            return Err(ApiError::Conflict(format!(
                "network {} already exists",
                req.name
            )));
        }
        let plugin = plugin_of(&req)?;
        let (labels, options) = labels_and_options(&req)?;
        let others = self.records.networks();
        let taken = Taken::of(&others);

        let subnet = match &req.subnet {
            Some(s) => {
                let net = subnet_v4(s)?;
                taken.check(IpNet::V4(net))?;
                Some(net)
            }
            // A gateway without a subnet is the plugins' `validate` to refuse below; an
            // IPv6 subnet given alone makes an IPv6-only network (as Podman's).
            None if plugins::uses_ipam(plugin)
                && req.gateway.is_none()
                && req.subnet_v6.is_none() =>
            {
                Some(self.pick_subnet(&taken).await?)
            }
            None => None,
        };
        let subnet_v6 = match &req.subnet_v6 {
            Some(s) => {
                let net = subnet_v6(s)?;
                taken.check(IpNet::V6(net))?;
                Some(net)
            }
            None if req.ipv6 && plugins::uses_ipam(plugin) && req.gateway_v6.is_none() => {
                Some(self.pick_subnet_v6(&taken).await?)
            }
            None if req.ipv6 && !plugins::uses_ipam(plugin) => {
                return Err(bad(format!(
                    "--ipv6: plugin {plugin} takes no subnet (its own configuration says its addresses)"
                )))
            }
            None => None,
        };
        // Parsed here, checked against their subnets by the plugins' `validate` below.
        let gateway = match &req.gateway {
            Some(g) => Some(
                g.parse::<Ipv4Addr>()
                    .map_err(|_| bad(format!("invalid gateway {g:?}")))?,
            ),
            None => subnet.map(plugins::default_gateway_v4),
        };
        let gateway_v6 = match &req.gateway_v6 {
            Some(g) => Some(
                g.parse::<Ipv6Addr>()
                    .map_err(|_| bad(format!("invalid IPv6 gateway {g:?}")))?,
            ),
            None => subnet_v6.map(plugins::default_gateway_v6),
        };

        let config = NetworkConfig {
            version: container_store::network::NETWORK_RECORD_VERSION,
            id: req.name.clone(),
            plugin,
            subnet,
            gateway,
            subnet_v6,
            gateway_v6,
            internal: req.internal,
            disable_dns: req.disable_dns,
            labels,
            options,
            created: unix_now(),
            builtin: false,
            removing: false,
        };
        self.check_plugin(&config, &others, &taken).await?;
        Ok(config)
    }

    /// The plugin's own checks, what it hands out beyond our IPAM (a conflist's ranges)
    /// against every other network, its bridge not taken, and what the host says.
    async fn check_plugin(
        &self,
        config: &NetworkConfig,
        others: &[NetworkConfig],
        taken: &Taken,
    ) -> Result<(), ApiError> {
        let named = |e: &dyn std::fmt::Display| bad(format!("network {}: {e}", config.id));
        plugins::validate(config).map_err(|e| named(&e))?;
        let plugin = plugins::Plugin::for_config(config).map_err(|e| named(&e))?;
        for net in plugin.declared_subnets() {
            taken.check(net)?;
        }
        if let Some(bridge) = plugins::bridge_name(config) {
            if let Some(other) = others
                .iter()
                .find(|o| plugins::bridge_name(o).as_deref() == Some(bridge.as_str()))
            {
                return Err(ApiError::Conflict(format!(
                    "bridge {bridge} is already used by network {}",
                    other.id
                )));
            }
        }
        plugins::check_host(config, &self.host_netlink)
            .await
            .map_err(|e| named(&e))
    }

    /// The first /24 of the pool that no network and no host route uses.
    async fn pick_subnet(&self, taken: &Taken) -> Result<Ipv4Net, ApiError> {
        let routes = match self
            .host_netlink
            .routes(container_netlink::IpFamily::V4)
            .await
        {
            Ok(routes) => routes.into_iter().map(|r| r.dest).collect(),
            Err(e) => {
                tracing::warn!("reading host routes: {e}");
                vec![]
            }
        };
        subnets::pick_v4(&taken.nets(), &routes).ok_or_else(|| {
            ApiError::Conflict(format!(
                "no free /24 left in the pool {}; give --subnet",
                subnets::POOL
            ))
        })
    }
}

impl Networks {
    /// `--ipv6` without `--subnet-v6`: a random ULA /64 no network or host route uses.
    async fn pick_subnet_v6(&self, taken: &Taken) -> Result<Ipv6Net, ApiError> {
        let routes = match self
            .host_netlink
            .routes(container_netlink::IpFamily::V6)
            .await
        {
            Ok(routes) => routes.into_iter().map(|r| r.dest).collect(),
            Err(e) => {
                tracing::warn!("reading host routes: {e}");
                vec![]
            }
        };
        let mut failed = None;
        let picked = subnets::pick_ula(&taken.nets(), &routes, || {
            let mut b = [0u8; 8];
            if let Err(e) = getrandom::fill(&mut b) {
                failed = Some(e);
            }
            u64::from_le_bytes(b)
        });
        if let Some(e) = failed {
            return Err(ApiError::Internal(format!("random ULA prefix: {e}")));
        }
        picked.ok_or_else(|| {
            ApiError::Conflict(format!(
                "no free ULA /64 found in fd00::/8 after {} tries; give --subnet-v6",
                subnets::ULA_TRIES
            ))
        })
    }
}

/// Checks a record read from disk as a create would have: a hand-edited or corrupt file
/// must not reach a helper.
pub fn check_record(config: &NetworkConfig) -> Result<(), String> {
    if let Some(net) = config.subnet {
        if net.trunc() != net {
            return Err(format!("subnet {net}: host bits are set"));
        }
    }
    if let Some(net) = config.subnet_v6 {
        if net.trunc() != net {
            return Err(format!("IPv6 subnet {net}: host bits are set"));
        }
    }
    plugins::validate(config).map_err(|e| e.to_string())
}
