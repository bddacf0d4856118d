//! Processes exec'd into a running container, and terminal sizes.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use container_protocol::sandbox::{ExitStatus, Stdio};

use super::validate::{check_env, process_spec};
use super::Containers;
use crate::error::{bad, ApiError};

/// How an exec began: with a terminal the caller gets its master now and collects the
/// exit later; otherwise the exit is the answer.
pub enum Execd {
    Started { pid: u32, fds: Vec<OwnedFd> },
    Exited(ExitStatus),
}

impl Containers {
    pub async fn exec(
        self: &Arc<Self>,
        id: &str,
        args: Vec<String>,
        env: Vec<String>,
        tty: bool,
        fds: Vec<OwnedFd>,
    ) -> Result<Execd, ApiError> {
        let context = || format!("container {id}: exec");
        if args.is_empty() {
            return Err(bad(format!("{}: no command given", context())));
        }
        check_env(&env).map_err(|e| bad(format!("{}: {e}", context())))?;
        let (config, _) = self.load(id)?;
        let helper = self.running_helper(id)?;
        let stdio = match (tty, fds.len()) {
            (true, _) => Stdio::Tty,
            (false, 3) => Stdio::Inherit,
            (false, _) => Stdio::Log,
        };
        let mut process = process_spec(&config, &args, &env);
        process.tty = tty;
        let (pid, fds) = helper
            .exec(process, stdio, fds)
            .await
            .map_err(|e| ApiError::from(e).context(context()))?;
        if tty {
            return Ok(Execd::Started { pid, fds });
        }
        let status = helper
            .exec_wait(pid)
            .await
            .map_err(|e| ApiError::from(e).context(context()))?;
        Ok(Execd::Exited(status))
    }

    pub async fn exec_wait(&self, id: &str, pid: u32) -> Result<ExitStatus, ApiError> {
        let helper = self.running_helper(id)?;
        Ok(helper.exec_wait(pid).await?)
    }

    pub async fn exec_resize(
        &self,
        id: &str,
        pid: u32,
        rows: u16,
        cols: u16,
    ) -> Result<(), ApiError> {
        let helper = self.running_helper(id)?;
        Ok(helper.exec_resize(pid, rows, cols).await?)
    }

    pub async fn resize(&self, id: &str, rows: u16, cols: u16) -> Result<(), ApiError> {
        let helper = self.running_helper(id)?;
        Ok(helper.resize(rows, cols).await?)
    }
}
