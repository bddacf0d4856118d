//! The network's own name server (issue 13): on each gateway address, port 53, UDP and
//! TCP. It answers the names of the network's containers from a table the apiserver
//! replaces whole ([`NetworkRequest::Names`]), and forwards every other name to the
//! host's resolvers. It lives in the network helper because the helper owns the
//! network: the server comes up with the network's set-up and dies with the helper.
//!
//! Floods and garbage cost one parse each: a packet that doesn't parse is dropped,
//! forwards in flight and TCP connections are bounded (past the bound a forward is
//! answered SERVFAIL and a connection closed at once), and a TCP client gets a deadline
//! for each message, so no sender holds the server from the others.
//!
//! [`NetworkRequest::Names`]: container_protocol::network::NetworkRequest::Names

pub mod answer;
mod fast;
pub mod table;
pub mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub use answer::{answer, Scope, Verdict};
pub use table::Table;
use upstream::Upstreams;

pub const PORT: u16 = 53;
/// Forwards waiting for an upstream answer at once.
const MAX_FORWARDS: usize = 256;
/// TCP clients at once.
const MAX_TCP: usize = 64;
/// What a TCP client may take to send one message.
const TCP_IDLE: Duration = Duration::from_secs(10);

struct Shared {
    /// The helper's table of names, which it keeps true whether or not a server runs.
    table: Arc<RwLock<Table>>,
    subnets: Vec<IpNet>,
    forward: bool,
    upstreams: Upstreams,
    forwards: Semaphore,
    tcp: Arc<Semaphore>,
}

impl Shared {
    fn verdict(&self, packet: &[u8], source: IpAddr, udp: bool) -> Verdict {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let scope = Scope {
            subnets: &self.subnets,
            forward: self.forward,
        };
        answer(packet, unmapped(source), &table, &scope, udp)
    }

    /// The upstream answer, or SERVFAIL when none came (or too many are waiting).
    async fn forward(&self, packet: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let reply = match self.forwards.try_acquire() {
            Ok(_permit) => self.upstreams.exchange(packet, tcp).await,
            Err(_) => None,
        };
        reply.or_else(|| servfail(packet))
    }
}

fn servfail(packet: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(packet).ok()?;
    let mut out = query.clone();
    out.take_answers();
    out.set_message_type(hickory_proto::op::MessageType::Response)
        .set_recursion_available(true)
        .set_response_code(ResponseCode::ServFail);
    out.to_vec().ok()
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A running server: dropping it stops every task and closes its sockets.
pub struct DnsServer {
    tasks: Vec<JoinHandle<()>>,
    pub addresses: Vec<SocketAddr>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl DnsServer {
    /// Binds `addrs` on `port` (UDP and TCP). Bound with IP_FREEBIND, so a gateway
    /// address that is still tentative (IPv6 DAD) does not fail the bind.
    pub fn start(
        addrs: &[IpAddr],
        port: u16,
        subnets: Vec<IpNet>,
        forward: bool,
        table: Arc<RwLock<Table>>,
    ) -> std::io::Result<DnsServer> {
        let shared = Arc::new(Shared {
            table,
            subnets,
            forward,
            upstreams: Upstreams::new(addrs.to_vec()),
            forwards: Semaphore::new(MAX_FORWARDS),
            tcp: Arc::new(Semaphore::new(MAX_TCP)),
        });
        let mut server = DnsServer {
            tasks: Vec::new(),
            addresses: Vec::new(),
        };
        for ip in addrs {
            let addr = SocketAddr::new(*ip, port);
            let udp = UdpSocket::from_std(bind(addr, socket2::Type::DGRAM)?.into())?;
            let tcp = bind(addr, socket2::Type::STREAM)?;
            tcp.listen(128)?;
            let tcp = TcpListener::from_std(tcp.into())?;
            server.addresses.push(udp.local_addr()?);
            server
                .tasks
                .push(tokio::spawn(serve_udp(shared.clone(), udp)));
            server
                .tasks
                .push(tokio::spawn(serve_tcp(shared.clone(), tcp)));
        }
        Ok(server)
    }
}

fn bind(addr: SocketAddr, ty: socket2::Type) -> std::io::Result<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), ty, None)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
        s.set_freebind_v6(true)?;
    } else {
        s.set_freebind_v4(true)?;
    }
    if ty == socket2::Type::STREAM {
        // A restarted helper binds again while the old one's connections linger.
        s.set_reuse_address(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

async fn serve_udp(shared: Arc<Shared>, sock: UdpSocket) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors of earlier sends surface here; the socket is still good.
                tracing::debug!("dns: udp receive: {e}");
                continue;
            }
        };
        let packet = &buf[..n];
        match shared.verdict(packet, from.ip(), true) {
            Verdict::Reply(bytes) => {
                let _ = sock.send_to(&bytes, from).await;
            }
            Verdict::Forward => {
                let (shared, sock, packet) = (shared.clone(), sock.clone(), packet.to_vec());
                tokio::spawn(async move {
                    if let Some(bytes) = shared.forward(&packet, false).await {
                        let _ = sock.send_to(&bytes, from).await;
                    }
                });
            }
            Verdict::Drop => {}
        }
    }
}

async fn serve_tcp(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            // Out of descriptors, most likely: give the others a moment to finish.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = shared.tcp.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp_client(&shared, stream, from.ip()).await;
        });
    }
}

async fn tcp_client(shared: &Shared, mut s: TcpStream, from: IpAddr) -> std::io::Result<()> {
    loop {
        let message = async {
            let n = s.read_u16().await?;
            let mut buf = vec![0u8; n as usize];
            s.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let Ok(packet) = tokio::time::timeout(TCP_IDLE, message).await else {
            return Ok(());
        };
        let packet = packet?;
        let bytes = match shared.verdict(&packet, from, false) {
            Verdict::Reply(b) => b,
            Verdict::Forward => match shared.forward(&packet, true).await {
                Some(b) => b,
                None => return Ok(()),
            },
            Verdict::Drop => return Ok(()),
        };
        let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
        s.write_all(&len.to_be_bytes()).await?;
        s.write_all(&bytes).await?;
    }
}
