//! Images: the apiserver's handle on the store (`container-image`). Pulls, loads and
//! saves run here, in the apiserver (unpacking in the store's confined child), never in
//! the CLI; progress goes back as JSON lines over a pipe the CLI passed with its call.
//! Containers name their image and its layers in their records, which is what GC,
//! `image rm` and `check` count as in use.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use container_image::archive;
use container_image::config::{combine, Flags, RunConfig};
use container_image::progress::{JsonLines, Progress, Silent};
use container_image::registry::{self, PullOptions};
use container_image::store::gc::InUse;
use container_image::store::UnpackConfig;
use container_image::unpack::Limits;
use container_image::{Digest, ImageError, Reference, Store};
use container_protocol::api::ImagePull;
use container_protocol::container::ContainerConfig;
use container_protocol::sandbox::{OverlaySpec, UserSpec};
use container_store::container::{list_containers, load_config};
use container_store::Paths;

use crate::error::{bad, ApiError};
use crate::ops::{Holds, Ops};

/// How the store is set up (the apiserver's flags).
#[derive(Debug, Clone, Default)]
pub struct ImageOptions {
    /// `container-unpack`, found beside the helpers.
    pub unpacker: PathBuf,
    pub limits: Limits,
    /// `--insecure-registry HOST[:PORT]`: plain HTTP or unverified TLS allowed.
    pub insecure_registries: Vec<String>,
}

