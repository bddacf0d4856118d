//! The sandbox helper's calls.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use container_protocol::sandbox::{ExitStatus, SandboxRequest, SandboxResponse};
use container_protocol::{HelperInfo, RemoteError, Service};
use tokio::sync::{watch, Notify};

pub struct SandboxHelper {
    pub info: HelperInfo,
    pub shutdown: Arc<Notify>,
    /// `Some` once the workload has exited; `wait` calls watch it.
    pub exit: watch::Sender<Option<ExitStatus>>,
}

impl SandboxHelper {
    pub fn new(info: HelperInfo, shutdown: Arc<Notify>) -> Self {
        SandboxHelper {
            info,
            shutdown,
            exit: watch::Sender::new(None),
        }
    }

    async fn wait(&self) -> Result<ExitStatus, RemoteError> {
        let mut rx = self.exit.subscribe();
        let status = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| RemoteError::new("sandbox is shutting down"))?;
        status.ok_or_else(|| RemoteError::new("no exit status"))
    }

    async fn dispatch(
        self: Arc<Self>,
        req: SandboxRequest,
    ) -> Result<SandboxResponse, RemoteError> {
        match req {
            SandboxRequest::Info => Ok(SandboxResponse::Info(self.info.clone())),
            SandboxRequest::Echo(n) => Ok(SandboxResponse::Echo(n)),
            SandboxRequest::Wait => self.wait().await.map(SandboxResponse::Exited),
            SandboxRequest::Shutdown => {
                self.shutdown.notify_one();
                Ok(SandboxResponse::Done)
            }
        }
    }
}

impl Service for SandboxHelper {
    type Req = SandboxRequest;
    type Resp = SandboxResponse;
    const NAME: &'static str = container_protocol::sandbox::SERVICE;

    async fn handle(
        self: Arc<Self>,
        req: SandboxRequest,
        _fds: Vec<OwnedFd>,
    ) -> Result<(SandboxResponse, Vec<OwnedFd>), RemoteError> {
        self.dispatch(req).await.map(|r| (r, vec![]))
    }
}
