//! The life of a helper process around its service: bootstrap sockets, pid file, exit.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::sync::Notify;

use crate::bootstrap::{serve_bootstrap, Vendor};
use crate::helper::{peer_name, HelperKind};
use crate::rpc::Service;

/// Environment variable naming the inherited bootstrap descriptor.
pub const BOOTSTRAP_FD_ENV: &str = "CONTAINER_BOOTSTRAP_FD";

#[derive(Debug, thiserror::Error)]
pub enum HelperServerError {
    #[error("{}: {step}: {source}", path.display())]
    Io {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{peer} is already running (its bootstrap socket {} answers)", path.display())]
    AlreadyRunning { peer: String, path: PathBuf },
    #[error("{BOOTSTRAP_FD_ENV}={value:?} is not a descriptor number")]
    BadFd { value: String },
}

/// Takes the bootstrap descriptor the spawner passed, if any, and clears the variable so
/// a workload started later does not inherit a stale number.
pub fn take_inherited_fd() -> Result<Option<OwnedFd>, HelperServerError> {
    let Ok(value) = std::env::var(BOOTSTRAP_FD_ENV) else {
        return Ok(None);
    };
    std::env::remove_var(BOOTSTRAP_FD_ENV);
    let fd: i32 = value.parse().map_err(|_| HelperServerError::BadFd {
        value: value.clone(),
    })?;
    if fd < 3 {
        return Err(HelperServerError::BadFd { value });
    }
    // Keep it out of every child we spawn.
    let _ = nix::fcntl::fcntl(
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    // SAFETY: the spawner passed this descriptor to us and nothing else owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Where a helper's bootstrap socket and pid file go (the store's `Paths` names them).
#[derive(Debug, Clone)]
pub struct HelperFiles {
    pub socket: PathBuf,
    pub pid: PathBuf,
}

/// A running helper's bootstrap endpoints. Dropping it removes the socket and pid files.
pub struct HelperServer {
    socket: PathBuf,
    pid_file: PathBuf,
}

impl HelperServer {
    /// Binds `files.socket` (root-only, in a root-only directory) and writes
    /// `files.pid`, then serves the bootstrap protocol on it and on `inherited` in the
    /// background.
    pub async fn start<S: Service>(
        files: &HelperFiles,
        kind: HelperKind,
        id: &str,
        inherited: Option<OwnedFd>,
        service: Arc<S>,
    ) -> Result<HelperServer, HelperServerError> {
        let io = |path: &Path, step: &'static str| {
            let path = path.to_path_buf();
            move |source| HelperServerError::Io { path, step, source }
        };
        let (socket, pid_file) = (files.socket.clone(), files.pid.clone());
        if let Some(dir) = socket.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir, "create helper directory"))?;
        }
        let peer = peer_name(kind, id);
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Err(HelperServerError::AlreadyRunning { peer, path: socket });
        }
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).map_err(io(&socket, "bind bootstrap socket"))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(io(&socket, "chmod bootstrap socket"))?;
        std::fs::write(&pid_file, format!("{}\n", std::process::id()))
            .map_err(io(&pid_file, "write pid file"))?;
        let vendor = Vendor::new(service, peer);
        tokio::spawn(serve_bootstrap(inherited, listener, vendor));
        Ok(HelperServer { socket, pid_file })
    }
}

impl Drop for HelperServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// Resolves on SIGTERM, SIGINT or when `shutdown` is notified (a `Shutdown` call).
/// SIGHUP is ignored: a helper outlives the terminal and the apiserver that started it.
pub async fn until_shutdown(shutdown: Arc<Notify>) {
    use tokio::signal::unix::{signal, SignalKind};
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGHUP,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    tokio::select! {
        _ = shutdown.notified() => {}
        _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
        _ = async { match int.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// Runs a helper process's service until it is told to stop: bootstrap sockets up, pid
/// file written, files removed on the way out.
pub async fn run_helper<S: Service>(
    files: &HelperFiles,
    kind: HelperKind,
    id: &str,
    service: Arc<S>,
    shutdown: Arc<Notify>,
) -> Result<(), HelperServerError> {
    let inherited = take_inherited_fd()?;
    let server = HelperServer::start(files, kind, id, inherited, service).await?;
    tracing::info!("{} ready (pid {})", peer_name(kind, id), std::process::id());
    until_shutdown(shutdown).await;
    drop(server);
    Ok(())
}

/// What the apiserver passes to every helper on its command line.
#[derive(Debug, Clone)]
pub struct HelperArgs {
    pub root: PathBuf,
    pub run_dir: PathBuf,
    pub id: String,
}

impl HelperArgs {
    /// Parses `--root R --run-dir D --id ID`. Helpers are started by the apiserver only,
    /// so a bad command line is a bug worth a plain message, not a help screen.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<HelperArgs, String> {
        let (mut root, mut run_dir, mut id) = (None, None, None);
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let slot = match flag.as_str() {
                "--root" => &mut root,
                "--run-dir" => &mut run_dir,
                "--id" => &mut id,
                "--version" => return Err(format!("version {}", env!("CARGO_PKG_VERSION"))),
                other => return Err(format!("unknown argument {other:?}")),
            };
            *slot = Some(it.next().ok_or_else(|| format!("{flag} needs a value"))?);
        }
        Ok(HelperArgs {
            root: PathBuf::from(root.ok_or("--root is required")?),
            run_dir: PathBuf::from(run_dir.ok_or("--run-dir is required")?),
            id: id.ok_or("--id is required")?,
        })
    }
}
