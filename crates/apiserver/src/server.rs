//! The apiserver's socket: credentials are checked before a single byte is decoded.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use container_protocol::api::SERVICE;
use container_protocol::frame::{self, ServerFrame};
use container_protocol::rpc::{
    refuse_now, serve, Admission, Admitted, Service, ADMISSION_WAIT, BUSY,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::error::ApiError;

/// Who may talk to the apiserver besides root.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    /// Group that owns the socket (mode 0660 then); none: 0600, root only.
    pub socket_group: Option<u32>,
}

impl Access {
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        uid == 0 || self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

/// Binds the socket with its final mode from the start (umask), so there is no window
/// in which anyone else could connect.
pub fn bind(path: &Path, access: &Access) -> Result<UnixListener, ApiError> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ApiError::Conflict(format!(
            "another apiserver answers on {}",
            path.display()
        )));
    }
    let _ = std::fs::remove_file(path);
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener.map_err(ApiError::io(format!("bind {}", path.display())))?;
    if let Some(gid) = access.socket_group {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(|e| ApiError::io(format!("chown {}", path.display()))(e.into()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(ApiError::io(format!("chmod {}", path.display())))?;
    }
    Ok(listener)
}

/// What the socket grants the connections it accepts.
#[derive(Clone, Default)]
pub struct Limits {
    /// Places and time for connections that have not said hello yet.
    pub admission: Admission,
    /// How many connections may be open at once (each holds a descriptor); `None`:
    /// unbounded. See [`connection_budget`].
    pub max_connections: Option<usize>,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns it. A daemon that keeps
/// the 1024 it inherited from a shell fails its work with "Too many open files" at a
/// thousand idle clients; the hard limit is what the administrator granted.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
    }
    Ok(hard)
}

/// Descriptors kept back from connections for the work itself: helpers' endpoints,
/// spawns, log files, netlink sockets, and the accept that refuses one more client.
pub fn descriptor_reserve(limit: u64) -> u64 {
    (limit / 4).max(256)
}

/// How many client connections fit in `limit` descriptors with the reserve kept free.
pub fn connection_budget(limit: u64) -> usize {
    limit.saturating_sub(descriptor_reserve(limit)) as usize
}

/// What a full apiserver tells a client it turns away.
pub const TOO_MANY: &str =
    "too many connections to the apiserver; descriptors are kept for the work; try again";

pub async fn accept_loop<S: Service>(
    listener: UnixListener,
    access: Access,
    limits: Limits,
    service: Arc<S>,
) {
    let connections = Arc::new(tokio::sync::Semaphore::new(
        limits
            .max_connections
            .unwrap_or(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::error!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let cred = match stream.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("peer credentials: {e}; closing");
                continue;
            }
        };
        let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid().unwrap_or(0));
        // Refuse before the reserve is touched: the accept above used one of its
        // descriptors, and gives it back now.
        // As for places before the hello (`Admission::admit`): a moment for the slots of
        // connections already gone to come back.
        let slot = match connections.clone().try_acquire_owned() {
            Ok(slot) => Ok(slot),
            Err(_) => tokio::time::timeout(ADMISSION_WAIT, connections.clone().acquire_owned())
                .await
                .map_err(|_| ())
                .and_then(|r| r.map_err(|_| ())),
        };
        let Ok(slot) = slot else {
            tracing::warn!("{TOO_MANY}: refusing client pid {pid} uid {uid}");
            refuse_now(&stream, TOO_MANY);
            continue;
        };
        // Refused clients count as waiting too: their refusal takes a moment to read.
        let Some(admitted) = limits.admission.admit().await else {
            tracing::warn!("{BUSY}: refusing client pid {pid} uid {uid}");
            refuse_now(&stream, BUSY);
            continue;
        };
        if !access.allows(uid, gid) {
            tracing::warn!("refused client pid {pid} uid {uid} gid {gid}");
            tokio::spawn(async move {
                refuse(stream, uid, gid, admitted).await;
                drop(slot);
            });
            continue;
        }
        let peer = format!("client pid {pid} uid {uid}");
        let service = service.clone();
        tokio::spawn(async move {
            serve(stream, service, peer, admitted).await;
            drop(slot);
        });
    }
}

/// Sends the refusal without reading the client's request, then lets the client read it
/// before the socket goes (closing with unread input would reset the connection).
async fn refuse(mut stream: UnixStream, uid: u32, gid: u32, admitted: Admitted) {
    let frame: ServerFrame<()> = ServerFrame::Refused {
        message: format!("permission denied: uid {uid} gid {gid} may not use the {SERVICE}"),
    };
    if let Ok(bytes) = frame::encode(&frame) {
        let _ = stream.write_all(&bytes).await;
    }
    let _ = nix::sys::socket::shutdown(
        std::os::fd::AsRawFd::as_raw_fd(&stream),
        nix::sys::socket::Shutdown::Write,
    );
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(admitted.deadline().min(Duration::from_secs(1)), async {
        let mut total = 0usize;
        while let Ok(n) = stream.read(&mut sink).await {
            total += n;
            if n == 0 || total > 64 * 1024 {
                break;
            }
        }
    })
    .await;
}
