//! The CLI's one connection: to the apiserver, never to a helper.

use std::path::Path;

use anyhow::{anyhow, Result};
use container_protocol::api::{ApiRequest, ApiResponse, SERVICE};
use container_protocol::{Client, ProtocolError};
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

/// Calls the apiserver; a remote error becomes the user's error message as is.
pub async fn call(client: &ApiClient, req: ApiRequest) -> Result<ApiResponse> {
    client.call(req).await.map_err(|e| match e {
        ProtocolError::Remote(r) => anyhow!("{}", r.message),
        other => anyhow!("{other}"),
    })
}

/// Like [`call`], with descriptors both ways.
pub async fn call_fds(
    client: &ApiClient,
    req: ApiRequest,
    fds: Vec<std::os::fd::OwnedFd>,
) -> Result<(ApiResponse, Vec<std::os::fd::OwnedFd>)> {
    client.call_with_fds(req, fds).await.map_err(|e| match e {
        ProtocolError::Remote(r) => anyhow!("{}", r.message),
        other => anyhow!("{other}"),
    })
}
