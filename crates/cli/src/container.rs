//! Container commands, with the flags Docker, Podman and apple/container users know.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use container_protocol::api::{ApiRequest, ApiResponse};
use container_protocol::network::{PortMap, PortProtocol};
use container_protocol::sandbox::UserSpec;
use container_store::container::{
    ContainerConfig, LogConfig, NetDeviceConfig, NetworkAttachmentConfig, ProcessConfig, Status,
};
use container_store::Paths;

use crate::attach;
use crate::client::{call, connect, ApiClient};
use crate::config_file;
use crate::output::{self, Format};

#[derive(Args, Clone)]
pub struct CreateArgs {
    /// Name (and id) of the container.
    #[arg(long)]
    pub name: Option<String>,
    /// NET[,ip=IP][,ip6=IP][,mac=MAC][,ifname=IF] (repeatable; `none`: loopback only).
    #[arg(long = "network", value_name = "NETWORK")]
    pub networks: Vec<String>,
    /// Move host interface HOSTIF into the container, named NAME (repeatable).
    #[arg(long = "net-device", value_name = "HOSTIF[=NAME]")]
    pub net_devices: Vec<String>,
    /// Root filesystem directory (or --host-rootfs).
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    #[arg(long)]
    pub hostname: Option<String>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// File of KEY=VALUE lines.
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// USER[:GROUP] to run as: names (from the container's /etc/passwd and /etc/group)
    /// or numbers.
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// DNS server (repeatable); replaces the networks' name servers for this container.
    #[arg(long)]
    pub dns: Vec<IpAddr>,
    /// Another name for the container on its networks (repeatable; `alias=` in
    /// --network gives one network's).
    #[arg(long = "network-alias", value_name = "NAME")]
    pub network_aliases: Vec<String>,
    /// Publish a port: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp] (repeatable).
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    pub publish: Vec<String>,
    /// Label KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// What to do when the workload exits: no, on-failure[:N], always, unless-stopped.
    #[arg(long, default_value = "no", value_parser = |s: &str| s.parse::<container_protocol::container::RestartPolicy>())]
    pub restart: container_protocol::container::RestartPolicy,
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Log limits, as Docker's `local` driver: max-size=SIZE (64k, 10m, 1g; default
    /// 10m), max-file=N (1 to 8; default 3). Repeatable.
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opts: Vec<String>,
    /// A JSON container configuration (the on-disk shape) instead of flags.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub health: crate::health::HealthArgs,
    #[command(flatten)]
    pub security: crate::security::SecurityArgs,
    /// cgroup limits, devices, ulimits, user namespace (issue 10).
    #[command(flatten)]
    pub resources: crate::resources::ResourceArgs,
    /// -v, --mount, --tmpfs (issue 12).
    #[command(flatten)]
    pub volumes: crate::volume::VolumeArgs,
    /// Replace the image's ENTRYPOINT ('' empties it; the image's CMD is dropped too).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Pull the image: missing (when it is not here), always, never.
    #[arg(long, default_value = "missing", value_parser = crate::image::parse_pull)]
    pub pull: container_protocol::container::PullPolicy,
    /// os/arch[/variant] of the image to pull (default: this host's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn parse_network(spec: &str) -> Result<NetworkAttachmentConfig> {
    let mut parts = spec.split(',');
    let network = parts.next().unwrap_or_default().to_string();
    if network.is_empty() {
        bail!("invalid --network {spec:?}: no network name");
    }
    let mut att = NetworkAttachmentConfig {
        network,
        ip: None,
        ip6: None,
        mac: None,
        ifname: None,
        aliases: Vec::new(),
    };
    for part in parts {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid --network {spec:?}: {part:?} is not KEY=VALUE"))?;
        match k {
            "ip" => {
                att.ip = Some(v.parse().map_err(|_| {
                    anyhow!("invalid --network {spec:?}: ip {v:?} is not an IPv4 address")
                })?)
            }
            "ip6" => {
                att.ip6 = Some(v.parse().map_err(|_| {
                    anyhow!("invalid --network {spec:?}: ip6 {v:?} is not an IPv6 address")
                })?)
            }
            "mac" => {
                att.mac = Some(
                    v.parse()
                        .map_err(|e| anyhow!("invalid --network {spec:?}: {e}"))?,
                )
            }
            "ifname" => att.ifname = Some(v.to_string()),
            "alias" => att.aliases.push(v.to_string()),
            other => bail!(
                "invalid --network {spec:?}: unknown key {other:?} (use ip, ip6, mac, ifname, alias)"
            ),
        }
    }
    Ok(att)
}

