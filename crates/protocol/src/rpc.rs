//! Correlated calls over one stream: every call carries an id, replies may come back in
//! any order, so a long `wait` never holds up a `state` on the same endpoint.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;
use tokio::sync::{oneshot, watch};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::codec::FramedRead;

use crate::error::{ProtocolError, RemoteError};
use crate::frame::{
    self, ClientFrame, FrameCodec, ServerFrame, MAX_FDS_PER_FRAME, MAX_FRAME, MAX_HELLO_FRAME,
    PROTOCOL_VERSION,
};
use crate::transport::{send_frame, FdReader, FrameWriter};

/// What an endpoint's reader holds to begin with: most frames are a few hundred bytes,
/// and the buffer grows for the rare large one. tokio-util's 8 KiB default, times one
/// endpoint per container, was most of the apiserver's memory with 1,000 containers;
/// 1 KiB was still a tenth of what each container costs it.
const READ_BUFFER: usize = 256;

/// How long a peer may take to answer the opening hello before the connection is
/// abandoned: a live peer answers in microseconds, a wedged one must not hang us.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections a server lets wait for their hello at once, by default. A live
/// peer says hello at once, so these are connections that are slow, stuck or hostile.
pub const MAX_PENDING_HELLOS: usize = 128;

/// How long an accept loop waits for a place before it refuses a connection.
pub const ADMISSION_WAIT: Duration = Duration::from_millis(250);

/// What a server grants connections that have not said hello yet: a bounded number of
/// them, each for a bounded time, each reading at most one small frame. Past the hello
/// a connection is someone the server chose to talk to.
#[derive(Clone)]
pub struct Admission {
    pending: Arc<Semaphore>,
    deadline: Duration,
}

impl Admission {
    pub fn new(max_pending: usize, deadline: Duration) -> Self {
        Admission {
            pending: Arc::new(Semaphore::new(max_pending)),
            deadline,
        }
    }

    /// A place for one more connection until its hello, or `None` when every place is
    /// taken (refuse the connection: accepting it would let waiting ones pile up).
    pub fn try_admit(&self) -> Option<Admitted> {
        let permit = self.pending.clone().try_acquire_owned().ok()?;
        Some(Admitted {
            _permit: permit,
            deadline: self.deadline,
        })
    }

    /// Like [`Admission::try_admit`], waiting a moment for a place to free. Places held
    /// by connections whose peers are already gone come back as soon as the server has
    /// read their EOF; a burst of dropped connections must not turn the next client
    /// away. An accept loop waits here, so meanwhile new connections wait in the
    /// kernel's backlog, not in this process.
    pub async fn admit(&self) -> Option<Admitted> {
        if let Some(admitted) = self.try_admit() {
            return Some(admitted);
        }
        let permit = tokio::time::timeout(ADMISSION_WAIT, self.pending.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        Some(Admitted {
            _permit: permit,
            deadline: self.deadline,
        })
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}

impl Default for Admission {
    fn default() -> Self {
        Admission::new(MAX_PENDING_HELLOS, HELLO_TIMEOUT)
    }
}

/// One connection's place among those waiting for their hello; freed by the hello.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    deadline: Duration,
}

impl Admitted {
    /// How long this connection may take to say hello.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}

/// Tells a connection the server has no place for it, without reading from it or
/// waiting for it: one non-blocking write, then the caller drops the stream. Anything
/// slower would give the connections being turned away a cost of their own.
pub fn refuse_now(stream: &UnixStream, message: impl Into<String>) {
    let frame: ServerFrame<()> = ServerFrame::Refused {
        message: message.into(),
    };
    if let Ok(bytes) = frame::encode(&frame) {
        // Straight to the socket: tokio's `try_write` gives up on a fresh stream whose
        // readiness it has not learnt yet.
        let _ = nix::sys::socket::send(
            stream.as_raw_fd(),
            &bytes,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        );
    }
}

/// What a full server tells the connections it turns away.
pub const BUSY: &str = "too many connections are waiting for their hello; try again";

/// One side of a service: decodes requests, answers them. Each call runs as its own task.
pub trait Service: Send + Sync + 'static {
    type Req: DeserializeOwned + Send + 'static;
    type Resp: Serialize + Send + 'static;
    /// Named in the hello, so that a client wired to the wrong socket is refused clearly.
    const NAME: &'static str;

    fn handle(
        self: Arc<Self>,
        req: Self::Req,
        fds: Vec<OwnedFd>,
    ) -> impl Future<Output = Result<(Self::Resp, Vec<OwnedFd>), RemoteError>> + Send + 'static;

