//! Named volumes (issue 12): `<root>/volumes/<name>/volume.json` and `_data/`, and the
//! checks of a container's mounts.
//!
//! * A volume is made whole under `volumes/.tmp/` (its data directory, its record
//!   written atomically) and renamed into place, so a volume directory that exists is
//!   complete; whatever a SIGKILL leaves under `.tmp/` is removed when the store opens
//!   (and reported by `system check`). Names start with a letter or digit, so `.tmp`
//!   is never one.
//! * A volume is in use while a container whose record names it exists, running or
//!   not: the records are the truth, read under [`Volumes::lock`], which a container's
//!   create holds from the volumes it makes until its record is written, so no `rm`
//!   or `prune` takes a volume from under it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use container_protocol::api::{Finding, FindingKind};
use container_protocol::fault;
use container_protocol::volume::{
    MountKind, Propagation, SandboxMount, SandboxMountKind, VolumeCreate, VolumeRecord,
};
use container_store::container::ContainerConfig;
use container_store::{read_json, unix_now, write_json, Paths};

use crate::error::{bad, ApiError};
use crate::records::Records;

const TMP: &str = ".tmp";
const RECORD: &str = "volume.json";
const DATA: &str = "_data";

/// Docker's rule for volume names, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128.
pub fn check_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 128 {
        Some("it is longer than 128 characters")
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("it must start with a letter or a digit")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        Some("only a-z, A-Z, 0-9, '_', '.' and '-' are allowed")
    } else if name.contains("..") {
        Some("it contains '..'")
    } else {
        None
    };
    match why {
        Some(why) => Err(format!("invalid volume name {name:?}: {why}")),
        None => Ok(()),
    }
}

