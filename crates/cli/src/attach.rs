//! Attaching a terminal or pipes to a workload. The descriptors travel to the apiserver,
//! which hands them to the sandbox: the workload reads and writes them directly.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::{bail, Context, Result};
use container_protocol::api::{ApiRequest, ApiResponse};
use container_protocol::container::ContainerConfig;
use container_protocol::sandbox::Stdio;
use nix::sys::termios;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};

use crate::client::{call, call_fds, ApiClient};

pub async fn start_detached(client: &ApiClient, id: &str) -> Result<()> {
    call(
        client,
        ApiRequest::ContainerStart {
            id: id.to_string(),
            stdio: Stdio::Log,
        },
    )
    .await?;
    Ok(())
}

fn dup(fd: impl AsFd) -> Result<OwnedFd> {
    Ok(fd.as_fd().try_clone_to_owned()?)
}

fn stdio_fds(interactive: bool) -> Result<Vec<OwnedFd>> {
    let stdin = if interactive {
        dup(std::io::stdin())?
    } else {
        OwnedFd::from(std::fs::File::open("/dev/null")?)
    };
    Ok(vec![
        stdin,
        dup(std::io::stdout())?,
        dup(std::io::stderr())?,
    ])
}

/// Restores the terminal's mode however we leave.
struct RawMode {
    saved: Option<termios::Termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw);
        // Dying of SIGPIPE here would leave the terminal raw: a closed stdout ends the
        // session through its write error instead, and the mode is restored.
        set_sigpipe(nix::sys::signal::SigHandler::SigIgn);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), termios::SetArg::TCSANOW, saved);
            set_sigpipe(nix::sys::signal::SigHandler::SigDfl);
        }
    }
}

pub fn set_sigpipe(handler: nix::sys::signal::SigHandler) {
    // SAFETY: SIG_DFL and SIG_IGN run no code of ours in the handler.
    let _ = unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, handler) };
}

