//! The network helper's calls.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use container_protocol::network::{NetworkRequest, NetworkResponse};
use container_protocol::{HelperInfo, RemoteError, Service};
use tokio::sync::Notify;

pub struct NetworkHelper {
    pub info: HelperInfo,
    pub shutdown: Arc<Notify>,
}

impl NetworkHelper {
    async fn dispatch(
        self: Arc<Self>,
        req: NetworkRequest,
    ) -> Result<NetworkResponse, RemoteError> {
        match req {
            NetworkRequest::Info => Ok(NetworkResponse::Info(self.info.clone())),
            NetworkRequest::Echo(n) => Ok(NetworkResponse::Echo(n)),
            NetworkRequest::Shutdown => {
                self.shutdown.notify_one();
                Ok(NetworkResponse::Done)
            }
        }
    }
}

impl Service for NetworkHelper {
    type Req = NetworkRequest;
    type Resp = NetworkResponse;
    const NAME: &'static str = container_protocol::network::SERVICE;

    async fn handle(
        self: Arc<Self>,
        req: NetworkRequest,
        _fds: Vec<OwnedFd>,
    ) -> Result<(NetworkResponse, Vec<OwnedFd>), RemoteError> {
        self.dispatch(req).await.map(|r| (r, vec![]))
    }
}
