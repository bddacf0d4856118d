//! The CLI's one connection: to the apiserver, never to a helper.

use std::path::Path;

use anyhow::{anyhow, Result};
use container_protocol::api::{ApiRequest, ApiResponse, SERVICE};
use container_protocol::{Client, ErrorKind, ProtocolError};
use tokio::net::UnixStream;

pub type ApiClient = Client<ApiRequest, ApiResponse>;

#[derive(Debug)]
pub enum ConnectError {
    /// Nothing listens: the apiserver is not running.
    NotRunning,
    Other(anyhow::Error),
}

pub async fn try_connect(socket: &Path) -> Result<ApiClient, ConnectError> {
    let stream = match UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ConnectError::NotRunning)
        }
        Err(e) => {
            return Err(ConnectError::Other(anyhow!(
                "connect to {}: {e}",
                socket.display()
            )))
        }
    };
    Client::connect(stream, SERVICE, "apiserver")
        .await
        .map_err(|e| ConnectError::Other(e.into()))
}

pub async fn connect(socket: &Path) -> Result<ApiClient> {
    match try_connect(socket).await {
        Ok(c) => Ok(c),
        Err(ConnectError::NotRunning) => Err(anyhow!(
            "the apiserver is not running (no answer on {}); start it with `container system start`",
            socket.display()
        )),
        Err(ConnectError::Other(e)) => Err(e),
    }
}

/// A failed call, with the kind that picks the CLI's exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failed {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failed {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> anyhow::Error {
        Failed {
            kind,
            message: message.into(),
        }
        .into()
    }
}

fn failed(e: ProtocolError) -> anyhow::Error {
    let kind = e.kind();
    match e {
        ProtocolError::Remote(r) => Failed::error(kind, r.message),
        other => Failed::error(kind, other.to_string()),
    }
}

/// The exit code for an error that ended the command: its kind's when it came from a
/// call, 125 (the runtime failed) otherwise.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    e.chain()
        .find_map(|c| c.downcast_ref::<Failed>())
        .map_or(125, |f| f.kind.exit_code())
}

/// Calls the apiserver; a remote error becomes the user's error message as is.
pub async fn call(client: &ApiClient, req: ApiRequest) -> Result<ApiResponse> {
    client.call(req).await.map_err(failed)
}

/// Like [`call`], with descriptors both ways.
pub async fn call_fds(
    client: &ApiClient,
    req: ApiRequest,
    fds: Vec<std::os::fd::OwnedFd>,
) -> Result<(ApiResponse, Vec<std::os::fd::OwnedFd>)> {
    client.call_with_fds(req, fds).await.map_err(failed)
}
