//! Mounts (`-v`, `--mount`, `--tmpfs`) as Docker spells them, and `container volume
//! create|ls|inspect|rm|prune`. The CLI parses the flags' syntax and names the flag in
//! its errors; the apiserver checks the values (paths, names) whatever sent them.

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use container_protocol::api::{ApiRequest, ApiResponse};
use container_protocol::volume::{MountConfig, MountKind, Propagation, VolumeCreate};

use crate::client::{call, ApiClient};
use crate::output::{self, Format};

#[derive(Args, Clone, Default)]
pub struct VolumeArgs {
    /// HOST_PATH:CONTAINER_PATH[:ro|rw] binds a host path (a missing host directory is
    /// created, as Docker's -v does); NAME:CONTAINER_PATH[:ro] a named volume (created on
    /// first use, seeded with the image's files there); CONTAINER_PATH an anonymous
    /// volume. Options also: nocopy, and a propagation (rslave, rshared, …). Repeatable.
    #[arg(short = 'v', long = "volume", value_name = "SPEC")]
    pub volumes: Vec<String>,
    /// type=bind|volume|tmpfs,source=…,target=…[,readonly][,bind-propagation=…]
    /// [,tmpfs-size=…][,tmpfs-mode=…][,volume-opt=K=V][,volume-nocopy]. A bind's source
    /// must exist. Repeatable.
    #[arg(long = "mount", value_name = "SPEC")]
    pub mounts: Vec<String>,
    /// A tmpfs at PATH, noexec, nosuid, nodev: PATH[:size=64m,mode=1777,exec,ro].
    /// Repeatable.
    #[arg(long = "tmpfs", value_name = "PATH[:OPTS]")]
    pub tmpfs: Vec<String>,
}

impl VolumeArgs {
    /// Every mount, in the order of the flags' kinds: -v, --mount, --tmpfs.
    pub fn build(&self) -> Result<Vec<MountConfig>> {
        let mut out = Vec::new();
        for v in &self.volumes {
            out.push(parse_volume(v)?);
        }
        for m in &self.mounts {
            out.push(parse_mount(m)?);
        }
        for t in &self.tmpfs {
            out.push(parse_tmpfs(t)?);
        }
        Ok(out)
    }
}

fn parse_size(flag: &str, v: &str) -> Result<u64> {
    crate::container::parse_size(v)
        .ok_or_else(|| anyhow!("invalid {flag}: tmpfs size {v:?} is not a size (64k, 64m, 1g)"))
}

fn parse_mode(flag: &str, v: &str) -> Result<u32> {
    u32::from_str_radix(v, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| anyhow!("invalid {flag}: tmpfs mode {v:?} is not an octal mode"))
}

/// `-v`: `SRC:DST[:OPTS]` or `DST`.
pub fn parse_volume(spec: &str) -> Result<MountConfig> {
    let flag = format!("-v {spec:?}");
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [dst] => ("", *dst, ""),
        [src, dst] => (*src, *dst, ""),
        [src, dst, opts] => (*src, *dst, *opts),
        _ => bail!("invalid {flag}: expected [SOURCE:]CONTAINER_PATH[:OPTIONS]"),
    };
    if target.is_empty() {
        bail!("invalid {flag}: empty container path");
    }
    if parts.len() > 1 && source.is_empty() {
        bail!("invalid {flag}: empty source");
    }
    let mut m = if source.is_empty() {
        MountConfig::new(MountKind::Volume, "", target)
    } else if source.starts_with('/') {
        let mut m = MountConfig::new(MountKind::Bind, source, target);
        m.create_source = true;
        m
    } else if source.starts_with('.') || source.contains('/') || source.starts_with('~') {
        bail!("invalid {flag}: host path {source:?} is relative: give an absolute path");
    } else {
        MountConfig::new(MountKind::Volume, source, target)
    };
    m.anonymous = source.is_empty();
    let (mut ro, mut rw) = (false, false);
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => ro = true,
            "rw" => rw = true,
            "nocopy" if m.kind == MountKind::Volume => m.no_copy = true,
            p if Propagation::parse(p).is_some() && m.kind == MountKind::Bind => {
                m.propagation = Propagation::parse(p)
            }
            _ => bail!("invalid {flag}: unknown option {opt:?} (ro, rw, nocopy, or a propagation for a bind)"),
        }
    }
    if ro && rw {
        bail!("invalid {flag}: ro and rw both given");
    }
    m.readonly = ro;
    Ok(m)
}

fn boolean(flag: &str, key: &str, v: Option<&str>) -> Result<bool> {
    match v {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => bail!("invalid {flag}: {key}={v:?} is not true or false"),
    }
}