pub struct Images {
    store: Arc<Store>,
    paths: Paths,
    ops: Arc<Ops>,
    insecure: Vec<String>,
    /// Containers being created take it shared while they resolve their image and
    /// write their record; `image rm` and prune take it exclusively, so an image a new
    /// container is about to name is never taken from under it.
    users: tokio::sync::RwLock<()>,
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> ApiError {
        use container_protocol::ErrorKind as K;
        let msg = e.to_string();
        match e.kind() {
            K::NotFound => ApiError::NotFoundMessage(msg),
            K::Invalid => ApiError::Invalid(msg),
            K::Conflict => ApiError::Conflict(msg),
            K::Unavailable => ApiError::Unavailable(msg),
            K::Permission => ApiError::Permission(msg),
            _ => ApiError::Internal(msg),
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, ApiError> {
    serde_json::to_string(v).map_err(|e| ApiError::Internal(format!("encode: {e}")))
}

fn progress(fd: Option<OwnedFd>) -> Box<dyn Progress> {
    match fd {
        Some(fd) => Box::new(JsonLines::new(std::fs::File::from(fd))),
        None => Box::new(Silent),
    }
}

impl Images {
    pub fn new(paths: Paths, ops: Arc<Ops>, opts: ImageOptions) -> Result<Arc<Images>, ApiError> {
        let program = Some(opts.unpacker.clone());
        let store = Store::open(
            &paths.root.join("images"),
            UnpackConfig {
                program,
                limits: opts.limits,
            },
        )?;
        Ok(Arc::new(Images {
            store,
            paths,
            ops,
            insecure: opts.insecure_registries,
            users: tokio::sync::RwLock::new(()),
        }))
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub async fn pull(&self, req: ImagePull, fds: Vec<OwnedFd>) -> Result<String, ApiError> {
        let reference = Reference::parse(&req.reference)?;
        let _op = self
            .ops
            .begin(&format!("pull {reference}"), Holds::default())?;
        let platform = req
            .platform
            .as_deref()
            .map(container_image::manifest::parse_platform)
            .transpose()?;
        let credentials = match (req.username, req.password) {
            (Some(username), Some(password)) => {
                Some(container_image::auth::Credentials { username, password })
            }
            _ => None,
        };
        let opts = PullOptions {
            platform,
            insecure: req.insecure,
            insecure_registries: self.insecure.clone(),
            credentials,
        };
        let progress = progress(fds.into_iter().next());
        let record = registry::pull(&self.store, &reference, &opts, progress.as_ref())
            .await
            .map_err(|e| ApiError::from(e).context(format!("pull {}", req.reference)))?;
        tracing::info!("image {reference} pulled: {}", record.id);
        json(&record)
    }

    /// `image load`: the call's first descriptor is the archive, the second (if any)
    /// the progress pipe.
    pub async fn load(&self, directory: bool, fds: Vec<OwnedFd>) -> Result<String, ApiError> {
        let _op = self.ops.begin("image load", Holds::default())?;
        let mut fds = fds.into_iter();
        let input = fds
            .next()
            .ok_or_else(|| bad("image load: no archive descriptor came with the call"))?;
        let progress = progress(fds.next());
        let loaded = if directory {
            archive::load_dir(&self.store, input, progress.as_ref()).await
        } else {
            archive::load_tar(&self.store, std::fs::File::from(input), progress.as_ref()).await
        }
        .map_err(|e| ApiError::from(e).context("image load"))?;
        json(&loaded)
    }

    pub async fn save(&self, names: Vec<String>, fds: Vec<OwnedFd>) -> Result<(), ApiError> {
        let out = fds
            .into_iter()
            .next()
            .ok_or_else(|| bad("image save: no output descriptor came with the call"))?;
        if names.is_empty() {
            return Err(bad("image save: name at least one image"));
        }
        let mut records = Vec::new();
        for n in &names {
            let r = self.store.resolve(n)?;
            // A name given saves that name; an id saves every tag of the image.
            let tags = match Reference::parse(n) {
                Ok(r)
                    if r.digest.is_none()
                        && self.store.tags_of(&self.store.resolve(n)?.id)?.contains(&r) =>
                {
                    vec![r]
                }
                _ => self.store.tags_of(&r.id)?,
            };
            records.push((r, tags));
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            archive::save(
                &store,
                &records,
                std::io::BufWriter::with_capacity(1 << 20, std::fs::File::from(out)),
            )
        })
        .await
        .map_err(|e| ApiError::Internal(format!("image save: {e}")))??;
        Ok(())
    }

    pub fn list(&self) -> Result<String, ApiError> {
        json(&self.store.list()?)
    }

    pub fn inspect(&self, names: Vec<String>) -> Result<String, ApiError> {
        let mut out = Vec::new();
        for n in &names {
            let record = self.store.resolve(n)?;
            let config: serde_json::Value = serde_json::from_slice(
                &self
                    .store
                    .read_blob(&record.id, container_image::manifest::MAX_CONFIG)?,
            )
            .unwrap_or(serde_json::Value::Null);
            let tags: Vec<String> = self
                .store
                .tags_of(&record.id)?
                .iter()
                .map(|t| t.to_string())
                .collect();
            let mut v =
                serde_json::to_value(&record).map_err(|e| ApiError::Internal(e.to_string()))?;
            v["tags"] = serde_json::json!(tags);
            v["config"] = config;
            v["size"] = serde_json::json!(record.size());
            out.push(v);
        }
        json(&out)
    }

    pub fn tag(&self, source: &str, target: &str) -> Result<(), ApiError> {
        self.store.tag(source, target)?;
        Ok(())
    }

    /// What the containers on disk hold: image id → container ids, and layers.
    fn in_use(&self) -> (BTreeMap<Digest, Vec<String>>, InUse) {
        let mut by_image: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        let mut in_use = InUse::default();
        for id in list_containers(&self.paths) {
            let Ok(config) = load_config(&self.paths, &id) else {
                continue;
            };
            let Some(image) = config.image else { continue };
            if let Some(d) = image.id.as_deref().and_then(|d| Digest::parse(d).ok()) {
                in_use.images.insert(d.clone());
                by_image.entry(d).or_default().push(id.clone());
            }
            in_use
                .layers
                .extend(image.layers.iter().filter_map(|l| Digest::parse(l).ok()));
        }
        (by_image, in_use)
    }

    /// What containers hold, for `check`.
    pub fn held(&self) -> InUse {
        self.in_use().1
    }

    pub async fn remove(&self, names: Vec<String>, force: bool) -> Result<Vec<String>, ApiError> {
        let _op = self.ops.begin("image rm", Holds::default())?;
        let _users = self.users.write().await;
        let (by_image, _) = self.in_use();
        let mut out = Vec::new();
        let mut errors: Vec<ImageError> = Vec::new();
        for n in &names {
            match self.store.remove(n, force, &|id| {
                by_image.get(id).cloned().unwrap_or_default()
            }) {
                Ok(lines) => out.extend(lines),
                Err(e) => errors.push(e),
            }
        }
        // As Docker: every name is tried; the first failure's kind decides the exit.
        let mut errors = errors.into_iter();
        let Some(first) = errors.next() else {
            return Ok(out);
        };
        let mut message = first.to_string();
        for e in errors {
            message.push_str(&format!("; {e}"));
        }
        if !out.is_empty() {
            message.push_str(&format!(" (done: {})", out.join(", ")));
        }
        let kind_of = ApiError::from(first);
        Err(match kind_of {
            ApiError::NotFoundMessage(_) => ApiError::NotFoundMessage(message),
            ApiError::Conflict(_) => ApiError::Conflict(message),
            ApiError::Invalid(_) => ApiError::Invalid(message),
            other => ApiError::Internal(format!("{other}; {message}")),
        })
    }

    pub async fn prune(&self, all: bool) -> Result<String, ApiError> {
        let _op = self.ops.begin("image prune", Holds::default())?;
        let _users = self.users.write().await;
        let (_, in_use) = self.in_use();
        json(&self.store.prune(all, &in_use).await?)
    }

    /// `registry login`: authenticates once against the registry.
    pub async fn login(
        &self,
        registry: &str,
        username: String,
        password: String,
        insecure: bool,
    ) -> Result<(), ApiError> {
        let r = Reference::parse(&format!("{registry}/login-check")).map_err(|_| {
            bad(format!(
                "registry login: {registry:?} is not a registry host[:port]"
            ))
        })?;
        let opts = PullOptions {
            insecure,
            insecure_registries: self.insecure.clone(),
            credentials: Some(container_image::auth::Credentials { username, password }),
            ..PullOptions::default()
        };
        registry::login(&r, &opts).await?;
        Ok(())
    }

    /// Shared while a container that names an image is being created.
    pub async fn using(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.users.read().await
    }

    /// Fills in a container made from an image: the image resolved now (its id and
    /// layers recorded), and the process made from its config and the flags as Docker
    /// makes it.
    pub fn resolve_for(&self, config: &mut ContainerConfig) -> Result<(), ApiError> {
        let id = config.id.clone();
        let Some(image) = config.image.as_mut() else {
            return Ok(());
        };
        if config.rootfs.is_some() {
            return Err(bad(format!(
                "container {id}: give an image or --rootfs, not both"
            )));
        }
        let record = self.store.resolve(&image.reference).map_err(|e| match e {
            ImageError::NotFound(_) => ApiError::NotFoundMessage(format!(
                "container {id}: image {} not found (pull it with `container image pull {}`)",
                image.reference, image.reference
            )),
            e => ApiError::from(e).context(format!("container {id}")),
        })?;
        let raw = self
            .store
            .read_blob(&record.id, container_image::manifest::MAX_CONFIG)?;
        let oci: oci_spec::image::ImageConfiguration = serde_json::from_slice(&raw)
            .map_err(|e| bad(format!("image {}: config: {e}", record.id)))?;
        let run = RunConfig::from_image_config(&oci);
        config.healthcheck = container_protocol::container::HealthConfig::resolve(
            &config.health_flags,
            image_healthcheck(&raw).as_ref(),
        );
        let flags = Flags {
            command: image.command.clone(),
            entrypoint: image.entrypoint.clone(),
            env: config.process.env.clone(),
            workdir: config.process.cwd.clone(),
            user: config.process.user.as_ref().map(|u| u.to_string()),
            labels: config.labels.clone(),
        };
        let c = combine(&run, &flags)
            .map_err(|e| bad(format!("container {id}: image {}: {e}", image.reference)))?;
        config.process.args = c.args;
        config.process.env = c.env;
        config.process.cwd = c.cwd;
        if let Some(u) = c.user {
            if config.process.uid != 0 || config.process.gid != 0 {
                return Err(bad(format!(
                    "container {id}: numeric uid/gid and an image user given together"
                )));
            }
            config.process.user = Some(
                UserSpec::parse(&u).map_err(|e| bad(format!("container {id}: image User: {e}")))?,
            );
        }
        config.labels = c.labels;
        // The image's VOLUMEs: an anonymous volume each, unless a mount is there.
        let volumes = oci
            .config()
            .as_ref()
            .and_then(|c| c.volumes().clone())
            .unwrap_or_default();
        for path in volumes {
            let clean = path.trim_end_matches('/');
            if !config
                .mounts
                .iter()
                .any(|m| m.target.trim_end_matches('/') == clean)
            {
                let mut m = container_protocol::volume::MountConfig::new(
                    container_protocol::volume::MountKind::Volume,
                    "",
                    &path,
                );
                m.anonymous = true;
                config.mounts.push(m);
            }
        }
        image.id = Some(record.id.to_string());
        image.layers = record.chain_ids().iter().map(|d| d.to_string()).collect();
        image.stop_signal = c.stop_signal;
        Ok(())
    }

    /// The overlay a container of an image mounts: its layers, and its own upper and
    /// work directories under `<root>/containers/<id>/rootfs/`, made here if missing
    /// (they stay across restarts, as a Docker container's changes do).
    pub fn overlay_for(&self, config: &ContainerConfig) -> Result<Option<OverlaySpec>, ApiError> {
        let Some(image) = &config.image else {
            return Ok(None);
        };
        let id = &config.id;
        let mut lower = Vec::new();
        for l in image.layers.iter().rev() {
            let d = Digest::parse(l).map_err(|e| bad(format!("container {id}: layer {l}: {e}")))?;
            if self.store.layer(&d).is_none() {
                return Err(ApiError::Conflict(format!(
                    "container {id}: layer {} of image {} is missing from the store (`container system check`)",
                    d.short(),
                    image.reference
                )));
            }
            lower.push(format!("{}/diff", d.hex()));
        }
        if lower.is_empty() {
            return Err(bad(format!(
                "container {id}: image {} has no layers",
                image.reference
            )));
        }
        let base = self.paths.container_dir(id)?.join("rootfs");
        let dirs = [("upper", 0o755), ("work", 0o700), ("merged", 0o755)];
        for (d, mode) in dirs {
            use std::os::unix::fs::DirBuilderExt;
            let p = base.join(d);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&p)
                .map_err(ApiError::io(format!(
                    "container {id}: create {}",
                    p.display()
                )))?;
        }
        Ok(Some(OverlaySpec {
            layers_dir: self.store.dir().join("layers").display().to_string(),
            lower,
            upper: base.join("upper").display().to_string(),
            work: base.join("work").display().to_string(),
            target: base.join("merged").display().to_string(),
            volatile: config.auto_remove,
        }))
    }

    /// `system df`.
    /// `volumes`: count, in use, bytes (`volumes.rs`).
    pub fn disk_usage(&self, volumes: (u64, u64, u64)) -> Result<String, ApiError> {
        let usage = self.store.usage();
        let (by_image, _) = self.in_use();
        let images = self.store.list()?;
        let active = images
            .iter()
            .filter(|e| by_image.contains_key(&e.record.id))
            .count();
        let mut containers = 0u64;
        let mut containers_size = 0u64;
        let mut running = HashSet::new();
        for id in list_containers(&self.paths) {
            containers += 1;
            if let Ok(dir) = self.paths.container_dir(&id) {
                containers_size += container_image::store::disk_usage(&dir.join("rootfs/upper"));
            }
            running.insert(id);
        }
        json(&serde_json::json!({
            "images": {"count": usage.images, "active": active, "size": usage.blobs + usage.layers, "blobs": usage.blobs, "layers": usage.layers},
            "containers": {"count": containers, "size": containers_size},
            "volumes": {"count": volumes.0, "active": volumes.1, "size": volumes.2},
        }))
    }
}

/// An image config's `config.Healthcheck` (Docker's extension; OCI has none): `Test` is
/// `["NONE"]`, `["CMD", args…]` or `["CMD-SHELL", command]`; times are nanoseconds.
/// Anything else there is ignored, as Docker ignores it.
fn image_healthcheck(raw: &[u8]) -> Option<container_protocol::container::HealthConfig> {
    let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
    let h = v.get("config")?.get("Healthcheck")?;
    let test: Vec<String> = h
        .get("Test")?
        .as_array()?
        .iter()
        .map(|t| t.as_str().map(str::to_string))
        .collect::<Option<_>>()?;
    let command = match test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
        Some((kind, [cmd])) if kind == "CMD-SHELL" => {
            vec!["/bin/sh".into(), "-c".into(), cmd.clone()]
        }
        // NONE, or nothing usable: no check (an empty test disables it).
        _ => vec![],
    };
    let ms = |k: &str| {
        h.get(k)
            .and_then(|n| n.as_u64())
            .map(|ns| ns / 1_000_000)
            .unwrap_or(0)
    };
    Some(container_protocol::container::HealthConfig {
        test: command,
        interval_ms: ms("Interval"),
        timeout_ms: ms("Timeout"),
        start_period_ms: ms("StartPeriod"),
        retries: h
            .get("Retries")
            .and_then(|n| n.as_u64())
            .map_or(0, |r| r.min(u32::MAX as u64) as u32),
        on_failure: Default::default(),
    })
}

#[cfg(test)]
mod healthcheck_tests {
    use super::image_healthcheck;

    #[test]
    fn an_image_healthcheck_in_each_form() {
        let cfg = |t: &str| {
            format!(
                r#"{{"config":{{"Healthcheck":{{"Test":{t},"Interval":2000000000,"Retries":5}}}}}}"#
            )
        };
        let shell =
            image_healthcheck(cfg(r#"["CMD-SHELL","wget -q localhost"]"#).as_bytes()).unwrap();
        assert_eq!(shell.test, ["/bin/sh", "-c", "wget -q localhost"]);
        assert_eq!((shell.interval_ms, shell.retries), (2000, 5));
        let exec = image_healthcheck(cfg(r#"["CMD","true","x"]"#).as_bytes()).unwrap();
        assert_eq!(exec.test, ["true", "x"]);
        assert!(image_healthcheck(cfg(r#"["NONE"]"#).as_bytes())
            .unwrap()
            .test
            .is_empty());
        assert!(image_healthcheck(br#"{"config":{}}"#).is_none());
        assert!(image_healthcheck(cfg(r#"[1,2]"#).as_bytes()).is_none());
        assert!(image_healthcheck(b"not json").is_none());
    }
}
