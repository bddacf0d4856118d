//! Real packets through the rules: a "container" namespace behind a bridge and an
//! "outside" namespace behind a routed veth, both created by the test inside its own
//! private namespace. No traffic ever leaves namespaces the test made.
//!
//! ```text
//!  ctr netns              test netns ("host")                outside netns
//!  vc0 10.99.0.2/24 ── vh0 ─ br-t 10.99.0.1/24               
//!                                   vh1 192.0.2.1/24 ── ve1 192.0.2.2/24
//! ```
//!
//! The outside namespace has a route back to 10.99.0.0/24, so a connection that
//! succeeds without masquerade would show the container address: masquerade is proven
//! by the peer address, and drops by failed connects rather than by missing routes.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use container_firewall::{PortForward, Protocol};

type Job = Box<dyn FnOnce() + Send>;

/// A thread living in a fresh network namespace; closures run there, and so do the
/// processes and sockets they create.
struct Netns {
    jobs: Option<mpsc::Sender<Job>>,
    path: String,
    thread: Option<thread::JoinHandle<()>>,
}

impl Netns {
    fn new() -> Netns {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (path_tx, path_rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare netns");
            let path = format!(
                "/proc/{}/task/{}/ns/net",
                nix::unistd::getpid(),
                nix::unistd::gettid()
            );
            path_tx.send(path).expect("send path");
            for job in rx {
                job();
            }
        });
        let path = path_rx.recv().expect("netns thread started");
        Netns {
            jobs: Some(jobs),
            path,
            thread: Some(thread),
        }
    }

    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs
            .as_ref()
            .expect("netns alive")
            .send(job)
            .expect("netns thread alive");
        rx.recv().expect("netns job finished")
    }

    fn ip(&self, args: &'static [&'static str]) {
        self.run(move || ip(args));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sysctl(path: &str, value: &str) {
    std::fs::write(format!("/proc/sys/{path}"), value).unwrap_or_else(|e| panic!("{path}: {e}"));
}

struct Topology {
    ctr: Netns,
    outside: Netns,
}

fn topology() -> Topology {
    let ctr = Netns::new();
    let outside = Netns::new();
    ip(&["link", "add", "br-t", "type", "bridge"]);
    ip(&["addr", "add", "10.99.0.1/24", "dev", "br-t"]);
    ip(&["link", "set", "br-t", "up"]);
    ip(&["link", "add", "vh0", "type", "veth", "peer", "name", "vc0"]);
    ip(&["link", "set", "vh0", "master", "br-t", "up"]);
    ip(&["link", "set", "vc0", "netns", &ctr.path]);
    ip(&["link", "add", "vh1", "type", "veth", "peer", "name", "ve1"]);
    ip(&["addr", "add", "192.0.2.1/24", "dev", "vh1"]);
    ip(&["link", "set", "vh1", "up"]);
    ip(&["link", "set", "ve1", "netns", &outside.path]);
    sysctl("net/ipv4/ip_forward", "1");
    // Lets output-DNAT to 127.0.0.1 be routed to the bridge; the bridge plugin's job.
    sysctl("net/ipv4/conf/br-t/route_localnet", "1");

    ctr.ip(&["link", "set", "lo", "up"]);
    ctr.ip(&["addr", "add", "10.99.0.2/24", "dev", "vc0"]);
    ctr.ip(&["link", "set", "vc0", "up"]);
    ctr.ip(&["route", "add", "default", "via", "10.99.0.1"]);
    outside.ip(&["link", "set", "lo", "up"]);
    outside.ip(&["addr", "add", "192.0.2.2/24", "dev", "ve1"]);
    outside.ip(&["link", "set", "ve1", "up"]);
    outside.ip(&["route", "add", "10.99.0.0/24", "via", "192.0.2.1"]);
    Topology { ctr, outside }
}

fn listen(ns: &Netns, addr: &'static str) -> TcpListener {
    ns.run(move || TcpListener::bind(addr).expect("bind"))
}

fn connect(ns: &Netns, addr: &'static str) -> std::io::Result<TcpStream> {
    let addr: SocketAddr = addr.parse().expect("addr");
    ns.run(move || TcpStream::connect_timeout(&addr, Duration::from_millis(1500)))
}

/// The address the listener saw the connection come from.
fn peer_of(listener: &TcpListener) -> std::net::IpAddr {
    let (_stream, peer) = listener.accept().expect("accept");
    peer.ip()
}

#[test]
fn egress_is_masqueraded_and_published_ports_reach_the_container() {
    let _ns = container_testkit::isolate().expect("isolate");
    let net = topology();
    let fw = firewall("traffic");
    fw.setup_network(&network("n1", "br-t", &["10.99.0.0/24"], false))
        .expect("setup");

    // Egress: the outside sees the host's address, not the container's.
    let out = listen(&net.outside, "192.0.2.2:9000");
    connect(&net.ctr, "192.0.2.2:9000").expect("container reaches outside");
    assert_eq!(
        peer_of(&out),
        "192.0.2.1".parse::<std::net::IpAddr>().unwrap()
    );

    // Unsolicited inbound to the container address is dropped even though routable.
    let svc = listen(&net.ctr, "10.99.0.2:80");
    assert!(connect(&net.outside, "10.99.0.2:80").is_err());

    fw.add_port_forwards(
        "n1",
        "c1",
        &[PortForward {
            host_ip: None,
            host_port: 8080,
            container_ip: "10.99.0.2".parse().unwrap(),
            container_port: 80,
            protocol: Protocol::Tcp,
        }],
    )
    .expect("port forward");
    // From outside through prerouting: the client keeps its own address.
    connect(&net.outside, "192.0.2.1:8080").expect("published port from outside");
    assert_eq!(
        peer_of(&svc),
        "192.0.2.2".parse::<std::net::IpAddr>().unwrap()
    );
    // From the host itself through output, on loopback and on a host address.
    TcpStream::connect_timeout(
        &"127.0.0.1:8080".parse().unwrap(),
        Duration::from_millis(1500),
    )
    .expect("published port on localhost");
    let _ = peer_of(&svc);
    TcpStream::connect_timeout(
        &"192.0.2.1:8080".parse().unwrap(),
        Duration::from_millis(1500),
    )
    .expect("published port on host address");
    let _ = peer_of(&svc);

    fw.remove_port_forwards("n1", "c1").expect("remove");
    assert!(connect(&net.outside, "192.0.2.1:8080").is_err());

    // Internal: the same container can no longer get out.
    fw.setup_network(&network("n1", "br-t", &["10.99.0.0/24"], true))
        .expect("setup internal");
    assert!(connect(&net.ctr, "192.0.2.2:9000").is_err());

    // Torn down: nothing of ours is in the path; the outside's return route makes the
    // connection work again, unmasqueraded.
    fw.teardown_network("n1").expect("teardown");
    connect(&net.ctr, "192.0.2.2:9000").expect("plain routing after teardown");
    assert_eq!(
        peer_of(&out),
        "10.99.0.2".parse::<std::net::IpAddr>().unwrap()
    );
}

#[test]
fn traffic_between_project_bridges_is_dropped() {
    let _ns = container_testkit::isolate().expect("isolate");
    let net = topology();
    let fw = firewall("traffic-iso");
    fw.setup_network(&network("a", "br-t", &["10.99.0.0/24"], false))
        .expect("setup a");
    fw.add_port_forwards(
        "a",
        "c1",
        &[PortForward {
            host_ip: None,
            host_port: 8080,
            container_ip: "10.99.0.2".parse().unwrap(),
            container_port: 80,
            protocol: Protocol::Tcp,
        }],
    )
    .expect("port forward");
    let out = listen(&net.outside, "192.0.2.2:9000");
    let svc = listen(&net.ctr, "10.99.0.2:80");
    connect(&net.ctr, "192.0.2.2:9000").expect("a -> outside before b exists");
    let _ = peer_of(&out);
    connect(&net.outside, "192.0.2.1:8080").expect("published port before b exists");
    let _ = peer_of(&svc);

    // vh1 stands in for network b's bridge: the forward hook only sees interface
    // names, so it now sits between two project bridges.
    fw.setup_network(&network("b", "vh1", &["192.0.2.0/24"], false))
        .expect("setup b");
    assert!(
        connect(&net.ctr, "192.0.2.2:9000").is_err(),
        "a -> b must be dropped"
    );
    // Even DNAT-approved traffic: b's isolation rule runs before a's accept.
    assert!(
        connect(&net.outside, "192.0.2.1:8080").is_err(),
        "b -> a must be dropped"
    );

    fw.teardown_network("b").expect("teardown b");
    connect(&net.ctr, "192.0.2.2:9000").expect("a -> outside after b is gone");
    let _ = peer_of(&out);
    connect(&net.outside, "192.0.2.1:8080").expect("published port after b is gone");
    let _ = peer_of(&svc);
}

/// The link's MAC as `ip -j link` reports it, in the calling thread's namespace.
fn mac_of(link: &str) -> [u8; 6] {
    let out = Command::new("ip")
        .args(["-j", "link", "show", link])
        .output()
        .expect("ip");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
    let text = v[0]["address"].as_str().expect("address");
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16).expect("hex");
    }
    mac
}