/// `--mount`: comma-separated `key=value` (Docker's keys).
pub fn parse_mount(spec: &str) -> Result<MountConfig> {
    let flag = format!("--mount {spec:?}");
    let mut kind = None;
    let (mut source, mut target) = (None::<String>, None::<String>);
    let mut m = MountConfig::new(MountKind::Volume, "", "");
    let (mut ro, mut rw) = (false, false);
    let mut tmpfs_only = Vec::new();
    let mut bind_only = Vec::new();
    let mut volume_only = Vec::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (part, None),
        };
        let need = |v: Option<&str>| {
            v.filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| anyhow!("invalid {flag}: {key} needs a value"))
        };
        match key {
            "type" => {
                kind = Some(match value {
                    Some("bind") => MountKind::Bind,
                    Some("volume") => MountKind::Volume,
                    Some("tmpfs") => MountKind::Tmpfs,
                    other => bail!(
                        "invalid {flag}: type {:?} is not bind, volume or tmpfs",
                        other.unwrap_or_default()
                    ),
                })
            }
            "source" | "src" => source = Some(need(value)?),
            "target" | "dst" | "destination" => target = Some(need(value)?),
            "readonly" | "ro" => ro = boolean(&flag, key, value)?,
            "rw" => rw = boolean(&flag, key, value)?,
            "bind-propagation" => {
                let v = need(value)?;
                m.propagation = Some(Propagation::parse(&v).ok_or_else(|| {
                    anyhow!("invalid {flag}: bind-propagation {v:?} is not one of rprivate, private, rslave, slave, rshared, shared")
                })?);
                bind_only.push(key);
            }
            "tmpfs-size" => {
                m.tmpfs_size = Some(parse_size(&flag, &need(value)?)?);
                tmpfs_only.push(key);
            }
            "tmpfs-mode" => {
                m.tmpfs_mode = Some(parse_mode(&flag, &need(value)?)?);
                tmpfs_only.push(key);
            }
            "volume-opt" => {
                let v = need(value)?;
                // `volume-opt=type=nfs`: the rest after the first `=` is the option.
                let (k, val) = part["volume-opt=".len()..]
                    .split_once('=')
                    .ok_or_else(|| anyhow!("invalid {flag}: volume-opt {v:?} is not KEY=VALUE"))?;
                m.volume_opts.insert(k.to_string(), val.to_string());
                volume_only.push(key);
            }
            "volume-nocopy" => {
                m.no_copy = boolean(&flag, key, value)?;
                volume_only.push(key);
            }
            _ => bail!("invalid {flag}: unknown key {key:?}"),
        }
    }
    if ro && rw {
        bail!("invalid {flag}: readonly and rw both given");
    }
    let kind = kind.unwrap_or(MountKind::Volume);
    let misplaced = match kind {
        MountKind::Bind => tmpfs_only.iter().chain(&volume_only).next(),
        MountKind::Volume => tmpfs_only.iter().chain(&bind_only).next(),
        MountKind::Tmpfs => bind_only.iter().chain(&volume_only).next(),
    };
    if let Some(key) = misplaced {
        bail!(
            "invalid {flag}: {key} does not apply to a {} mount",
            kind.as_str()
        );
    }
    let target = target.ok_or_else(|| anyhow!("invalid {flag}: no target"))?;
    let source = source.unwrap_or_default();
    match kind {
        MountKind::Bind if source.is_empty() => bail!("invalid {flag}: a bind needs a source"),
        MountKind::Bind if !source.starts_with('/') => {
            bail!("invalid {flag}: host path {source:?} is relative: give an absolute path")
        }
        MountKind::Tmpfs if !source.is_empty() => {
            bail!("invalid {flag}: a tmpfs mount takes no source")
        }
        _ => {}
    }
    m.kind = kind;
    m.anonymous = kind == MountKind::Volume && source.is_empty();
    m.source = source;
    m.target = target;
    m.readonly = ro;
    Ok(m)
}

/// `--tmpfs PATH[:size=…,mode=…,exec,ro]`.
pub fn parse_tmpfs(spec: &str) -> Result<MountConfig> {
    let flag = format!("--tmpfs {spec:?}");
    let (target, opts) = spec.split_once(':').unwrap_or((spec, ""));
    if target.is_empty() {
        bail!("invalid {flag}: empty container path");
    }
    let mut m = MountConfig::new(MountKind::Tmpfs, "", target);
    let (mut ro, mut rw) = (false, false);
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("size", v)) => m.tmpfs_size = Some(parse_size(&flag, v)?),
            Some(("mode", v)) => m.tmpfs_mode = Some(parse_mode(&flag, v)?),
            None if opt == "exec" => m.tmpfs_exec = true,
            None if opt == "noexec" => m.tmpfs_exec = false,
            None if opt == "ro" => ro = true,
            None if opt == "rw" => rw = true,
            // What Docker's --tmpfs always is here.
            None if matches!(opt, "nosuid" | "nodev") => {}
            _ => {
                bail!("invalid {flag}: unknown option {opt:?} (size=, mode=, exec, noexec, ro, rw)")
            }
        }
    }
    if ro && rw {
        bail!("invalid {flag}: ro and rw both given");
    }
    m.readonly = ro;
    Ok(m)
}

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (a random name when none is given).
    Create {
        /// Only "local".
        #[arg(short = 'd', long)]
        driver: Option<String>,
        /// Label KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Driver option KEY=VALUE (repeatable; the local driver takes type=, device=, o=).
        #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
        options: Vec<String>,
        name: Option<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show volumes as JSON: record, mountpoint, containers using them.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while a container, even a stopped one, uses one).
    #[command(alias = "remove")]
    Rm {
        /// Remove the containers using them first.
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove anonymous volumes no container uses (-a: every unused volume).
    Prune {
        #[arg(short = 'a', long)]
        all: bool,
    },
}