fn window_size() -> Option<(u16, u16)> {
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let rc = unsafe {
        nix::libc::ioctl(
            std::io::stdout().as_raw_fd(),
            nix::libc::TIOCGWINSZ,
            &mut ws,
        )
    };
    (rc == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// `run` attached: creates and starts in one call (the apiserver finishes it, or undoes
/// it, whatever happens to this process), then waits; returns the workload's exit code.
pub async fn run_attached(
    client: &ApiClient,
    config: Box<ContainerConfig>,
    tty: bool,
    interactive: bool,
) -> Result<i32> {
    let (stdio, fds) = if tty {
        (Stdio::Tty, vec![])
    } else {
        (Stdio::Inherit, stdio_fds(interactive)?)
    };
    let (reply, mut out_fds) =
        call_fds(client, ApiRequest::ContainerRun { config, stdio }, fds).await?;
    let ApiResponse::Started { id, .. } = reply else {
        bail!("unexpected answer from the apiserver")
    };
    // An exit before this wait arrives is still seen: the record keeps it, and so does
    // the apiserver for a moment after a `--rm` removal.
    let waiter = client.clone();
    let wait_id = id.clone();
    let wait =
        Box::pin(async move { call(&waiter, ApiRequest::ContainerWait { id: wait_id }).await });
    let master = terminal(tty, &mut out_fds)?;
    attach_session(client, &id, master, interactive, wait).await
}

/// The pty master a start with a terminal hands back.
fn terminal(tty: bool, fds: &mut Vec<OwnedFd>) -> Result<Option<OwnedFd>> {
    if !tty {
        return Ok(None);
    }
    fds.pop()
        .map(Some)
        .context("no terminal came back from the sandbox")
}

/// `run -d`: creates and starts in one call; returns the container's id.
pub async fn run_detached(client: &ApiClient, config: Box<ContainerConfig>) -> Result<String> {
    let reply = call(
        client,
        ApiRequest::ContainerRun {
            config,
            stdio: Stdio::Log,
        },
    )
    .await?;
    let ApiResponse::Started { id, .. } = reply else {
        bail!("unexpected answer from the apiserver")
    };
    Ok(id)
}

async fn attach_session(
    client: &ApiClient,
    id: &str,
    master: Option<OwnedFd>,
    interactive: bool,
    wait: std::pin::Pin<Box<dyn std::future::Future<Output = Result<ApiResponse>> + '_>>,
) -> Result<i32> {
    let session = Session {
        client,
        resize: &|rows, cols| ApiRequest::ContainerResize {
            id: id.to_string(),
            rows,
            cols,
        },
        signal: &|sig| {
            Some(ApiRequest::ContainerKill {
                id: id.to_string(),
                signal: sig as i32,
            })
        },
    };
    session.run(master, interactive, wait).await
}

/// Starts a container with this process's stdio (or a pty) and waits for it; returns
/// the workload's exit code.
pub async fn start_attached(
    client: &ApiClient,
    id: &str,
    tty: bool,
    interactive: bool,
) -> Result<i32> {
    // The wait is on the wire before the start, so even an instant exit is seen.
    let waiter = client.clone();
    let wait_id = id.to_string();
    let mut wait =
        Box::pin(async move { call(&waiter, ApiRequest::ContainerWait { id: wait_id }).await });
    let _ = futures::poll!(wait.as_mut());

    let (stdio, fds) = if tty {
        (Stdio::Tty, vec![])
    } else {
        (Stdio::Inherit, stdio_fds(interactive)?)
    };
    let start = ApiRequest::ContainerStart {
        id: id.to_string(),
        stdio,
    };
    let (reply, mut out_fds) = call_fds(client, start, fds).await?;
    let ApiResponse::Started { .. } = reply else {
        bail!("unexpected answer from the apiserver")
    };
    let master = terminal(tty, &mut out_fds)?;
    attach_session(client, id, master, interactive, wait).await
}

/// The CLI's side of an attached process: a terminal (raw mode, byte copying, window
/// size) when there is one, signals forwarded, until `wait` answers.
struct Session<'a> {
    client: &'a ApiClient,
    resize: &'a dyn Fn(u16, u16) -> ApiRequest,
    signal: &'a dyn Fn(nix::sys::signal::Signal) -> Option<ApiRequest>,
}

impl Session<'_> {
    async fn run(
        &self,
        master: Option<OwnedFd>,
        interactive: bool,
        mut wait: std::pin::Pin<Box<dyn std::future::Future<Output = Result<ApiResponse>> + '_>>,
    ) -> Result<i32> {
        let _raw = master.as_ref().map(|_| RawMode::enter());
        let (mut output, mut input) = (None, None);
        if let Some(master) = master {
            if let Some((rows, cols)) = window_size() {
                let _ = call(self.client, (self.resize)(rows, cols)).await;
            }
            let master = std::fs::File::from(master);
            let reader = tokio::fs::File::from_std(master.try_clone()?);
            output = Some(tokio::spawn(copy(reader, tokio::io::stdout())));
            if interactive {
                let writer = tokio::fs::File::from_std(master);
                input = Some(tokio::spawn(copy(tokio::io::stdin(), writer)));
            }
        }
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut winch = signal(SignalKind::window_change())?;
        let status = loop {
            tokio::select! {
                result = &mut wait => break result?,
                _ = sigint.recv() => self.forward(nix::sys::signal::Signal::SIGINT).await,
                _ = sigterm.recv() => self.forward(nix::sys::signal::Signal::SIGTERM).await,
                _ = winch.recv() => {
                    if let Some((rows, cols)) = window_size() {
                        let _ = call(self.client, (self.resize)(rows, cols)).await;
                    }
                }
            }
        };
        if let Some(input) = input {
            input.abort();
        }
        // The exit can overtake the last output still in the pty: read until the
        // terminal reports that every writer is gone (EIO), within a bound in case the
        // process left children holding it.
        if let Some(output) = output {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), output).await;
        }
        match status {
            ApiResponse::Exited(s) => Ok(s.code),
            _ => bail!("unexpected answer from the apiserver"),
        }
    }

    async fn forward(&self, sig: nix::sys::signal::Signal) {
        if let Some(req) = (self.signal)(sig) {
            let _ = call(self.client, req).await;
        }
    }
}

async fn copy(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let _ = to.flush().await;
    }
}

pub async fn exec(
    client: &ApiClient,
    id: &str,
    args: Vec<String>,
    env: Vec<String>,
    interactive: bool,
    tty: bool,
) -> Result<i32> {
    let fds = if tty { vec![] } else { stdio_fds(interactive)? };
    let req = ApiRequest::ContainerExec {
        id: id.to_string(),
        args,
        env,
        tty,
    };
    let (reply, mut fds) = call_fds(client, req, fds).await?;
    let pid = match reply {
        ApiResponse::Exited(s) => return Ok(s.code),
        ApiResponse::Started { pid, .. } => pid,
        _ => bail!("unexpected answer from the apiserver"),
    };
    let master = fds
        .pop()
        .context("no terminal came back from the sandbox")?;
    let waiter = client.clone();
    let wait_id = id.to_string();
    let wait =
        Box::pin(
            async move { call(&waiter, ApiRequest::ContainerExecWait { id: wait_id, pid }).await },
        );
    let session = Session {
        client,
        resize: &|rows, cols| ApiRequest::ContainerExecResize {
            id: id.to_string(),
            pid,
            rows,
            cols,
        },
        // In raw mode ^C reaches the process as a byte; other signals end the session.
        signal: &|_| None,
    };
    session.run(Some(master), interactive, wait).await
}