/// `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]`; an IPv6 host address in brackets.
fn parse_publish(spec: &str) -> Result<PortMap> {
    let bad = || {
        anyhow!("invalid --publish {spec:?}: expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]")
    };
    let (ports, protocol) = match spec.rsplit_once('/') {
        Some((p, "tcp")) => (p, PortProtocol::Tcp),
        Some((p, "udp")) => (p, PortProtocol::Udp),
        Some(_) => return Err(bad()),
        None => (spec, PortProtocol::Tcp),
    };
    let (rest, container) = ports.rsplit_once(':').ok_or_else(bad)?;
    let (host_ip, host) = match rest.rsplit_once(':') {
        Some((ip, port)) => {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            (Some(ip.parse().map_err(|_| bad())?), port)
        }
        None => (None, rest),
    };
    let port = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    Ok(PortMap {
        host_ip,
        host_port: port(host)?,
        container_port: port(container)?,
        protocol,
    })
}

/// A container joins a network once: twice would give it two interfaces on one
/// bridge, and two addresses of one subnet (the apiserver refuses it too).
fn once_per_network(networks: &[NetworkAttachmentConfig]) -> Result<()> {
    for (i, att) in networks.iter().enumerate() {
        if networks[..i].iter().any(|a| a.network == att.network) {
            bail!(
                "--network {} is given twice: a container joins a network once",
                att.network
            );
        }
    }
    Ok(())
}

/// `--network-alias` names the container on every network it joins, as Docker's does
/// on the network of its `run`.
fn add_aliases(networks: &mut [NetworkAttachmentConfig], aliases: &[String]) -> Result<()> {
    if !aliases.is_empty() && networks.is_empty() {
        bail!("--network-alias needs a network (not --network none)");
    }
    for att in networks {
        for alias in aliases {
            if !att.aliases.contains(alias) {
                att.aliases.push(alias.clone());
            }
        }
    }
    Ok(())
}

/// Builds the configuration the apiserver receives, from flags or from `--config`.
pub fn build_config(a: &CreateArgs) -> Result<ContainerConfig> {
    if let Some(path) = &a.config {
        let mut config = config_file::load(path)?;
        if let Some(name) = &a.name {
            config.id = name.clone();
        }
        once_per_network(&config.networks)?;
        add_aliases(&mut config.networks, &a.network_aliases)?;
        config.log = log_config(config.log, &a.log_opts)?;
        config.security = a.security.apply(config.security)?;
        config.mounts.extend(a.volumes.build()?);
        return Ok(config);
    }
    let (image, command) = crate::image::split(a);
    if command.is_empty() && image.is_none() {
        bail!("no command given: container run [OPTIONS] IMAGE [CMD [ARG...]], or --rootfs DIR [--] CMD [ARG...]");
    }
    let mut env = Vec::new();
    for file in &a.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("read env file {}", file.display()))?;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            // As Docker and compose read a shell-style file: `export D=4` sets D.
            let line = line
                .strip_prefix("export ")
                .map(str::trim_start)
                .unwrap_or(line);
            if !line.contains('=') {
                bail!(
                    "env file {}: invalid line {line:?}: expected KEY=VALUE",
                    file.display()
                );
            }
            env.push(line.to_string());
        }
    }
    for e in &a.env {
        if e.contains('=') {
            env.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            // `-e NAME` passes the caller's value, as Docker does.
            env.push(format!("{e}={v}"));
        } else {
            bail!("invalid -e {e:?}: expected KEY=VALUE");
        }
    }
    // Names are looked up in the container's own /etc/passwd and /etc/group at start.
    let user = a
        .user
        .as_deref()
        .map(UserSpec::parse)
        .transpose()
        .map_err(|e| {
            anyhow!(
                "invalid --user {:?}: {} (expected USER[:GROUP], names or numbers)",
                e.spec,
                e.why
            )
        })?;
    let mut networks: Vec<NetworkAttachmentConfig> = if a.networks.is_empty() {
        vec![config_file::default_network()]
    } else if a.networks.iter().any(|n| n == "none") {
        if a.networks.len() > 1 {
            bail!("--network none cannot be combined with other networks");
        }
        vec![]
    } else {
        a.networks
            .iter()
            .map(|n| parse_network(n))
            .collect::<Result<_>>()?
    };
    once_per_network(&networks)?;
    add_aliases(&mut networks, &a.network_aliases)?;
    let mut net_devices = BTreeMap::new();
    for d in &a.net_devices {
        let (host, name) = match d.split_once('=') {
            Some((h, n)) => (h.to_string(), Some(n.to_string())),
            None => (d.clone(), None),
        };
        if host.is_empty() {
            bail!("invalid --net-device {d:?}: no host interface");
        }
        if net_devices
            .insert(host.clone(), NetDeviceConfig { name })
            .is_some()
        {
            bail!("--net-device {host} given twice");
        }
    }
    let labels = a
        .labels
        .iter()
        .map(|l| crate::network::key_value("label", l))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let rootfs = match &a.rootfs {
        Some(p) => Some(config_file::absolute_rootfs(p)?),
        None => None,
    };
    let (resources, userns) = crate::resources::build(&a.resources)?;
    Ok(ContainerConfig {
        version: 0,
        id: a.name.clone().unwrap_or_default(),
        process: ProcessConfig {
            args: if image.is_some() {
                vec![]
            } else {
                command.clone()
            },
            env,
            cwd: a.workdir.clone(),
            user,
            uid: 0,
            gid: 0,
            tty: a.tty,
            interactive: a.interactive,
        },
        rootfs,
        hostname: a.hostname.clone(),
        dns: a.dns.clone(),
        networks,
        net_devices,
        ports: a
            .publish
            .iter()
            .map(|p| parse_publish(p))
            .collect::<Result<_>>()?,
        auto_remove: a.rm,
        labels,
        created: 0,
        log: log_config(LogConfig::default(), &a.log_opts)?,
        restart: a.restart,
        health_flags: a.health.flags(),
        healthcheck: None,
        security: a.security.apply(Default::default())?,
        resources,
        userns,
        image: image.map(|reference| container_protocol::container::ImageUse {
            reference,
            entrypoint: a.entrypoint.as_ref().map(|e| {
                if e.is_empty() {
                    vec![]
                } else {
                    vec![e.clone()]
                }
            }),
            command,
            pull: a.pull,
            id: None,
            layers: vec![],
            stop_signal: None,
        }),
        mounts: a.volumes.build()?,
    })
}