    /// Whether a call belongs to its caller, so that it ends when the caller goes away
    /// (a `wait`, a log stream). Every other call runs to its end, or to its undo,
    /// whatever the caller does: a half-done operation with nobody to finish it is how
    /// state leaks.
    fn ends_with_caller(_req: &Self::Req) -> bool {
        false
    }
}

/// Serves one connection until the peer closes it or sends something malformed. Errors
/// are logged here and end only this connection. `admitted` is the connection's place
/// until its hello: it bounds how long the hello may take, and is freed once it came.
pub async fn serve<S: Service>(
    stream: UnixStream,
    service: Arc<S>,
    peer: String,
    admitted: Admitted,
) {
    if let Err(e) = serve_inner(stream, service, &peer, admitted).await {
        tracing::warn!(peer = %peer, "connection closed: {e}");
    }
}

async fn serve_inner<S: Service>(
    stream: UnixStream,
    service: Arc<S>,
    peer: &str,
    admitted: Admitted,
) -> Result<(), ProtocolError> {
    let sock = Arc::new(stream);
    let mut reader = FramedRead::with_capacity(
        FdReader::new(sock.clone()),
        FrameCodec::new(MAX_HELLO_FRAME),
        READ_BUFFER,
    );
    let writer = Arc::new(FrameWriter::new(sock.clone()));
    if !hello::<S>(&mut reader, &writer, peer, admitted).await? {
        return Ok(());
    }
    serve_calls(reader, writer, service, peer).await
}

fn malformed(peer: &str, message: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed {
        peer: peer.to_string(),
        message: message.into(),
    }
}

/// The first exchange: within the admission deadline, a hello naming our version and
/// service, answered; anything else refused. `false`: the peer left before saying a
/// word. Admission ends here, and so does the small frame limit before the hello.
async fn hello<S: Service>(
    reader: &mut FramedRead<FdReader, FrameCodec>,
    writer: &FrameWriter,
    peer: &str,
    admitted: Admitted,
) -> Result<bool, ProtocolError> {
    let send = |frame: ServerFrame<S::Resp>| async move {
        if let Ok(bytes) = frame::encode(&frame) {
            let _ = writer.send(bytes, vec![]).await;
        }
    };
    let first = match tokio::time::timeout(admitted.deadline, reader.next()).await {
        Err(_) => {
            return Err(ProtocolError::Io {
                peer: peer.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no hello within {:?}", admitted.deadline),
                ),
            })
        }
        Ok(None) => return Ok(false),
        Ok(Some(first)) => first.map_err(|e| malformed(peer, e.to_string()))?,
    };
    match frame::decode::<ClientFrame<S::Req>>(&first) {
        Ok(ClientFrame::Hello {
            version,
            service: name,
        }) => {
            if version != PROTOCOL_VERSION {
                let message = format!(
                    "protocol version {version} is not supported (this side speaks {PROTOCOL_VERSION})"
                );
                send(ServerFrame::Refused { message }).await;
                return Err(ProtocolError::Version {
                    peer: peer.to_string(),
                    ours: PROTOCOL_VERSION,
                    theirs: version,
                });
            }
            if name != S::NAME {
                let message = format!("this is the {} service, not {name}", S::NAME);
                send(ServerFrame::Refused {
                    message: message.clone(),
                })
                .await;
                return Err(malformed(peer, message));
            }
            send(ServerFrame::Hello { version }).await;
            reader.decoder_mut().set_max(MAX_FRAME);
            drop(admitted);
            Ok(true)
        }
        Ok(ClientFrame::Call { .. }) => Err(malformed(peer, "call before hello")),
        Err(e) => Err(malformed(peer, e)),
    }
}