fn random_name() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::io("random volume name")(e.into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A container path: absolute, clean, not `/` and not in the kernel's filesystems.
fn check_target(target: &str) -> Result<String, String> {
    if target.is_empty() {
        return Err("empty container path".into());
    }
    if !target.starts_with('/') {
        return Err(format!(
            "container path {target:?} is not absolute (it must start with /)"
        ));
    }
    if target.contains('\0') {
        return Err(format!("container path {target:?} holds a NUL byte"));
    }
    let mut clean = PathBuf::from("/");
    for c in Path::new(target).components() {
        match c {
            Component::Normal(n) => clean.push(n),
            Component::ParentDir => return Err(format!("container path {target:?} contains '..'")),
            _ => {}
        }
    }
    let clean = clean.display().to_string();
    if clean == "/" {
        return Err(format!(
            "container path {target:?} is the root: mount a root filesystem with --rootfs or an image"
        ));
    }
    for kernel in ["/proc", "/sys"] {
        if clean == kernel || clean.starts_with(&format!("{kernel}/")) {
            return Err(format!(
                "container path {target:?} is inside {kernel}, the kernel's filesystem"
            ));
        }
    }
    Ok(clean)
}

/// Checks a container's mounts whole and fills in what they leave to the runtime
/// (anonymous volumes' names, clean targets); changes nothing on disk.
pub fn check_mounts(config: &mut ContainerConfig) -> Result<(), ApiError> {
    let id = config.id.clone();
    let bad = |e: String| bad(format!("container {id}: {e}"));
    if !config.mounts.is_empty() && config.rootfs.is_none() && config.image.is_none() {
        return Err(bad(
            "mounts need a root filesystem (--rootfs or an image): with --host-rootfs the host's own paths are there already".into(),
        ));
    }
    let mut targets = BTreeSet::new();
    for m in &mut config.mounts {
        let what = format!("{} mount on {:?}", m.kind.as_str(), m.target);
        m.target = check_target(&m.target).map_err(|e| bad(format!("{what}: {e}")))?;
        if !targets.insert(m.target.clone()) {
            return Err(bad(format!("two mounts on {}", m.target)));
        }
        match m.kind {
            MountKind::Bind => {
                if !m.source.starts_with('/') {
                    return Err(bad(format!(
                        "{what}: host path {:?} is not absolute",
                        m.source
                    )));
                }
                if !m.create_source && std::fs::symlink_metadata(&m.source).is_err() {
                    return Err(bad(format!(
                        "{what}: bind source path {} does not exist",
                        m.source
                    )));
                }
            }
            MountKind::Volume => {
                if m.source.is_empty() {
                    m.source = random_name()?;
                    m.anonymous = true;
                }
                check_name(&m.source).map_err(|e| bad(format!("{what}: {e}")))?;
                crate::volume_opts::parse(&m.source, &m.volume_opts)
                    .map_err(|e| bad(format!("{what}: {e}")))?;
            }
            MountKind::Tmpfs => {
                if !m.source.is_empty() {
                    return Err(bad(format!("{what}: a tmpfs mount takes no source")));
                }
                if m.tmpfs_mode.is_some_and(|mode| mode > 0o7777) {
                    return Err(bad(format!("{what}: tmpfs mode is not an octal mode")));
                }
            }
        }
        if m.kind != MountKind::Bind && m.propagation.is_some() {
            return Err(bad(format!("{what}: bind-propagation is for bind mounts")));
        }
        if m.kind != MountKind::Tmpfs
            && (m.tmpfs_size.is_some() || m.tmpfs_mode.is_some() || m.tmpfs_exec)
        {
            return Err(bad(format!("{what}: tmpfs options are for tmpfs mounts")));
        }
    }
    Ok(())
}

/// The mounts as the sandbox makes them, parents before children (Docker sorts them
/// the same way), for a container whose volumes exist.
pub fn sandbox_mounts(
    volumes: &Volumes,
    config: &ContainerConfig,
) -> Result<Vec<SandboxMount>, ApiError> {
    let id = &config.id;
    let mut out = Vec::new();
    for m in &config.mounts {
        let kind = match m.kind {
            MountKind::Bind => {
                if m.create_source && std::fs::symlink_metadata(&m.source).is_err() {
                    // Docker's `-v` makes a missing host directory.
                    std::fs::create_dir_all(&m.source).map_err(ApiError::io(format!(
                        "container {id}: create host directory {}",
                        m.source
                    )))?;
                }
                if std::fs::metadata(&m.source).is_err() {
                    return Err(ApiError::NotFoundMessage(format!(
                        "container {id}: bind source path {} does not exist",
                        m.source
                    )));
                }
                SandboxMountKind::Bind {
                    source: m.source.clone(),
                    copy_up: false,
                }
            }
            MountKind::Volume => {
                let data = volumes.data_dir(&m.source);
                if !data.is_dir() {
                    return Err(ApiError::NotFoundMessage(format!(
                        "container {id}: volume {} is gone",
                        m.source
                    )));
                }
                volumes
                    .local_mount(&m.source)?
                    .sandbox_kind(&data.display().to_string(), !m.no_copy)
            }
            MountKind::Tmpfs => {
                let mut options = format!("mode={:o}", m.tmpfs_mode.unwrap_or(0o1777));
                if let Some(size) = m.tmpfs_size {
                    options.push_str(&format!(",size={size}"));
                }
                SandboxMountKind::Tmpfs {
                    options,
                    exec: m.tmpfs_exec,
                }
            }
        };
        out.push(SandboxMount {
            kind,
            target: m.target.clone(),
            readonly: m.readonly,
            propagation: m.propagation.unwrap_or(Propagation::Rprivate),
        });
    }
    out.sort_by_key(|m| Path::new(&m.target).components().count());
    Ok(out)
}

/// Under `--userns=auto` every mount of the container is idmapped (its root, binds,
/// volumes, an image's layers and upper directory): each source is tried here with the
/// sandbox's own calls, on a clone dropped at once, so a filesystem the kernel cannot
/// idmap is refused by name before anything exists. `image_dirs`: an image's layer
/// directory and where its upper directory will be.
pub fn check_idmappable(
    volumes: &Volumes,
    config: &ContainerConfig,
    image_dirs: &[PathBuf],
) -> Result<(), ApiError> {
    use container_protocol::resources::UsernsMode;
    use container_sandbox_helper::idmap::IdmapError;
    if config.userns != Some(UsernsMode::Auto) {
        return Ok(());
    }
    let id = &config.id;
    let mut sources: Vec<(String, PathBuf)> = Vec::new();
    if let Some(r) = &config.rootfs {
        sources.push(("rootfs".into(), r.into()));
    }
    for d in image_dirs {
        sources.push(("image".into(), d.clone()));
    }
    for m in &config.mounts {
        match m.kind {
            MountKind::Bind => {
                sources.push((
                    format!("bind mount on {}", m.target),
                    m.source.clone().into(),
                ));
            }
            MountKind::Volume => {
                let what = format!("volume {} on {}", m.source, m.target);
                let local = match volumes.record(&m.source) {
                    Ok(r) => crate::volume_opts::parse(&m.source, &r.options).map_err(bad)?,
                    Err(_) => crate::volume_opts::parse(&m.source, &m.volume_opts).map_err(bad)?,
                };
                match local {
                    crate::volume_opts::LocalMount::Dir => sources.push((what, volumes.dir.clone())),
                    crate::volume_opts::LocalMount::Bind { source } => {
                        sources.push((what, source.into()))
                    }
                    crate::volume_opts::LocalMount::Filesystem { fstype, .. } if fstype != "tmpfs" => {
                        return Err(bad(format!(
                            "container {id}: {what}: a volume of type {fstype} is not idmapped under --userns=auto yet"
                        )))
                    }
                    crate::volume_opts::LocalMount::Filesystem { .. } => {}
                }
            }
            MountKind::Tmpfs => {}
        }
    }
    for (what, mut path) in sources {
        // A directory still to be made (a `-v` source, the first container's
        // directory) is made on the closest one that exists.
        while std::fs::symlink_metadata(&path).is_err() && path.pop() {}
        container_sandbox_helper::idmap::check(&path).map_err(|e| match e {
            IdmapError::Unsupported { .. } => bad(format!("container {id}: {what}: {e}")),
            _ => ApiError::Internal(format!("container {id}: {what}: {e}")),
        })?;
    }
    Ok(())
}

pub struct Volumes {
    dir: PathBuf,
    records: Arc<Records>,
    /// Held by a container's create from the volumes it makes to its record, and by
    /// `rm` and `prune` while they decide and remove.
    pub lock: tokio::sync::Mutex<()>,
}

impl Volumes {
    /// Opens the store, removing what an interrupted create left under `.tmp/`.
    pub fn open(paths: &Paths, records: Arc<Records>) -> Result<Arc<Volumes>, ApiError> {
        let dir = paths.root.join("volumes");
        let tmp = dir.join(TMP);
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&tmp)
            .map_err(ApiError::io(format!("create {}", tmp.display())))?;
        for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            tracing::info!(
                "volumes: removing {} left by an interrupted create",
                e.path().display()
            );
            let _ = std::fs::remove_dir_all(e.path());
        }
        Ok(Arc::new(Volumes {
            dir,
            records,
            lock: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join(DATA)
    }

    /// What the volume's options make of it (checked when it was made).
    pub fn local_mount(&self, name: &str) -> Result<crate::volume_opts::LocalMount, ApiError> {
        let record = self.record(name)?;
        crate::volume_opts::parse(name, &record.options).map_err(bad)
    }

    fn record(&self, name: &str) -> Result<VolumeRecord, ApiError> {
        check_name(name).map_err(bad)?;
        let path = self.dir.join(name).join(RECORD);
        if !path.exists() {
            return Err(ApiError::NotFound {
                kind: "volume",
                name: name.to_string(),
            });
        }
        Ok(read_json(&path)?)
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n != TMP && self.dir.join(n).join(RECORD).exists())
            .collect();
        names.sort();
        names
    }

    /// Volume → the containers whose records name it.
    pub fn users(&self) -> BTreeMap<String, Vec<String>> {
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        self.records.scan(|all| {
            for (id, rec) in all {
                for m in rec
                    .config
                    .mounts
                    .iter()
                    .filter(|m| m.kind == MountKind::Volume)
                {
                    users
                        .entry(m.source.clone())
                        .or_default()
                        .push(id.to_string());
                }
            }
        });
        users
    }

    /// Makes a volume; the caller holds [`Volumes::lock`].
    fn make(&self, req: &VolumeCreate, anonymous: bool) -> Result<VolumeRecord, ApiError> {
        let name = match &req.name {
            Some(n) => {
                check_name(n).map_err(bad)?;
                n.clone()
            }
            None => random_name()?,
        };
        if let Some(driver) = req.driver.as_deref().filter(|d| *d != "local") {
            return Err(bad(format!(
                "volume {name}: driver {driver:?} is not known (only \"local\")"
            )));
        }
        crate::volume_opts::parse(&name, &req.options).map_err(bad)?;
        let dest = self.dir.join(&name);
        if dest.exists() {
            return Err(ApiError::Conflict(format!("volume {name} already exists")));
        }
        let record = VolumeRecord {
            name: name.clone(),
            driver: "local".into(),
            created: unix_now(),
            labels: req.labels.clone(),
            options: req.options.clone(),
            anonymous,
        };
        let tmp = self
            .dir
            .join(TMP)
            .join(format!("{name}.{}", std::process::id()));
        let io = |what: &str| ApiError::io(format!("volume {name}: {what}"));
        let made = (|| {
            std::fs::create_dir_all(tmp.join(DATA)).map_err(io("create its directory"))?;
            write_json(&tmp.join(RECORD), &record)?;
            fault::point("apiserver:volume-before-rename");
            std::fs::rename(&tmp, &dest).map_err(io("rename into place"))?;
            std::fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io("fsync the volumes directory"))
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        tracing::info!("volume {name} created");
        Ok(record)
    }

    pub async fn create(&self, req: VolumeCreate) -> Result<String, ApiError> {
        let _lock = self.lock.lock().await;
        let record = self.make(&req, false)?;
        self.json(&[record])
    }

    /// The volumes a new container's mounts name and that do not exist yet, made now
    /// (the caller holds [`Volumes::lock`] until the container's record is written, or
    /// calls [`Volumes::discard`] on failure).
    pub fn ensure_for(&self, config: &ContainerConfig) -> Result<Vec<String>, ApiError> {
        let mut made = Vec::new();
        for m in config.mounts.iter().filter(|m| m.kind == MountKind::Volume) {
            if self.dir.join(&m.source).join(RECORD).exists() {
                continue;
            }
            let req = VolumeCreate {
                name: Some(m.source.clone()),
                options: m.volume_opts.clone(),
                ..VolumeCreate::default()
            };
            match self.make(&req, m.anonymous) {
                Ok(_) => made.push(m.source.clone()),
                Err(e) => {
                    self.discard(&made);
                    return Err(e.context(format!("container {}", config.id)));
                }
            }
        }
        Ok(made)
    }

    /// Removes volumes just made for a create that failed.
    pub fn discard(&self, names: &[String]) {
        for n in names {
            if let Err(e) = self.delete(n) {
                tracing::warn!("volume {n}: remove after a failed create: {e}");
            }
        }
    }

    /// Removes a volume's directory: its record first (renamed away), so a crash half
    /// way leaves no half volume listed.
    fn delete(&self, name: &str) -> Result<(), ApiError> {
        let gone = self
            .dir
            .join(TMP)
            .join(format!("rm-{name}.{}", std::process::id()));
        std::fs::rename(self.dir.join(name), &gone)
            .map_err(ApiError::io(format!("volume {name}: remove")))?;
        std::fs::remove_dir_all(&gone)
            .map_err(ApiError::io(format!("volume {name}: remove its data")))
    }

    fn json(&self, records: &[VolumeRecord]) -> Result<String, ApiError> {
        let users = self.users();
        let list: Vec<serde_json::Value> = records
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["mountpoint"] = self.data_dir(&r.name).display().to_string().into();
                v["containers"] =
                    serde_json::json!(users.get(&r.name).cloned().unwrap_or_default());
                v
            })
            .collect();
        serde_json::to_string_pretty(&list).map_err(|e| ApiError::Internal(e.to_string()))
    }

    pub fn list(&self) -> Result<String, ApiError> {
        let records: Vec<VolumeRecord> = self
            .names()
            .iter()
            .filter_map(|n| self.record(n).ok())
            .collect();
        self.json(&records)
    }

    pub fn inspect(&self, names: Vec<String>) -> Result<String, ApiError> {
        let records = names
            .iter()
            .map(|n| self.record(n))
            .collect::<Result<Vec<_>, _>>()?;
        self.json(&records)
    }

    /// The users of `names` that must go before them (`rm -f`), checking every name
    /// exists first.
    pub fn users_of(&self, names: &[String]) -> Result<Vec<String>, ApiError> {
        for n in names {
            self.record(n)?;
        }
        let users = self.users();
        let mut out: Vec<String> = names
            .iter()
            .flat_map(|n| users.get(n).cloned().unwrap_or_default())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// `volume rm`: every name checked (exists, unused) before any is removed.
    pub async fn remove(&self, names: Vec<String>) -> Result<Vec<String>, ApiError> {
        let _lock = self.lock.lock().await;
        let users = self.users();
        for n in &names {
            self.record(n)?;
            if let Some(ids) = users.get(n) {
                return Err(ApiError::Conflict(format!(
                    "volume {n} is in use by container {} (remove it first, or use volume rm -f)",
                    ids.join(", ")
                )));
            }
        }
        for n in &names {
            self.delete(n)?;
            tracing::info!("volume {n} removed");
        }
        Ok(names)
    }

    /// `volume prune`: anonymous volumes no container uses; with `all`, every one.
    pub async fn prune(&self, all: bool) -> Result<String, ApiError> {
        let _lock = self.lock.lock().await;
        let users = self.users();
        let mut removed = Vec::new();
        let mut reclaimed = 0u64;
        for n in self.names() {
            let Ok(rec) = self.record(&n) else { continue };
            if users.contains_key(&n) || !(all || rec.anonymous) {
                continue;
            }
            let size = container_image::store::disk_usage(&self.data_dir(&n));
            self.delete(&n)?;
            reclaimed += size;
            removed.push(n);
        }
        Ok(serde_json::json!({"removed": removed, "reclaimed": reclaimed}).to_string())
    }

    /// `rm -v`: a removed container's anonymous volumes, unless another container uses
    /// them too.
    pub async fn remove_anonymous(&self, config: &ContainerConfig) {
        let _lock = self.lock.lock().await;
        let users = self.users();
        for m in config
            .mounts
            .iter()
            .filter(|m| m.kind == MountKind::Volume && m.anonymous)
        {
            if users.contains_key(&m.source) {
                continue;
            }
            if let Err(e) = self.delete(&m.source) {
                tracing::warn!("container {}: remove anonymous volume: {e}", config.id);
            }
        }
    }

    /// Count and bytes, for `system df`.
    pub fn usage(&self) -> (u64, u64, u64) {
        let users = self.users();
        let names = self.names();
        let active = names.iter().filter(|n| users.contains_key(*n)).count() as u64;
        let size = names
            .iter()
            .map(|n| container_image::store::disk_usage(&self.data_dir(n)))
            .sum();
        (names.len() as u64, active, size)
    }

    /// `system check`: leftovers of interrupted creates and removals, volume
    /// directories without a record or data, containers naming a missing volume.
    pub async fn check(&self, fix: bool) -> Vec<Finding> {
        let _lock = self.lock.lock().await;
        let mut found = Vec::new();
        let finding = |object: String, detail: String, fixed: bool| Finding {
            kind: FindingKind::Volume,
            object,
            detail,
            fixed,
        };
        for e in std::fs::read_dir(self.dir.join(TMP))
            .into_iter()
            .flatten()
            .flatten()
        {
            let fixed = fix && std::fs::remove_dir_all(e.path()).is_ok();
            found.push(finding(
                e.path().display().to_string(),
                "left by an interrupted volume create or removal".into(),
                fixed,
            ));
        }
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == TMP {
                continue;
            }
            let path = e.path();
            let broken = if check_name(&name).is_err() {
                Some("not a volume name")
            } else if !path.join(RECORD).is_file() {
                Some("no volume.json")
            } else if read_json::<VolumeRecord>(&path.join(RECORD)).is_err() {
                Some("volume.json does not load")
            } else if !path.join(DATA).is_dir() {
                Some("no _data directory")
            } else {
                None
            };
            if let Some(why) = broken {
                // Never removed by --fix: the data may be someone's.
                found.push(finding(path.display().to_string(), why.into(), false));
            }
        }
        for (volume, ids) in self.users() {
            if !self.dir.join(&volume).join(RECORD).exists() {
                found.push(finding(
                    volume.clone(),
                    format!("named by container {} but missing", ids.join(", ")),
                    false,
                ));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_targets() {
        for ok in ["data", "My-vol.1", "0_x"] {
            check_name(ok).unwrap();
        }
        for no in [
            "",
            "a/b",
            "..",
            "a..b",
            ".hidden",
            "-x",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(check_name(no).is_err(), "{no:?}");
        }
        assert_eq!(check_target("/data//x/").unwrap(), "/data/x");
        for no in [
            "",
            "data",
            "/",
            "/proc",
            "/proc/sys",
            "/sys/fs",
            "/a/../b",
            "//",
        ] {
            assert!(check_target(no).is_err(), "{no:?}");
        }
        assert!(check_target("/processes").is_ok());
    }
}
