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
