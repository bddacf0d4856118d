//! The apiserver's service: each request goes to the part that owns it. Mutating calls
//! run to their end whatever the client does (the protocol detaches them); only waits
//! end with the client.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use container_protocol::api::{ApiRequest, ApiResponse, HelperStatus, SystemStatus};
use container_protocol::{RemoteError, Service};

use crate::containers::Execd;
use crate::daemon::{ApiServer, VERSION};
use crate::error::ApiError;

impl ApiServer {
    fn status(&self) -> SystemStatus {
        let mut helpers: Vec<HelperStatus> = self
            .networks
            .table()
            .list()
            .into_iter()
            .map(|h| h.info)
            .chain(
                self.containers
                    .sandboxes()
                    .list()
                    .into_iter()
                    .map(|h| h.info),
            )
            .map(|i| HelperStatus {
                kind: i.kind,
                id: i.id,
                pid: i.pid,
                started: i.started,
            })
            .collect();
        helpers.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
        let started = self
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        SystemStatus {
            version: VERSION.to_string(),
            pid: std::process::id(),
            started,
            uptime_secs: self.started.elapsed().unwrap_or(Duration::ZERO).as_secs(),
            root: self.paths.root.display().to_string(),
            run_dir: self.paths.run.display().to_string(),
            helpers,
            operations: self.ops.in_flight(),
        }
    }