/// `10m`, `64k`, `1g`, or bytes; units of 1024, as Docker's.
pub fn parse_size(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let digits = lower.trim_end_matches('b');
    let (number, unit) = match digits.char_indices().last()? {
        (i, 'k') => (&digits[..i], 1 << 10),
        (i, 'm') => (&digits[..i], 1 << 20),
        (i, 'g') => (&digits[..i], 1 << 30),
        _ => (digits, 1),
    };
    number.parse::<u64>().ok()?.checked_mul(unit)
}

/// The `--log-opt` flags over `base`; the apiserver checks the limits.
fn log_config(base: LogConfig, opts: &[String]) -> Result<LogConfig> {
    let mut log = base;
    for opt in opts {
        let (k, v) = opt
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid --log-opt {opt:?}: expected KEY=VALUE"))?;
        match k {
            "max-size" => {
                log.max_size = parse_size(v).ok_or_else(|| {
                    anyhow!("invalid --log-opt {opt:?}: {v:?} is not a size (64k, 10m, 1g)")
                })?
            }
            "max-file" => {
                log.max_files = v.parse().map_err(|_| {
                    anyhow!("invalid --log-opt {opt:?}: {v:?} is not a number of files")
                })?
            }
            other => bail!(
                "invalid --log-opt {opt:?}: unknown option {other:?} (use max-size, max-file)"
            ),
        }
    }
    Ok(log)
}

pub async fn create(client: &ApiClient, config: &ContainerConfig) -> Result<String> {
    let req = ApiRequest::ContainerCreate {
        config: Box::new(config.clone()),
    };
    match call(client, req).await? {
        ApiResponse::Created { id } => Ok(id),
        _ => bail!("unexpected answer from the apiserver"),
    }
}

pub async fn run(paths: &Paths, args: CreateArgs, detach: bool) -> Result<i32> {
    let client = connect(&paths.apiserver_socket()).await?;
    let config = build_config(&args)?;
    crate::image::ensure(&client, &config, args.platform.clone()).await?;
    let (tty, interactive) = (config.process.tty, config.process.interactive);
    let config = Box::new(config);
    if detach {
        println!("{}", attach::run_detached(&client, config).await?);
        return Ok(0);
    }
    attach::run_attached(&client, config, tty, interactive).await
}

pub async fn create_cmd(paths: &Paths, args: CreateArgs) -> Result<i32> {
    let client = connect(&paths.apiserver_socket()).await?;
    let config = build_config(&args)?;
    crate::image::ensure(&client, &config, args.platform.clone()).await?;
    let id = create(&client, &config).await?;
    println!("{id}");
    Ok(0)
}

pub async fn start(paths: &Paths, ids: Vec<String>, attach_out: bool) -> Result<i32> {
    let client = connect(&paths.apiserver_socket()).await?;
    if attach_out {
        let [id] = ids.as_slice() else {
            bail!("start -a takes one container")
        };
        return attach::start_attached(&client, id, false, false).await;
    }
    for id in ids {
        attach::start_detached(&client, &id).await?;
        println!("{id}");
    }
    Ok(0)
}

pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map(|s| s as i32)
            .map_err(|_| anyhow!("invalid signal {s:?}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| anyhow!("invalid signal {s:?}"))
}

pub async fn stop(paths: &Paths, ids: Vec<String>, time: u64, signal: Option<&str>) -> Result<i32> {
    let client = connect(&paths.apiserver_socket()).await?;
    // 0: the container's own (its image's StopSignal, else SIGTERM).
    let signal = signal.map(parse_signal).transpose()?.unwrap_or(0);
    for id in ids {
        call(
            &client,
            ApiRequest::ContainerStop {
                id: id.clone(),
                signal,
                timeout_secs: time,
            },
        )
        .await?;
        println!("{id}");
    }
    Ok(0)
}

pub async fn kill(paths: &Paths, ids: Vec<String>, signal: &str) -> Result<i32> {
    let client = connect(&paths.apiserver_socket()).await?;
    let signal = parse_signal(signal)?;
    for id in ids {
        call(
            &client,
            ApiRequest::ContainerKill {
                id: id.clone(),
                signal,
            },
        )
        .await?;
        println!("{id}");
    }
    Ok(0)
}

pub async fn rm(paths: &Paths, ids: Vec<String>, force: bool, volumes: bool) -> Result<i32> {
    let client = connect(&paths.apiserver_socket()).await?;
    let mut failed = false;
    for id in ids {
        match call(
            &client,
            ApiRequest::ContainerRemove {
                id: id.clone(),
                force,
                volumes,
            },
        )
        .await
        {
            Ok(_) => println!("{id}"),
            Err(e) => {
                eprintln!("container: error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub async fn ls(
    paths: &Paths,
    all: bool,
    quiet: bool,
    no_trunc: bool,
    format: Format,
) -> Result<i32> {
    let client = connect(&paths.apiserver_socket()).await?;
    let ApiResponse::Containers(list) = call(&client, ApiRequest::ContainerList { all }).await?
    else {
        bail!("unexpected answer from the apiserver");
    };
    if quiet {
        output::lines(list.iter().map(|c| c.id.as_str()))?;
    } else if format == Format::Json {
        output::json(&list)?;
    } else {
        // Cells borrow from the list where they can: an allocation each would be most
        // of the table's cost with 1,000 containers.
        let rows: Vec<[Cow<str>; 5]> = list
            .iter()
            .map(|c| {
                let status: Cow<str> = match (c.status, c.exit_code) {
                    (Status::Stopped, Some(code)) => format!("stopped ({code})").into(),
                    (s, _) => match &c.health {
                        Some(h) => format!("{s} ({h})").into(),
                        None => s.as_str().into(),
                    },
                };
                let networks: Cow<str> = match c.networks.as_slice() {
                    [one] => one.as_str().into(),
                    many => many.join(",").into(),
                };
                [
                    c.id.as_str().into(),
                    c.command.as_str().into(),
                    status,
                    networks,
                    output::addresses(&c.addresses).into(),
                ]
                .map(|cell| match no_trunc {
                    true => cell,
                    false => output::truncate(cell, output::CELL_WIDTH),
                })
            })
            .collect();
        output::table(&["ID", "COMMAND", "STATUS", "NETWORKS", "ADDRESSES"], &rows)?;
    }
    Ok(0)
}

/// As Docker: the records found, as one array, and an error on stderr for each name
/// that is not; the exit code is then that error's (1 for not found).
pub async fn inspect(paths: &Paths, ids: Vec<String>) -> Result<i32> {
    let client = connect(&paths.apiserver_socket()).await?;
    let mut found = Vec::new();
    let mut code = 0;
    for id in ids {
        match call(&client, ApiRequest::ContainerInspect(vec![id])).await {
            Ok(ApiResponse::Json(j)) => {
                let records: Vec<serde_json::Value> = serde_json::from_str(&j)
                    .context("the apiserver sent an inspect answer that is not JSON")?;
                found.extend(records);
            }
            Ok(_) => bail!("unexpected answer from the apiserver"),
            Err(e) => {
                eprintln!("container: error: {e:#}");
                code = code.max(i32::from(crate::client::exit_code(&e)));
            }
        }
    }
    output::json(&found)?;
    Ok(code)
}

pub async fn wait(paths: &Paths, ids: Vec<String>) -> Result<i32> {
    let client = connect(&paths.apiserver_socket()).await?;
    for id in ids {
        if let ApiResponse::Exited(s) = call(&client, ApiRequest::ContainerWait { id }).await? {
            println!("{}", s.code);
        }
    }
    Ok(0)
}