/// Calls until the peer closes or sends something malformed. Each call runs to its
/// end detached from the connection, unless it belongs to its caller.
async fn serve_calls<S: Service>(
    mut reader: FramedRead<FdReader, FrameCodec>,
    writer: Arc<FrameWriter>,
    service: Arc<S>,
    peer: &str,
) -> Result<(), ProtocolError> {
    let mut calls = JoinSet::new();
    loop {
        while calls.try_join_next().is_some() {}
        let Some(next) = reader.next().await else {
            break;
        };
        let bytes = next.map_err(|e| malformed(peer, e.to_string()))?;
        let (id, nfds, body) = match frame::decode::<ClientFrame<S::Req>>(&bytes) {
            Ok(ClientFrame::Call { id, fds, body }) if fds as usize <= MAX_FDS_PER_FRAME => {
                (id, fds as usize, body)
            }
            Ok(ClientFrame::Call { fds, .. }) => {
                return Err(malformed(
                    peer,
                    format!(
                        "too many file descriptors: a call announcing {fds} (at most {MAX_FDS_PER_FRAME})"
                    ),
                ))
            }
            Ok(ClientFrame::Hello { .. }) => return Err(malformed(peer, "second hello")),
            Err(e) => return Err(malformed(peer, e)),
        };
        let fds = reader
            .get_mut()
            .take_fds(nfds)
            .map_err(|got| ProtocolError::MissingFds {
                peer: peer.to_string(),
                expected: nfds,
                got,
            })?;
        let owned_by_caller = S::ends_with_caller(&body);
        let service = service.clone();
        let writer = writer.clone();
        let peer = peer.to_string();
        let mut call = Box::pin(async move {
            let result = service.handle(body, fds).await;
            if let Some((bytes, fds)) = encode_reply::<S::Resp>(id, result, &peer) {
                let _ = writer.send(bytes, fds).await;
            }
        });
        // Most calls finish without waiting: answer those right here, and give only
        // the ones that block (a `wait`) a task of their own. A hop through the
        // scheduler per call would cost more than the call itself.
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        if call.as_mut().poll(&mut cx).is_pending() {
            if owned_by_caller {
                calls.spawn(call);
            } else {
                // Detached: it finishes even if the peer goes; its reply is then lost.
                tokio::spawn(call);
            }
        }
    }
    // The peer is gone: what only it was waiting for (a wait, a stream) ends with it.
    calls.abort_all();
    Ok(())
}

/// A reply frame and its descriptors; a reply that can't be sent as it is becomes an
/// error reply, so the caller always hears back.
fn encode_reply<Resp: serde::Serialize>(
    id: u64,
    result: Result<(Resp, Vec<OwnedFd>), RemoteError>,
    peer: &str,
) -> Option<(bytes::Bytes, Vec<OwnedFd>)> {
    let (frame, fds) = match result {
        Ok((resp, fds)) if fds.len() <= MAX_FDS_PER_FRAME => (
            ServerFrame::Reply {
                id,
                fds: fds.len() as u8,
                body: Ok(resp),
            },
            fds,
        ),
        Ok(_) => (
            ServerFrame::Reply {
                id,
                fds: 0,
                body: Err(RemoteError::internal("reply carries too many descriptors")),
            },
            vec![],
        ),
        Err(e) => (
            ServerFrame::Reply {
                id,
                fds: 0,
                body: Err(e),
            },
            vec![],
        ),
    };
    match frame::encode(&frame) {
        Ok(b) => Some((b, fds)),
        Err(e) => {
            tracing::warn!(peer = %peer, "reply {id} cannot be encoded: {e}");
            let fallback: ServerFrame<()> = ServerFrame::Reply {
                id,
                fds: 0,
                body: Err(RemoteError::internal(format!(
                    "reply cannot be encoded: {e}"
                ))),
            };
            frame::encode(&fallback).ok().map(|b| (b, vec![]))
        }
    }
}

type Pending<Resp> = oneshot::Sender<Result<(Resp, Vec<OwnedFd>), ProtocolError>>;
type Reply<Resp> = oneshot::Receiver<Result<(Resp, Vec<OwnedFd>), ProtocolError>>;

struct Table<Resp> {
    closed: bool,
    pending: HashMap<u64, Pending<Resp>>,
}

struct Shared<Resp> {
    peer: String,
    table: Mutex<Table<Resp>>,
    next_id: AtomicU64,
    closed: watch::Sender<bool>,
}

impl<Resp> Shared<Resp> {
    fn close(&self) {
        let drained: Vec<Pending<Resp>> = match self.table.lock() {
            Ok(mut t) => {
                t.closed = true;
                t.pending.drain().map(|(_, tx)| tx).collect()
            }
            Err(_) => vec![],
        };
        for tx in drained {
            let _ = tx.send(Err(ProtocolError::Gone {
                peer: self.peer.clone(),
            }));
        }
        self.closed.send_replace(true);
    }
}

/// The calling side of an endpoint. Cheap to clone; all clones share one connection.
pub struct Client<Req, Resp> {
    shared: Arc<Shared<Resp>>,
    conn: Arc<Conn>,
    _req: PhantomData<fn(Req)>,
}