    async fn dispatch(
        self: Arc<Self>,
        req: ApiRequest,
        fds: Vec<OwnedFd>,
    ) -> Result<(ApiResponse, Vec<OwnedFd>), ApiError> {
        let (c, n) = (&self.containers, &self.networks);
        let mut req = req;
        resolve_ids(c, &mut req)?;
        let reply = match req {
            ApiRequest::Echo(x) => ApiResponse::Echo(x),
            ApiRequest::Status => ApiResponse::Status(self.status()),
            ApiRequest::Stop { helpers } => {
                self.stop_helpers.store(helpers, Ordering::SeqCst);
                self.stop.notify_one();
                ApiResponse::Done
            }
            ApiRequest::NetworkCreate(req) => ApiResponse::Names(vec![n.create(req).await?.id]),
            ApiRequest::NetworkList => ApiResponse::Networks(n.list()),
            ApiRequest::NetworkInspect(names) => ApiResponse::Json(n.inspect(names).await?),
            ApiRequest::NetworkRemove(names) => ApiResponse::Names(n.remove(names).await?),
            ApiRequest::NetworkPrune => ApiResponse::Names(n.prune().await?),
            ApiRequest::NetworkGc(name) => ApiResponse::Collected(n.gc(name).await?),
            ApiRequest::NetworkConnect(req) => {
                c.connect(req).await?;
                ApiResponse::Done
            }
            ApiRequest::NetworkDisconnect {
                network,
                container,
                force,
            } => {
                c.disconnect(&network, &container, force).await?;
                ApiResponse::Done
            }
            ApiRequest::ContainerCreate { config } => ApiResponse::Created {
                id: c.create(*config).await?,
            },
            ApiRequest::ContainerRun { config, stdio } => {
                let (id, pid, fds) = c.run(*config, stdio, fds).await?;
                return Ok((ApiResponse::Started { id, pid }, fds));
            }
            ApiRequest::ContainerStart { id, stdio } => {
                let (pid, fds) = c.start(&id, stdio, fds).await?;
                return Ok((ApiResponse::Started { id, pid }, fds));
            }
            ApiRequest::ContainerWait { id } => ApiResponse::Exited(c.wait(&id).await?),
            ApiRequest::ContainerKill { id, signal } => {
                c.kill(&id, signal).await?;
                ApiResponse::Done
            }
            ApiRequest::ContainerStop {
                id,
                signal,
                timeout_secs,
            } => {
                c.stop(&id, signal, timeout_secs).await?;
                ApiResponse::Done
            }
            ApiRequest::ContainerRemove { id, force, volumes } => {
                c.remove(&id, force, volumes).await?;
                ApiResponse::Done
            }
            ApiRequest::ContainerList { all } => ApiResponse::Containers(c.list(all)),
            ApiRequest::ContainerInspect(ids) => ApiResponse::Json(c.inspect(ids)?),
            ApiRequest::ContainerStats(ids) => ApiResponse::Stats(c.stats(ids)?),
            ApiRequest::ContainerLogs { id } => {
                let (running, fds) = c.logs(&id)?;
                return Ok((ApiResponse::Log { running }, fds));
            }
            ApiRequest::ContainerExec { id, args, env, tty } => {
                return Ok(match c.exec(&id, args, env, tty, fds).await? {
                    Execd::Started { pid, fds } => (ApiResponse::Started { id, pid }, fds),
                    Execd::Exited(s) => (ApiResponse::Exited(s), vec![]),
                });
            }
            ApiRequest::ContainerExecWait { id, pid } => {
                ApiResponse::Exited(c.exec_wait(&id, pid).await?)
            }
            ApiRequest::ContainerExecResize {
                id,
                pid,
                rows,
                cols,
            } => {
                c.exec_resize(&id, pid, rows, cols).await?;
                ApiResponse::Done
            }
            ApiRequest::ContainerResize { id, rows, cols } => {
                c.resize(&id, rows, cols).await?;
                ApiResponse::Done
            }
            ApiRequest::Events {
                since,
                until,
                filters,
            } => {
                let out = fds.into_iter().next().ok_or_else(|| {
                    ApiError::Invalid("events: the call carries no descriptor to write to".into())
                })?;
                match self.events.stream(out, since, until, &filters).await {
                    Ok(()) => ApiResponse::Done,
                    // The reader went: nobody to answer.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ApiResponse::Done,
                    Err(e) => return Err(ApiError::io("events")(e)),
                }
            }
            ApiRequest::ImagePull(req) => {
                let reference = req.reference.clone();
                let record = self.images.pull(req, fds).await?;
                self.image_event("pull", &reference, &[]);
                ApiResponse::Json(record)
            }
            ApiRequest::ImageLoad { directory } => {
                ApiResponse::Json(self.images.load(directory, fds).await?)
            }
            ApiRequest::ImageSave(names) => {
                self.images.save(names, fds).await?;
                ApiResponse::Done
            }
            ApiRequest::ImageList => ApiResponse::Json(self.images.list()?),
            ApiRequest::ImageInspect(names) => ApiResponse::Json(self.images.inspect(names)?),
            ApiRequest::ImageTag { source, target } => {
                self.images.tag(&source, &target)?;
                self.image_event("tag", &source, &[("target", target.clone())]);
                ApiResponse::Done
            }
            ApiRequest::ImageRemove { names, force } => {
                let lines = self.images.remove(names, force).await?;
                for line in &lines {
                    if let Some(name) = line.strip_prefix("Untagged: ") {
                        self.image_event("untag", name, &[]);
                    } else if let Some(id) = line.strip_prefix("Deleted: ") {
                        self.image_event("delete", id, &[]);
                    }
                }
                ApiResponse::Names(lines)
            }
            ApiRequest::ImagePrune { all } => ApiResponse::Json(self.images.prune(all).await?),
            ApiRequest::RegistryLogin {
                registry,
                username,
                password,
                insecure,
            } => {
                self.images
                    .login(&registry, username, password, insecure)
                    .await?;
                ApiResponse::Done
            }
            ApiRequest::SystemPrune { all, volumes } => {
                ApiResponse::Json(self.prune(all, volumes).await?)
            }
            ApiRequest::DiskUsage => {
                ApiResponse::Json(self.images.disk_usage(self.volumes.usage())?)
            }
            ApiRequest::VolumeCreate(req) => ApiResponse::Json(self.volumes.create(req).await?),
            ApiRequest::VolumeList => ApiResponse::Json(self.volumes.list()?),
            ApiRequest::VolumeInspect(names) => ApiResponse::Json(self.volumes.inspect(names)?),
            ApiRequest::VolumeRemove { names, force } => {
                if force {
                    // Podman's `volume rm -f`: the containers using them go first.
                    for id in self.volumes.users_of(&names)? {
                        c.remove(&id, true, false).await?;
                    }
                }
                ApiResponse::Names(self.volumes.remove(names).await?)
            }
            ApiRequest::VolumePrune { all } => ApiResponse::Json(self.volumes.prune(all).await?),
            ApiRequest::CheckDeep { fix } => {
                let _op = if fix {
                    Some(self.ops.begin("system check --fix", Default::default())?)
                } else {
                    None
                };
                let mut found = crate::check::check(&self.paths, c, n, &self.ops, fix).await;
                found.extend(crate::check::images(&self.images, fix, true).await);
                found.extend(self.volumes.check(fix).await);
                ApiResponse::Findings(found)
            }
            ApiRequest::Check { fix } => {
                let _op = if fix {
                    Some(self.ops.begin("system check --fix", Default::default())?)
                } else {
                    None
                };
                let mut found = crate::check::check(&self.paths, c, n, &self.ops, fix).await;
                found.extend(crate::check::images(&self.images, fix, false).await);
                found.extend(self.volumes.check(fix).await);
                ApiResponse::Findings(found)
            }
        };
        Ok((reply, vec![]))
    }
}

