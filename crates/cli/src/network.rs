//! `container network create|ls|inspect|rm|prune|gc|connect|disconnect`.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use container_protocol::api::{ApiRequest, ApiResponse, NetworkConnect, NetworkCreate};
use container_store::Paths;

use crate::client::{call, connect};
use crate::output::{self, Format};

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a network.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show networks' configuration and live state as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks (refused while a container uses one).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every network no container uses.
    Prune,
    /// Release IP reservations held by no live container, now.
    Gc { name: Option<String> },
    /// Attach a container to a network (live, if it runs).
    Connect(ConnectArgs),
    /// Take a container off a network (live, if it runs).
    Disconnect {
        /// Let a running container lose its last network (loopback only is left).
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
}

#[derive(Args)]
pub struct ConnectArgs {
    /// Static IPv4 address on the network.
    #[arg(long)]
    ip: Option<std::net::Ipv4Addr>,
    /// Static IPv6 address on the network.
    #[arg(long)]
    ip6: Option<std::net::Ipv6Addr>,
    /// MAC address of the new interface.
    #[arg(long)]
    mac: Option<container_protocol::container::MacAddr>,
    /// Another name for the container on this network (repeatable).
    #[arg(long = "alias", value_name = "NAME")]
    aliases: Vec<String>,
    network: String,
    container: String,
}

#[derive(Args)]
pub struct CreateArgs {
    /// Network plugin: bridge (default), macvlan, none, cni.
    #[arg(long)]
    plugin: Option<String>,
    /// IPv4 subnet (default: a free /24 from 10.88.0.0/16).
    #[arg(long)]
    subnet: Option<String>,
    /// IPv4 gateway (default: the subnet's first address).
    #[arg(long)]
    gateway: Option<String>,
    /// Dual stack: an IPv6 subnet too (without --subnet-v6, a free ULA /64 in fd00::/8).
    #[arg(long)]
    ipv6: bool,
    /// IPv6 subnet (given alone: an IPv6-only network).
    #[arg(long = "subnet-v6")]
    subnet_v6: Option<String>,
    /// IPv6 gateway.
    #[arg(long = "gateway-v6")]
    gateway_v6: Option<String>,
    /// No route out: no masquerade, no forwarding beyond the network.
    #[arg(long)]
    internal: bool,
    /// No name server on the network (containers get the host's resolvers).
    #[arg(long = "disable-dns")]
    disable_dns: bool,
    /// Label KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Plugin option KEY=VALUE (repeatable), e.g. parent=eth0, mode=bridge, mtu=1400.
    #[arg(long = "opt", short = 'o', value_name = "KEY=VALUE")]
    options: Vec<String>,
    name: String,
}

pub fn key_value(what: &str, s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("invalid {what} {s:?}: expected KEY=VALUE"),
    }
}

pub async fn run(paths: &Paths, command: NetworkCommand) -> Result<()> {
    let client = connect(&paths.apiserver_socket()).await?;
    match command {
        NetworkCommand::Create(a) => {
            let req = NetworkCreate {
                name: a.name,
                plugin: a.plugin,
                subnet: a.subnet,
                gateway: a.gateway,
                subnet_v6: a.subnet_v6,
                gateway_v6: a.gateway_v6,
                internal: a.internal,
                disable_dns: a.disable_dns,
                ipv6: a.ipv6,
                labels: a
                    .labels
                    .iter()
                    .map(|l| key_value("label", l))
                    .collect::<Result<_>>()?,
                options: a
                    .options
                    .iter()
                    .map(|o| key_value("option", o))
                    .collect::<Result<_>>()?,
            };
            if let ApiResponse::Names(names) = call(&client, ApiRequest::NetworkCreate(req)).await?
            {
                for n in names {
                    println!("{n}");
                }
            }
        }
        NetworkCommand::Ls { quiet, format } => {
            let ApiResponse::Networks(list) = call(&client, ApiRequest::NetworkList).await? else {
                bail!("unexpected answer from the apiserver");
            };
            if quiet {
                for n in &list {
                    println!("{}", n.name);
                }
            } else if format == Format::Json {
                output::json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|n| {
                        vec![
                            n.name.clone(),
                            n.plugin.clone(),
                            n.subnet.clone().unwrap_or_else(|| "-".into()),
                            n.subnet_v6.clone().unwrap_or_else(|| "-".into()),
                            if n.internal {
                                "yes".into()
                            } else {
                                "no".into()
                            },
                            n.containers.len().to_string(),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "NAME",
                        "PLUGIN",
                        "SUBNET",
                        "SUBNET V6",
                        "INTERNAL",
                        "CONTAINERS",
                    ],
                    &rows,
                )?;
            }
        }
        NetworkCommand::Inspect { names } => {
            if let ApiResponse::Json(j) = call(&client, ApiRequest::NetworkInspect(names)).await? {
                println!("{j}");
            }
        }
        NetworkCommand::Rm { names } => {
            if let ApiResponse::Names(names) =
                call(&client, ApiRequest::NetworkRemove(names)).await?
            {
                for n in names {
                    println!("{n}");
                }
            }
        }
        NetworkCommand::Prune => {
            if let ApiResponse::Names(names) = call(&client, ApiRequest::NetworkPrune).await? {
                for n in names {
                    println!("{n}");
                }
            }
        }
        NetworkCommand::Connect(a) => {
            let req = NetworkConnect {
                network: a.network,
                container: a.container,
                ip: a.ip,
                ip6: a.ip6,
                mac: a.mac,
                aliases: a.aliases,
            };
            call(&client, ApiRequest::NetworkConnect(req)).await?;
        }
        NetworkCommand::Disconnect {
            force,
            network,
            container,
        } => {
            let req = ApiRequest::NetworkDisconnect {
                network,
                container,
                force,
            };
            call(&client, req).await?;
        }
        NetworkCommand::Gc { name } => {
            if let ApiResponse::Collected(list) = call(&client, ApiRequest::NetworkGc(name)).await?
            {
                for (network, r) in list {
                    // The holder comes from a file anyone with write access may have
                    // written: never send its control characters to a terminal.
                    println!(
                        "{network}\t{}\t{}\t{}",
                        r.ip,
                        r.container_id.escape_debug(),
                        r.ifname.escape_debug()
                    );
                }
            }
        }
    }
    Ok(())
}