fn volumes_of(json: &str) -> Result<Vec<serde_json::Value>> {
    serde_json::from_str(json).map_err(|e| anyhow!("unexpected answer from the apiserver: {e}"))
}

pub async fn run(client: &ApiClient, command: VolumeCommand) -> Result<i32> {
    match command {
        VolumeCommand::Create {
            driver,
            labels,
            options,
            name,
        } => {
            let kv = |what: &str, list: &[String]| {
                list.iter()
                    .map(|l| crate::network::key_value(what, l))
                    .collect::<Result<_>>()
            };
            let req = VolumeCreate {
                name,
                driver,
                labels: kv("label", &labels)?,
                options: kv("option", &options)?,
            };
            if let ApiResponse::Json(j) = call(client, ApiRequest::VolumeCreate(req)).await? {
                for v in volumes_of(&j)? {
                    println!("{}", v["name"].as_str().unwrap_or_default());
                }
            }
        }
        VolumeCommand::Ls { quiet, format } => {
            let ApiResponse::Json(j) = call(client, ApiRequest::VolumeList).await? else {
                bail!("unexpected answer from the apiserver");
            };
            let list = volumes_of(&j)?;
            if quiet {
                for v in &list {
                    println!("{}", v["name"].as_str().unwrap_or_default());
                }
            } else if format == Format::Json {
                output::json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|v| {
                        vec![
                            v["driver"].as_str().unwrap_or_default().to_string(),
                            v["name"].as_str().unwrap_or_default().to_string(),
                            v["containers"]
                                .as_array()
                                .map_or(0, |a| a.len())
                                .to_string(),
                        ]
                    })
                    .collect();
                output::table(&["DRIVER", "VOLUME NAME", "CONTAINERS"], &rows)?;
            }
        }
        VolumeCommand::Inspect { names } => {
            if let ApiResponse::Json(j) = call(client, ApiRequest::VolumeInspect(names)).await? {
                println!("{j}");
            }
        }
        VolumeCommand::Rm { force, names } => {
            if let ApiResponse::Names(names) =
                call(client, ApiRequest::VolumeRemove { names, force }).await?
            {
                for n in names {
                    println!("{n}");
                }
            }
        }
        VolumeCommand::Prune { all } => {
            if let ApiResponse::Json(j) = call(client, ApiRequest::VolumePrune { all }).await? {
                let v: serde_json::Value = serde_json::from_str(&j)?;
                for n in v["removed"].as_array().into_iter().flatten() {
                    println!("{}", n.as_str().unwrap_or_default());
                }
                println!("Total reclaimed space: {} bytes", v["reclaimed"]);
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flags() {
        let m = parse_volume("/srv/x:/data:ro").unwrap();
        assert_eq!(
            (m.kind, m.readonly, m.create_source),
            (MountKind::Bind, true, true)
        );
        let m = parse_volume("cache:/cache").unwrap();
        assert_eq!((m.kind, m.source.as_str()), (MountKind::Volume, "cache"));
        let m = parse_volume("/anon").unwrap();
        assert!(m.anonymous && m.source.is_empty());
        let m = parse_volume("/h:/c:rslave").unwrap();
        assert_eq!(m.propagation, Some(Propagation::Rslave));
        for bad in [
            "rel/x:/d",
            "./x:/d",
            "/a:/b:ro,rw",
            "/a:/b:bogus",
            ":/d",
            "a:b:c:d",
            "v:/d:rslave",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mount_flags() {
        let m = parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=700").unwrap();
        assert_eq!((m.tmpfs_size, m.tmpfs_mode), (Some(1 << 20), Some(0o700)));
        let m =
            parse_mount("type=bind,src=/a,target=/b,readonly,bind-propagation=rshared").unwrap();
        assert!(m.readonly && !m.create_source);
        let m = parse_mount("type=volume,source=v,target=/b,volume-opt=type=nfs").unwrap();
        assert_eq!(m.volume_opts.get("type").map(String::as_str), Some("nfs"));
        for bad in [
            "type=tmpfs,dst=/t,tmpfs-size=abc",
            "type=bind,src=/a,dst=/b,bogus=1",
            "type=bind,dst=/b",
            "type=bind,src=rel,dst=/b",
            "type=volume,src=v,dst=/b,tmpfs-size=1m",
            "type=bind,src=/a,dst=/b,ro,rw",
            "type=disk,dst=/b",
            "src=v",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tmpfs_flags() {
        let m = parse_tmpfs("/run:size=64m,mode=1770,exec").unwrap();
        assert_eq!(
            (m.tmpfs_size, m.tmpfs_mode, m.tmpfs_exec),
            (Some(64 << 20), Some(0o1770), true)
        );
        assert!(parse_tmpfs("/run:size=abc").is_err());
        assert!(parse_tmpfs(":size=1m").is_err());
    }
}