/// The writing side; when the last client clone lets go, the socket is shut down so the
/// peer sees EOF and our reader task ends.
struct Conn {
    writer: FrameWriter,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = nix::sys::socket::shutdown(
            self.writer.socket().as_raw_fd(),
            nix::sys::socket::Shutdown::Both,
        );
    }
}

impl<Req, Resp> Clone for Client<Req, Resp> {
    fn clone(&self) -> Self {
        Client {
            shared: self.shared.clone(),
            conn: self.conn.clone(),
            _req: PhantomData,
        }
    }
}

impl<Req, Resp> Client<Req, Resp>
where
    Req: Serialize,
    Resp: DeserializeOwned + Send + 'static,
{
    /// Exchanges the hello (protocol version, service name) and starts the reader.
    /// `peer` names the other side in every error ("helper sandbox c1").
    pub async fn connect(
        stream: UnixStream,
        service: &str,
        peer: impl Into<String>,
    ) -> Result<Self, ProtocolError> {
        let peer = peer.into();
        let sock = Arc::new(stream);
        let mut reader =
            FramedRead::with_capacity(FdReader::new(sock.clone()), frame::codec(), READ_BUFFER);
        let hello: ClientFrame<()> = ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            service: service.to_string(),
        };
        let bytes = frame::encode(&hello).map_err(|message| ProtocolError::Encode {
            peer: peer.clone(),
            message,
        })?;
        // A refusing server may close before reading our hello; its refusal is still
        // waiting to be read, so a failed write is reported only if nothing comes back.
        let write_err = send_frame(&sock, &bytes, vec![]).await.err();
        let first = match tokio::time::timeout(HELLO_TIMEOUT, reader.next()).await {
            Err(_) => {
                return Err(ProtocolError::Io {
                    peer,
                    source: std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer to hello"),
                })
            }
            Ok(None) => match write_err {
                Some(source) => return Err(ProtocolError::Io { peer, source }),
                None => return Err(ProtocolError::Gone { peer }),
            },
            Ok(Some(Err(source))) => return Err(ProtocolError::Io { peer, source }),
            Ok(Some(Ok(b))) => b,
        };
        match frame::decode::<ServerFrame<Resp>>(&first) {
            Ok(ServerFrame::Hello { version }) if version == PROTOCOL_VERSION => {}
            Ok(ServerFrame::Hello { version }) => {
                return Err(ProtocolError::Version {
                    peer,
                    ours: PROTOCOL_VERSION,
                    theirs: version,
                })
            }
            Ok(ServerFrame::Refused { message }) => {
                return Err(ProtocolError::Refused { peer, message })
            }
            Ok(ServerFrame::Reply { .. }) => {
                return Err(ProtocolError::Malformed {
                    peer,
                    message: "reply before hello".into(),
                })
            }
            Err(message) => return Err(ProtocolError::Malformed { peer, message }),
        }

        let (closed, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            peer,
            table: Mutex::new(Table {
                closed: false,
                pending: HashMap::new(),
            }),
            next_id: AtomicU64::new(1),
            closed,
        });
        tokio::spawn(read_replies(reader, shared.clone()));
        Ok(Client {
            shared,
            conn: Arc::new(Conn {
                writer: FrameWriter::new(sock),
            }),
            _req: PhantomData,
        })
    }

    pub fn peer(&self) -> &str {
        &self.shared.peer
    }

    pub fn is_closed(&self) -> bool {
        *self.shared.closed.borrow()
    }

    /// Calls made on this endpoint that wait for their answer (for diagnostics and tests).
    pub fn pending(&self) -> usize {
        self.shared
            .table
            .lock()
            .map(|t| t.pending.len())
            .unwrap_or(0)
    }

    /// Resolves once the peer is gone (it closed the endpoint, or died).
    pub async fn closed(&self) {
        let mut rx = self.shared.closed.subscribe();
        let _ = rx.wait_for(|closed| *closed).await;
    }

    // The calls below are plain functions that encode the request before returning
    // their future: an `async fn` would keep the request (and a copy in each wrapper)
    // inside its state for as long as the answer takes. A `Wait` is pending for a
    // container's whole life, once per container.

    pub fn call(&self, req: Req) -> impl Future<Output = Result<Resp, ProtocolError>> + '_ {
        let call = self.call_with_fds(req, vec![]);
        async move { call.await.map(|(resp, _)| resp) }
    }

    /// A call that must be answered within `deadline`: a peer that is alive but does not
    /// answer (stopped, wedged) fails it with [`ProtocolError::Timeout`] instead of
    /// hanging the caller. The call may still run on the peer.
    pub fn call_within<'a>(
        &'a self,
        what: &'a str,
        deadline: Duration,
        req: Req,
        fds: Vec<OwnedFd>,
    ) -> impl Future<Output = Result<(Resp, Vec<OwnedFd>), ProtocolError>> + 'a {
        let call = tokio::time::timeout(deadline, self.call_with_fds(req, fds));
        async move {
            match call.await {
                Ok(result) => result,
                Err(_) => Err(ProtocolError::Timeout {
                    peer: self.shared.peer.clone(),
                    what: what.to_string(),
                    secs: deadline.as_secs_f64().ceil() as u64,
                }),
            }
        }
    }

    pub fn call_with_fds(
        &self,
        req: Req,
        fds: Vec<OwnedFd>,
    ) -> impl Future<Output = Result<(Resp, Vec<OwnedFd>), ProtocolError>> + '_ {
        let prepared = self.prepare(req, fds.len());
        async move {
            let (bytes, rx, _entry) = prepared?;
            // Boxed: the write's state is needed only until the frame is out, and
            // inline it would stay in the future while the answer is awaited.
            if let Err(source) = Box::pin(self.conn.writer.send(bytes, fds)).await {
                return Err(match source.kind() {
                    std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::NotConnected => self.gone(),
                    _ => ProtocolError::Io {
                        peer: self.shared.peer.clone(),
                        source,
                    },
                });
            }
            match rx.await {
                Ok(result) => result,
                Err(_) => Err(self.gone()),
            }
        }
    }

    fn gone(&self) -> ProtocolError {
        ProtocolError::Gone {
            peer: self.shared.peer.clone(),
        }
    }

    /// Encodes the call and enters it in the pending table. The entry goes with the
    /// returned guard: a caller that gives up (a deadline, a dropped future, even one
    /// never polled) takes it along, so a peer that never answers does not grow the
    /// table.
    fn prepare(
        &self,
        req: Req,
        nfds: usize,
    ) -> Result<(bytes::Bytes, Reply<Resp>, PendingEntry<'_, Resp>), ProtocolError> {
        if nfds > MAX_FDS_PER_FRAME {
            return Err(ProtocolError::Encode {
                peer: self.shared.peer.clone(),
                message: format!("{nfds} descriptors in one call"),
            });
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = ClientFrame::Call {
            id,
            fds: nfds as u8,
            body: req,
        };
        let bytes = frame::encode(&frame).map_err(|message| ProtocolError::Encode {
            peer: self.shared.peer.clone(),
            message,
        })?;
        let (tx, rx) = oneshot::channel();
        {
            let mut table = self.shared.table.lock().map_err(|_| self.gone())?;
            if table.closed {
                return Err(self.gone());
            }
            table.pending.insert(id, tx);
        }
        Ok((
            bytes,
            rx,
            PendingEntry {
                shared: &self.shared,
                id,
            },
        ))
    }
}

