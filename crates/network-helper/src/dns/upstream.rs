//! The host's resolvers, for names that are not the network's. Read from the host's
//! resolv.conf and read again whenever that file changes (its identity, size or
//! modification time), so an edit or a new DHCP lease takes effect without a restart.
//! The helper forwards from the host, so a loopback stub (systemd-resolved's
//! 127.0.0.53) is reachable from here even though a container could not reach it.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// How long one upstream server gets before the next is tried.
const PER_SERVER: Duration = Duration::from_secs(2);

/// What identifies one version of the file: inode, size, mtime (s, ns).
type Stamp = (u64, u64, i64, i64);

pub struct Upstreams {
    path: PathBuf,
    /// Our own listening addresses: never forward to ourselves.
    own: Vec<IpAddr>,
    cached: Mutex<(Option<Stamp>, Vec<IpAddr>)>,
}

impl Upstreams {
    pub fn new(own: Vec<IpAddr>) -> Upstreams {
        Upstreams {
            path: PathBuf::from(HOST_RESOLV_CONF),
            own,
            cached: Mutex::new((None, Vec::new())),
        }
    }

    /// The servers now, re-read if the file changed since the last look.
    pub fn servers(&self) -> Vec<IpAddr> {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if cached.0 != stamp || stamp.is_none() {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            let servers = parse(&text)
                .into_iter()
                .filter(|ip| !self.own.contains(ip))
                .collect();
            *cached = (stamp, servers);
        }
        cached.1.clone()
    }

    /// Asks each server in turn; the first answer whose id matches the query's wins.
    pub async fn exchange(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let id = query.get(..2)?;
        for server in self.servers() {
            let addr = SocketAddr::new(server, 53);
            let once = async {
                if tcp {
                    tcp_exchange(addr, query).await
                } else {
                    udp_exchange(addr, query).await
                }
            };
            if let Ok(Ok(reply)) = tokio::time::timeout(PER_SERVER, once).await {
                if reply.get(..2) == Some(id) {
                    return Some(reply);
                }
            }
        }
        None
    }
}

/// `nameserver` lines, in order; anything unparsable is skipped.
pub fn parse(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then_some(())?;
            // A scoped address (fe80::1%eth0) names an interface we cannot use here.
            w.next()?.parse().ok()
        })
        .collect()
}

async fn udp_exchange(addr: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = UdpSocket::bind(local).await?;
    // Connected: the kernel drops datagrams from anyone but the server.
    sock.connect(addr).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    let n = sock.recv(&mut buf).await?;
    buf.truncate(n);
    Ok(buf)
}

async fn tcp_exchange(addr: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(query).await?;
    let n = s.read_u16().await?;
    let mut buf = vec![0u8; n as usize];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn nameserver_lines_in_order() {
        let text = "# x\nnameserver 127.0.0.53\nsearch lan\nnameserver fd00::1\nnameserver bogus\nnameserver fe80::1%eth0\n";
        let got: Vec<String> = super::parse(text).iter().map(|i| i.to_string()).collect();
        assert_eq!(got, ["127.0.0.53", "fd00::1"]);
    }
}