impl Service for ApiServer {
    type Req = ApiRequest;
    type Resp = ApiResponse;
    const NAME: &'static str = container_protocol::api::SERVICE;

    async fn handle(
        self: Arc<Self>,
        req: ApiRequest,
        fds: Vec<OwnedFd>,
    ) -> Result<(ApiResponse, Vec<OwnedFd>), RemoteError> {
        self.dispatch(req, fds).await.map_err(RemoteError::from)
    }

    /// Waits are the client's own; an exec without a terminal is a wait for the
    /// process, which lives on in the container whatever the client does.
    fn ends_with_caller(req: &ApiRequest) -> bool {
        matches!(
            req,
            ApiRequest::ContainerWait { .. }
                | ApiRequest::ContainerExecWait { .. }
                | ApiRequest::ContainerExec { tty: false, .. }
                | ApiRequest::Events { .. }
        )
    }
}

/// Every verb takes a container's name (its id) or a prefix of it that names one
/// container, as Docker's do: the request is rewritten to the full id first.
fn resolve_ids(c: &crate::containers::Containers, req: &mut ApiRequest) -> Result<(), ApiError> {
    match req {
        ApiRequest::ContainerStart { id, .. }
        | ApiRequest::ContainerWait { id }
        | ApiRequest::ContainerKill { id, .. }
        | ApiRequest::ContainerStop { id, .. }
        | ApiRequest::ContainerRemove { id, .. }
        | ApiRequest::ContainerLogs { id }
        | ApiRequest::ContainerExec { id, .. }
        | ApiRequest::ContainerExecWait { id, .. }
        | ApiRequest::ContainerExecResize { id, .. }
        | ApiRequest::ContainerResize { id, .. }
        | ApiRequest::NetworkConnect(container_protocol::api::NetworkConnect {
            container: id,
            ..
        })
        | ApiRequest::NetworkDisconnect { container: id, .. } => *id = c.resolve(id)?,
        ApiRequest::ContainerInspect(ids) | ApiRequest::ContainerStats(ids) => {
            for id in ids.iter_mut() {
                *id = c.resolve(id)?;
            }
        }
        _ => {}
    }
    Ok(())
}

impl ApiServer {
    fn image_event(&self, action: &str, id: &str, attributes: &[(&str, String)]) {
        self.events.publish(
            container_protocol::api::EventType::Image,
            action,
            id,
            attributes,
        );
    }
}
