//! The service the protocol's tests call: it answers each number with itself.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use container_protocol::{RemoteError, Service};

pub struct Echo;

impl Service for Echo {
    type Req = u32;
    type Resp = u32;
    const NAME: &'static str = "echo";

    async fn handle(
        self: Arc<Self>,
        req: u32,
        _fds: Vec<OwnedFd>,
    ) -> Result<(u32, Vec<OwnedFd>), RemoteError> {
        Ok((req, vec![]))
    }
}