fn ifindex(link: &str) -> i32 {
    let name = std::ffi::CString::new(link).expect("name");
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "no link {link}");
    index as i32
}

/// One IPv4/UDP datagram from 10.99.0.2 to 127.0.0.1:`port`, written on a packet
/// socket straight to `dst_mac` out of `link`: what a container with NET_RAW can do
/// whatever its routes say. The UDP checksum is left 0 (none), as IPv4 allows.
fn raw_udp_to_loopback(link: &str, dst_mac: [u8; 6], port: u16, payload: &[u8]) {
    let mut pkt = vec![0u8; 28];
    let total = (pkt.len() + payload.len()) as u16;
    pkt[0] = 0x45;
    pkt[2..4].copy_from_slice(&total.to_be_bytes());
    pkt[8] = 64;
    pkt[9] = 17;
    pkt[12..16].copy_from_slice(&[10, 99, 0, 2]);
    pkt[16..20].copy_from_slice(&[127, 0, 0, 1]);
    let mut sum: u32 = pkt[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    pkt[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    pkt[20..22].copy_from_slice(&40000u16.to_be_bytes());
    pkt[22..24].copy_from_slice(&port.to_be_bytes());
    pkt[24..26].copy_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    pkt.extend_from_slice(payload);

    let proto = (libc::ETH_P_IP as u16).to_be();
    // SAFETY: plain syscalls on a socket this function owns; the address is a fully
    // initialised sockaddr_ll of the size passed.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(proto));
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = ifindex(link);
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&dst_mac);
        let sent = libc::sendto(
            fd,
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(sent as usize, pkt.len(), "sendto: {err}");
    }
}

/// Issue 19.9 (CVE-2020-8558's class): a container must not reach a service the host
/// bound to 127.0.0.1 only, neither by routing 127.0.0.1 via its gateway nor with a
/// crafted packet; a port published on 127.0.0.1 still answers the host.
#[test]
fn containers_cannot_reach_the_hosts_loopback_only_services() {
    let _ns = container_testkit::isolate().expect("isolate");
    let net = topology();
    let fw = firewall("traffic-lo");
    fw.setup_network(&network("n1", "br-t", &["10.99.0.0/24"], false))
        .expect("setup");

    // The host's loopback-only services.
    let tcp = TcpListener::bind("127.0.0.1:9999").expect("bind tcp");
    tcp.set_nonblocking(true).expect("nonblocking");
    let udp = std::net::UdpSocket::bind("127.0.0.1:9998").expect("bind udp");
    udp.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");

    // A container that routes 127.0.0.1 via its gateway: its own loopback route goes,
    // and it accepts 127/8 on its interface, as a hostile workload can arrange.
    net.ctr.ip(&[
        "route",
        "del",
        "local",
        "127.0.0.1",
        "dev",
        "lo",
        "table",
        "local",
    ]);
    net.ctr.ip(&[
        "route",
        "del",
        "local",
        "127.0.0.0/8",
        "dev",
        "lo",
        "table",
        "local",
    ]);
    net.ctr.ip(&[
        "route",
        "add",
        "127.0.0.1/32",
        "via",
        "10.99.0.1",
        "dev",
        "vc0",
    ]);
    net.ctr
        .run(|| sysctl("net/ipv4/conf/vc0/route_localnet", "1"));
    net.ctr
        .run(|| sysctl("net/ipv4/conf/all/route_localnet", "1"));
    assert!(
        connect(&net.ctr, "127.0.0.1:9999").is_err(),
        "a routed connection reached the host's 127.0.0.1"
    );
    assert!(tcp.accept().is_err(), "nothing was accepted");
    net.ctr.run(|| {
        let sock = std::net::UdpSocket::bind("10.99.0.2:0").expect("bind");
        sock.send_to(b"routed", "127.0.0.1:9998").expect("send");
    });
    let mut buf = [0u8; 16];
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "a routed datagram reached the host's 127.0.0.1"
    );

    // A raw packet straight to the bridge's MAC.
    let bridge_mac = mac_of("br-t");
    net.ctr
        .run(move || raw_udp_to_loopback("vc0", bridge_mac, 9998, b"hello"));
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "a crafted packet reached the host's 127.0.0.1"
    );

    // Published on 127.0.0.1: the host's own client still gets the container's answer.
    let svc = listen(&net.ctr, "10.99.0.2:80");
    fw.add_port_forwards(
        "n1",
        "c1",
        &[PortForward {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: 8080,
            container_ip: "10.99.0.2".parse().unwrap(),
            container_port: 80,
            protocol: Protocol::Tcp,
        }],
    )
    .expect("port forward");
    let answer = thread::spawn(move || {
        use std::io::Write;
        let (mut stream, _) = svc.accept().expect("accept");
        stream.write_all(b"pong").expect("write");
    });
    let mut client = TcpStream::connect_timeout(
        &"127.0.0.1:8080".parse().unwrap(),
        Duration::from_millis(1500),
    )
    .expect("published port on 127.0.0.1");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut got = String::new();
    std::io::Read::read_to_string(&mut client, &mut got).expect("read the answer");
    assert_eq!(got, "pong");
    answer.join().expect("server");
}
