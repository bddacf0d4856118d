//! Endpoint vending (seed 002 on Linux).
//!
//! A helper's bootstrap socket answers one request, `CreateEndpoint`: the helper makes a
//! fresh `socketpair`, serves its service on one end and hands the other back with
//! `SCM_RIGHTS`. Endpoints are anonymous: when the helper dies the kernel closes its ends
//! and every endpoint it vended fails at once. There is no name to reconnect to that
//! could start a new helper; reaching a live helper after an apiserver restart goes
//! through its root-only path socket, which a dead helper no longer answers.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};

use crate::error::{ProtocolError, RemoteError};
use crate::rpc::{refuse_now, serve, Admission, Client, Service, BUSY};

#[derive(Debug, Serialize, Deserialize)]
pub enum BootstrapRequest {
    CreateEndpoint,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum BootstrapResponse {
    /// The endpoint travels as the reply's one descriptor.
    Endpoint,
}

pub type BootstrapClient = Client<BootstrapRequest, BootstrapResponse>;

/// Serves `CreateEndpoint` for a helper whose real service is `S`.
pub struct Vendor<S> {
    service: Arc<S>,
    label: String,
    /// Shared by the bootstrap connections and the endpoints vended on them.
    admission: Admission,
}

impl<S: Service> Vendor<S> {
    pub fn new(service: Arc<S>, label: impl Into<String>) -> Arc<Self> {
        Vendor::with_admission(service, label, Admission::default())
    }

    pub fn with_admission(
        service: Arc<S>,
        label: impl Into<String>,
        admission: Admission,
    ) -> Arc<Self> {
        Arc::new(Vendor {
            service,
            label: label.into(),
            admission,
        })
    }
}

impl<S: Service> Service for Vendor<S> {
    type Req = BootstrapRequest;
    type Resp = BootstrapResponse;
    const NAME: &'static str = "bootstrap";

    async fn handle(
        self: Arc<Self>,
        req: BootstrapRequest,
        _fds: Vec<OwnedFd>,
    ) -> Result<(BootstrapResponse, Vec<OwnedFd>), RemoteError> {
        let BootstrapRequest::CreateEndpoint = req;
        let admitted = self
            .admission
            .try_admit()
            .ok_or_else(|| RemoteError::new(crate::ErrorKind::Unavailable, BUSY))?;
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| RemoteError::internal(format!("create endpoint: socketpair: {e}")))?;
        let stream =
            into_tokio(ours).map_err(|e| RemoteError::internal(format!("create endpoint: {e}")))?;
        tokio::spawn(serve(
            stream,
            self.service.clone(),
            self.label.clone(),
            admitted,
        ));
        Ok((BootstrapResponse::Endpoint, vec![theirs]))
    }
}

/// Wraps a received or inherited socket descriptor for tokio.
pub fn into_tokio(fd: OwnedFd) -> std::io::Result<UnixStream> {
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true)?;
    UnixStream::from_std(std)
}

/// Serves the bootstrap protocol on the inherited socketpair end (if any) and on the
/// path listener, forever.
pub async fn serve_bootstrap<S: Service>(
    inherited: Option<OwnedFd>,
    listener: UnixListener,
    vendor: Arc<Vendor<S>>,
) {
    if let Some(fd) = inherited {
        match (into_tokio(fd), vendor.admission.try_admit()) {
            (Ok(stream), Some(admitted)) => {
                tokio::spawn(serve(
                    stream,
                    vendor.clone(),
                    "bootstrap (inherited)".into(),
                    admitted,
                ));
            }
            (Ok(_), None) => tracing::error!("no place for the inherited bootstrap socket"),
            (Err(e), _) => tracing::error!("inherited bootstrap socket unusable: {e}"),
        }
    }
    loop {
        match listener.accept().await {
            Ok((stream, _)) => match vendor.admission.admit().await {
                Some(admitted) => {
                    tokio::spawn(serve(
                        stream,
                        vendor.clone(),
                        "bootstrap (path)".into(),
                        admitted,
                    ));
                }
                None => {
                    tracing::warn!("bootstrap: {BUSY}; refusing a connection");
                    refuse_now(&stream, BUSY);
                }
            },
            Err(e) => {
                tracing::error!("bootstrap accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Opens a bootstrap client on a connected stream (the spawner's socketpair end).
pub async fn bootstrap_client(
    stream: UnixStream,
    peer: &str,
) -> Result<BootstrapClient, ProtocolError> {
    Client::connect(stream, "bootstrap", peer).await
}

/// Connects to a helper's bootstrap path. A dead helper's socket refuses: that failure is
/// final, nothing is started in its place.
pub async fn bootstrap_connect(path: &Path, peer: &str) -> Result<BootstrapClient, ProtocolError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
                ProtocolError::Gone {
                    peer: peer.to_string(),
                }
            }
            _ => ProtocolError::Io {
                peer: peer.to_string(),
                source,
            },
        })?;
    bootstrap_client(stream, peer).await
}

/// Asks a helper for a new endpoint and opens a client of its service on it.
pub async fn create_endpoint<Req, Resp>(
    bootstrap: &BootstrapClient,
    service: &str,
) -> Result<Client<Req, Resp>, ProtocolError>
where
    Req: Serialize,
    Resp: serde::de::DeserializeOwned + Send + 'static,
{
    let peer = bootstrap.peer().to_string();
    let (BootstrapResponse::Endpoint, mut fds) = bootstrap
        .call_with_fds(BootstrapRequest::CreateEndpoint, vec![])
        .await?;
    let fd = fds.pop().ok_or(ProtocolError::MissingFds {
        peer: peer.clone(),
        expected: 1,
        got: 0,
    })?;
    let stream = into_tokio(fd).map_err(|source| ProtocolError::Io {
        peer: peer.clone(),
        source,
    })?;
    Client::connect(stream, service, peer).await
}