struct PendingEntry<'a, Resp> {
    shared: &'a Shared<Resp>,
    id: u64,
}

impl<Resp> Drop for PendingEntry<'_, Resp> {
    fn drop(&mut self) {
        if let Ok(mut t) = self.shared.table.lock() {
            t.pending.remove(&self.id);
        }
    }
}

async fn read_replies<Resp: DeserializeOwned>(
    mut reader: FramedRead<FdReader, FrameCodec>,
    shared: Arc<Shared<Resp>>,
) {
    while let Some(next) = reader.next().await {
        let bytes = match next {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(peer = %shared.peer, "endpoint read: {e}");
                break;
            }
        };
        let (id, nfds, body) = match frame::decode::<ServerFrame<Resp>>(&bytes) {
            Ok(ServerFrame::Reply { id, fds, body }) => (id, fds as usize, body),
            Ok(_) => {
                tracing::warn!(peer = %shared.peer, "unexpected frame after hello");
                break;
            }
            Err(e) => {
                tracing::warn!(peer = %shared.peer, "malformed reply: {e}");
                break;
            }
        };
        let fds = match reader.get_mut().take_fds(nfds) {
            Ok(fds) => fds,
            Err(got) => {
                tracing::warn!(peer = %shared.peer, "reply {id} announced {nfds} descriptors, got {got}");
                break;
            }
        };
        let waiter = shared
            .table
            .lock()
            .ok()
            .and_then(|mut t| t.pending.remove(&id));
        if let Some(waiter) = waiter {
            let _ = waiter.send(body.map(|b| (b, fds)).map_err(ProtocolError::Remote));
        }
    }
    shared.close();
}
