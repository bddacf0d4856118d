//! A Unix stream that carries file descriptors alongside frames.
//!
//! Received descriptors are queued in arrival order; a decoded frame that announces `n`
//! descriptors takes the first `n` of the queue. Linux never merges a read across a
//! segment that carries `SCM_RIGHTS`, and the sender attaches descriptors to the first
//! byte of their frame, so by the time a frame is complete its descriptors are queued.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::net::UnixStream;

use crate::frame::MAX_FDS_PER_FRAME;

/// The kernel's limit of descriptors in one `SCM_RIGHTS` message.
const SCM_MAX_FD: usize = 253;

pub struct FdReader {
    sock: Arc<UnixStream>,
    fds: VecDeque<OwnedFd>,
}

impl FdReader {
    pub fn new(sock: Arc<UnixStream>) -> Self {
        FdReader {
            sock,
            fds: VecDeque::new(),
        }
    }

    /// Takes the descriptors announced by the frame just decoded.
    pub fn take_fds(&mut self, n: usize) -> Result<Vec<OwnedFd>, usize> {
        if self.fds.len() < n {
            return Err(self.fds.len());
        }
        Ok(self.fds.drain(..n).collect())
    }
}

fn recv_with_fds(fd: RawFd, buf: &mut [u8], queue: &mut VecDeque<OwnedFd>) -> io::Result<usize> {
    let mut iov = [IoSliceMut::new(buf)];
    // Room for the kernel's own limit per message (SCM_MAX_FD): the control message is
    // then never truncated, so every descriptor a peer sends is received and owned
    // here (and closed if refused) instead of leaking into this process.
    let mut space = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
    let msg = recvmsg::<()>(
        fd,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let bytes = msg.bytes;
    let cmsgs = msg
        .cmsgs()
        .map_err(|_| io::Error::other("truncated control message"))?;
    for cmsg in cmsgs {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for fd in raw {
                // SAFETY: the kernel just installed these descriptors for us.
                queue.push_back(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    // A legitimate peer's descriptors are claimed by the frame they arrive with, so
    // the queue never holds more than two frames' worth. More means a peer sends
    // descriptors it does not announce: refuse the connection (dropping the queue
    // closes them) rather than let it exhaust our descriptor table.
    if queue.len() > 2 * MAX_FDS_PER_FRAME {
        queue.clear();
        return Err(io::Error::other("peer sent descriptors no frame announced"));
    }
    Ok(bytes)
}

impl AsyncRead for FdReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.sock.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            let fd = this.sock.as_raw_fd();
            let unfilled = buf.initialize_unfilled();
            let queue = &mut this.fds;
            match this
                .sock
                .try_io(Interest::READABLE, || recv_with_fds(fd, unfilled, queue))
            {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

fn send_chunk(sock: &UnixStream, chunk: &[u8], raw: &[RawFd]) -> io::Result<usize> {
    let iov = [IoSlice::new(chunk)];
    let rights = [ControlMessage::ScmRights(raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &rights };
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        cmsgs,
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(io::Error::from)
}

/// Frames written whole, one writer at a time, and never torn by a cancelled caller.
///
/// The caller's own task writes (no hand-off to a writer task: that hop would double the
/// latency of a small call). A small frame goes out in one non-blocking `sendmsg` before
/// the first await point that could cancel it; only a frame the socket cannot take at
/// once is finished by a spawned task that owns the write lock until the frame is out.
pub struct FrameWriter {
    sock: Arc<UnixStream>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl FrameWriter {
    pub fn new(sock: Arc<UnixStream>) -> Self {
        FrameWriter {
            sock,
            lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub fn socket(&self) -> &Arc<UnixStream> {
        &self.sock
    }

    /// Writes one whole encoded frame; `fds` travel with its first byte.
    pub async fn send(&self, frame: bytes::Bytes, fds: Vec<OwnedFd>) -> io::Result<()> {
        let guard = self.lock.clone().lock_owned().await;
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let sent = match self
            .sock
            .try_io(Interest::WRITABLE, || send_chunk(&self.sock, &frame, &raw))
        {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        if sent == frame.len() {
            return Ok(());
        }
        let sock = self.sock.clone();
        let finish = tokio::spawn(async move {
            let _guard = guard;
            let raw: Vec<RawFd> = if sent == 0 { raw } else { vec![] };
            let mut sent = sent;
            while sent < frame.len() {
                let chunk = &frame[sent..];
                let rights = if sent == 0 { &raw[..] } else { &[] };
                let n = sock
                    .async_io(Interest::WRITABLE, || send_chunk(&sock, chunk, rights))
                    .await?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::WriteZero));
                }
                sent += n;
            }
            drop(fds);
            Ok(())
        });
        finish
            .await
            .map_err(|e| io::Error::other(format!("frame writer: {e}")))?
    }
}

/// Writes one frame on a socket nobody else writes to yet (the opening hello).
pub async fn send_frame(sock: &Arc<UnixStream>, frame: &[u8], fds: Vec<OwnedFd>) -> io::Result<()> {
    FrameWriter::new(sock.clone())
        .send(bytes::Bytes::copy_from_slice(frame), fds)
        .await
}
