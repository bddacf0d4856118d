//! Interface strategies against the real kernel, inside a private network namespace per
//! test (the test's "host") with bound namespaces standing in for containers.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use container_netlink::{with_netns, IpFamily, NetNs, Netlink};
use container_protocol::network::{Allocation, MacvlanMode, PluginData, PluginKind, RouteSpec};
use container_sandbox_helper::interfaces::{self, veth_host_name, InterfaceError};
use ipnet::IpNet;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A container namespace, unmounted when the test ends (also by a panic) so the temp
/// tree holds no mount point.
struct BoundNs {
    ns: NetNs,
    path: PathBuf,
}

impl BoundNs {
    fn new(iso: &container_testkit::Isolated, name: &str) -> BoundNs {
        let path = iso.run_dir().join("netns").join(name);
        let ns = NetNs::create_bound(&path).expect("create container netns");
        BoundNs { ns, path }
    }
}

impl Drop for BoundNs {
    fn drop(&mut self) {
        let _ = NetNs::remove_bound(&self.path);
    }
}

/// A container: its namespace and a netlink connection acting inside it.
struct Container {
    bound: BoundNs,
    nl: Netlink,
}

fn container(iso: &container_testkit::Isolated, name: &str) -> Container {
    let bound = BoundNs::new(iso, name);
    let nl = Netlink::connect_in(&bound.ns).unwrap();
    Container { bound, nl }
}

const MAC1: [u8; 6] = [0x02, 0x42, 0x0a, 0x58, 0x00, 0x02];

fn bridge_alloc(network: &str, container_id: &str, ifname: &str, bridge: &str) -> Allocation {
    Allocation {
        network: network.into(),
        container_id: container_id.into(),
        ifname: ifname.into(),
        addresses: vec![net("10.88.0.2/24")],
        gateways: vec![ip("10.88.0.1")],
        routes: vec![RouteSpec {
            dest: net("0.0.0.0/0"),
            gateway: Some(ip("10.88.0.1")),
        }],
        mac: Some(MAC1),
        mtu: Some(1400),
        dns: vec![],
        data: PluginData::Bridge {
            bridge: bridge.into(),
        },
    }
}

/// A bridge in the test's host namespace holding the gateway address, up.
async fn make_bridge(host: &Netlink, name: &str, gateway: &str) -> u32 {
    let idx = host.create_bridge(name, None).await.unwrap();
    host.add_address(idx, net(gateway)).await.unwrap();
    host.set_up(idx).await.unwrap();
    idx
}

/// Listens on `addr` (inside `ns` when given) and echoes one line of one connection.
/// Gives up after a while so a broken path fails the test instead of hanging it.
fn echo_server(ns: Option<&NetNs>, addr: SocketAddr) -> JoinHandle<()> {
    let bind = || TcpListener::bind(addr);
    let listener = match ns {
        Some(ns) => with_netns(ns, bind).unwrap(),
        None => bind(),
    }
    .unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    let mut line = String::new();
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    if reader.read_line(&mut line).is_ok() {
                        let _ = (&stream).write_all(line.as_bytes());
                    }
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    })
}

/// Connects from inside `ns` to `addr`, sends a line and returns the echo.
fn echo_from(ns: &NetNs, addr: SocketAddr) -> std::io::Result<String> {
    with_netns(ns, || -> std::io::Result<String> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        (&stream).write_all(b"hello\n")?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line)
    })
    .unwrap()
}

#[test]
fn bridge_interface_is_configured_and_reaches_the_gateway() {
    let iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let host = Netlink::connect().unwrap();
        let br = make_bridge(&host, "cbr-n1", "10.88.0.1/24").await;
        let c1 = container(&iso, "c1");
        interfaces::loopback_up(&c1.nl).await.unwrap();

        let alloc = bridge_alloc("n1", "c1", "eth0", "cbr-n1");
        let report = interfaces::realize(&host, &c1.bound.ns, &c1.nl, &alloc, true)
            .await
            .unwrap();
        let host_name = veth_host_name("c1", "eth0");
        assert_eq!(report.network, "n1");
        assert_eq!(report.plugin, PluginKind::Bridge);
        assert_eq!(report.ifname, "eth0");
        assert_eq!(report.host_ifname.as_deref(), Some(host_name.as_str()));
        assert_eq!(report.mac, Some(MAC1));
        assert_eq!(report.addresses, vec![net("10.88.0.2/24")]);

        // Inside: the peer, named, with MAC, MTU, address, up, default route.
        let eth0 = c1.nl.link_by_name("eth0").await.unwrap().unwrap();
        assert_eq!(eth0.mac, Some(MAC1));
        assert_eq!(eth0.mtu, 1400);
        assert!(eth0.up);
        let addrs = c1.nl.addresses(eth0.index).await.unwrap();
        assert!(addrs.iter().any(|a| a.address == net("10.88.0.2/24")));
        let routes = c1.nl.routes(IpFamily::V4).await.unwrap();
        let default = routes
            .iter()
            .find(|r| r.dest == net("0.0.0.0/0"))
            .expect("default route");
        assert_eq!(default.gateway, Some(ip("10.88.0.1")));
        assert_eq!(default.oif, Some(eth0.index));
        let lo = c1.nl.link_by_name("lo").await.unwrap().unwrap();
        assert!(lo.up);

        // Host end: on the bridge, same MTU, up; the peer never appeared here.
        let host_end = host.link_by_name(&host_name).await.unwrap().unwrap();
        assert_eq!(host_end.master, Some(br));
        assert_eq!(host_end.mtu, 1400);
        assert!(host_end.up);
        assert!(host.link_by_name("eth0").await.unwrap().is_none());

        // Traffic: container to a listener on the gateway address in the host namespace.
        let gw: SocketAddr = "10.88.0.1:7001".parse().unwrap();
        let server = echo_server(None, gw);
        assert_eq!(echo_from(&c1.bound.ns, gw).unwrap(), "hello\n");
        server.join().unwrap();

        // remove: the host end (and with it the peer) goes; twice is fine.
        interfaces::remove(&host, &report).await.unwrap();
        assert!(host.link_by_name(&host_name).await.unwrap().is_none());
        assert!(c1.nl.link_by_name("eth0").await.unwrap().is_none());
        interfaces::remove(&host, &report).await.unwrap();
    });
}

#[test]
fn two_containers_on_one_bridge_reach_each_other() {
    let iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let host = Netlink::connect().unwrap();
        make_bridge(&host, "cbr-n1", "10.88.0.1/24").await;
        let c1 = container(&iso, "c1");
        let c2 = container(&iso, "c2");
        interfaces::loopback_up(&c1.nl).await.unwrap();
        interfaces::loopback_up(&c2.nl).await.unwrap();

        let a1 = bridge_alloc("n1", "c1", "eth0", "cbr-n1");
        let mut a2 = bridge_alloc("n1", "c2", "eth0", "cbr-n1");
        a2.addresses = vec![net("10.88.0.3/24")];
        a2.mac = None;
        let r1 = interfaces::realize(&host, &c1.bound.ns, &c1.nl, &a1, true)
            .await
            .unwrap();
        let r2 = interfaces::realize(&host, &c2.bound.ns, &c2.nl, &a2, true)
            .await
            .unwrap();
        assert_ne!(r1.host_ifname, r2.host_ifname);
        // Without a MAC in the allocation the kernel picks one; the report says which.
        let eth0 = c2.nl.link_by_name("eth0").await.unwrap().unwrap();
        assert_eq!(r2.mac, eth0.mac);
        assert!(r2.mac.is_some());

        let peer: SocketAddr = "10.88.0.3:7002".parse().unwrap();
        let server = echo_server(Some(&c2.bound.ns), peer);
        assert_eq!(echo_from(&c1.bound.ns, peer).unwrap(), "hello\n");
        server.join().unwrap();

        interfaces::remove(&host, &r1).await.unwrap();
        interfaces::remove(&host, &r2).await.unwrap();
        let left: Vec<String> = host
            .links()
            .await
            .unwrap()
            .into_iter()
            .filter(|l| l.name.starts_with("veth"))
            .map(|l| l.name)
            .collect();
        assert!(left.is_empty(), "{left:?}");
    });
}

#[test]
fn second_attachment_keeps_the_first_default_route() {
    let iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let host = Netlink::connect().unwrap();
        make_bridge(&host, "cbr-n1", "10.88.0.1/24").await;
        make_bridge(&host, "cbr-n2", "10.89.0.1/24").await;
        let c1 = container(&iso, "c1");

        let first = bridge_alloc("n1", "c1", "eth0", "cbr-n1");
        let mut second = bridge_alloc("n2", "c1", "eth1", "cbr-n2");
        second.addresses = vec![net("10.89.0.2/24")];
        second.gateways = vec![ip("10.89.0.1")];
        second.routes = vec![
            RouteSpec {
                dest: net("0.0.0.0/0"),
                gateway: Some(ip("10.89.0.1")),
            },
            RouteSpec {
                dest: net("172.30.0.0/16"),
                gateway: Some(ip("10.89.0.1")),
            },
        ];
        second.mac = None;
        let r1 = interfaces::realize(&host, &c1.bound.ns, &c1.nl, &first, true)
            .await
            .unwrap();
        let r2 = interfaces::realize(&host, &c1.bound.ns, &c1.nl, &second, false)
            .await
            .unwrap();
        assert_ne!(r1.host_ifname, r2.host_ifname);

        let routes = c1.nl.routes(IpFamily::V4).await.unwrap();
        let defaults: Vec<_> = routes
            .iter()
            .filter(|r| r.dest == net("0.0.0.0/0"))
            .collect();
        assert_eq!(defaults.len(), 1, "{routes:?}");
        assert_eq!(defaults[0].gateway, Some(ip("10.88.0.1")));
        let eth1 = c1.nl.link_by_name("eth1").await.unwrap().unwrap();
        assert!(routes.iter().any(|r| r.dest == net("172.30.0.0/16")
            && r.gateway == Some(ip("10.89.0.1"))
            && r.oif == Some(eth1.index)));

        // The first network still carries traffic.
        let gw: SocketAddr = "10.88.0.1:7003".parse().unwrap();
        let server = echo_server(None, gw);
        assert_eq!(echo_from(&c1.bound.ns, gw).unwrap(), "hello\n");
        server.join().unwrap();

        // A gateway-only allocation (no routes listed) still gets its default route.
        let c2 = container(&iso, "c2");
        let mut bare = bridge_alloc("n1", "c2", "eth0", "cbr-n1");
        bare.addresses = vec![net("10.88.0.9/24")];
        bare.routes = vec![];
        bare.mac = None;
        interfaces::realize(&host, &c2.bound.ns, &c2.nl, &bare, true)
            .await
            .unwrap();
        let routes = c2.nl.routes(IpFamily::V4).await.unwrap();
        assert!(routes
            .iter()
            .any(|r| r.dest == net("0.0.0.0/0") && r.gateway == Some(ip("10.88.0.1"))));
    });
}

#[test]
fn macvlan_on_a_veth_parent() {
    let iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let host = Netlink::connect().unwrap();
        // A veth pair stands in for the host NIC: par0 is the parent, par1 the "wire".
        let here = NetNs::current().unwrap();
        let par0 = host
            .create_veth("par0", "par1", &here, None, None)
            .await
            .unwrap();
        let par1 = host.link_by_name("par1").await.unwrap().unwrap().index;
        host.add_address(par1, net("10.90.0.1/24")).await.unwrap();
        host.set_up(par0).await.unwrap();
        host.set_up(par1).await.unwrap();

        let c1 = container(&iso, "c1");
        interfaces::loopback_up(&c1.nl).await.unwrap();
        let alloc = Allocation {
            network: "mv".into(),
            container_id: "c1".into(),
            ifname: "eth0".into(),
            addresses: vec![net("10.90.0.2/24")],
            gateways: vec![ip("10.90.0.1")],
            routes: vec![RouteSpec {
                dest: net("0.0.0.0/0"),
                gateway: Some(ip("10.90.0.1")),
            }],
            mac: Some(MAC1),
            mtu: Some(1400),
            dns: vec![],
            data: PluginData::Macvlan {
                parent: "par0".into(),
                mode: MacvlanMode::Bridge,
            },
        };
        let report = interfaces::realize(&host, &c1.bound.ns, &c1.nl, &alloc, true)
            .await
            .unwrap();
        assert_eq!(report.host_ifname, None);
        assert_eq!(report.mac, Some(MAC1));

        let eth0 = c1.nl.link_by_name("eth0").await.unwrap().unwrap();
        assert_eq!(eth0.kind.as_deref(), Some("macvlan"));
        assert_eq!(eth0.mac, Some(MAC1));
        assert_eq!(eth0.mtu, 1400);
        assert!(eth0.up);
        let addrs = c1.nl.addresses(eth0.index).await.unwrap();
        assert!(addrs.iter().any(|a| a.address == net("10.90.0.2/24")));
        // Born inside: never a macvlan in the host namespace.
        let host_links = host.links().await.unwrap();
        assert!(!host_links
            .iter()
            .any(|l| l.kind.as_deref() == Some("macvlan")));

        let addr: SocketAddr = "10.90.0.1:7004".parse().unwrap();
        let server = echo_server(None, addr);
        assert_eq!(echo_from(&c1.bound.ns, addr).unwrap(), "hello\n");
        server.join().unwrap();

        // Nothing on the host side to remove.
        interfaces::remove(&host, &report).await.unwrap();

        // A missing parent is refused with nothing made. (An unknown mode cannot be
        // sent: `MacvlanMode` has only the kernel's.)
        let mut bad = alloc.clone();
        bad.ifname = "eth1".into();
        bad.data = PluginData::Macvlan {
            parent: "nope0".into(),
            mode: MacvlanMode::Bridge,
        };
        let err = interfaces::realize(&host, &c1.bound.ns, &c1.nl, &bad, false)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "network mv: eth1: parent link nope0 not found in the host namespace"
        );
        assert!(c1.nl.link_by_name("eth1").await.unwrap().is_none());
    });
}

#[test]
fn none_brings_up_loopback_only() {
    let iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let host = Netlink::connect().unwrap();
        let c1 = container(&iso, "c1");
        let alloc = Allocation {
            network: "none".into(),
            container_id: "c1".into(),
            ifname: "eth0".into(),
            addresses: vec![],
            gateways: vec![],
            routes: vec![],
            mac: None,
            mtu: None,
            dns: vec![],
            data: PluginData::None,
        };
        let report = interfaces::realize(&host, &c1.bound.ns, &c1.nl, &alloc, true)
            .await
            .unwrap();
        assert_eq!(report.host_ifname, None);
        assert_eq!(report.mac, None);
        assert!(report.addresses.is_empty());
        let links = c1.nl.links().await.unwrap();
        assert_eq!(links.len(), 1, "{links:?}");
        assert_eq!(links[0].name, "lo");
        assert!(links[0].up);
        interfaces::remove(&host, &report).await.unwrap();
    });
}

#[test]
fn cni_reads_back_the_interface_the_plugins_built() {
    let iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let host = Netlink::connect().unwrap();
        let c1 = container(&iso, "c1");
        // What a CNI bridge plugin would have left: a veth peer inside, addressed.
        host.create_veth("cni-host0", "eth0", &c1.bound.ns, None, Some(MAC1))
            .await
            .unwrap();
        let eth0 = c1.nl.link_by_name("eth0").await.unwrap().unwrap();
        c1.nl
            .add_address(eth0.index, net("10.22.0.5/16"))
            .await
            .unwrap();
        c1.nl.set_up(eth0.index).await.unwrap();

        let mut alloc = bridge_alloc("cn", "c1", "eth0", "unused");
        alloc.data = PluginData::Cni {
            result: "{}".into(),
        };
        let report = interfaces::realize(&host, &c1.bound.ns, &c1.nl, &alloc, true)
            .await
            .unwrap();
        assert_eq!(report.plugin, PluginKind::Cni);
        assert_eq!(report.host_ifname, None);
        assert_eq!(report.mac, Some(MAC1));
        assert_eq!(report.addresses, vec![net("10.22.0.5/16")]);

        alloc.ifname = "eth7".into();
        let err = interfaces::realize(&host, &c1.bound.ns, &c1.nl, &alloc, true)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "network cn: eth7: the CNI plugins did not create it in the container namespace"
        );
    });
}

#[test]
fn a_failure_half_way_removes_what_was_made() {
    let iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let host = Netlink::connect().unwrap();
        let br = make_bridge(&host, "cbr-n1", "10.88.0.1/24").await;
        let c1 = container(&iso, "c1");

        // The second address add fails: the veth made before it must go.
        let mut alloc = bridge_alloc("n1", "c1", "eth0", "cbr-n1");
        alloc.addresses = vec![net("10.88.0.2/24"), net("10.88.0.2/24")];
        let err = interfaces::realize(&host, &c1.bound.ns, &c1.nl, &alloc, true)
            .await
            .unwrap_err();
        assert!(matches!(err, InterfaceError::Step { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "network n1: eth0: add address 10.88.0.2/24: File exists"
        );
        assert!(host
            .link_by_name(&veth_host_name("c1", "eth0"))
            .await
            .unwrap()
            .is_none());
        assert!(host
            .links()
            .await
            .unwrap()
            .iter()
            .all(|l| l.master != Some(br)));
        assert!(c1.nl.link_by_name("eth0").await.unwrap().is_none());

        // An unreachable gateway fails at the route step, and also leaves nothing.
        let mut alloc = bridge_alloc("n1", "c1", "eth0", "cbr-n1");
        alloc.routes = vec![RouteSpec {
            dest: net("172.31.0.0/16"),
            gateway: Some(ip("10.77.0.1")),
        }];
        let err = interfaces::realize(&host, &c1.bound.ns, &c1.nl, &alloc, true)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("network n1: eth0: add route 172.31.0.0/16 via 10.77.0.1: "),
            "{err}"
        );
        assert!(c1.nl.link_by_name("eth0").await.unwrap().is_none());

        // The same for macvlan, whose link lives inside.
        let here = NetNs::current().unwrap();
        let par0 = host
            .create_veth("par0", "par1", &here, None, None)
            .await
            .unwrap();
        host.set_up(par0).await.unwrap();
        let mut mv = bridge_alloc("mv", "c1", "eth0", "-");
        mv.mac = None;
        mv.addresses = vec![net("10.90.0.2/24"), net("10.90.0.2/24")];
        mv.data = PluginData::Macvlan {
            parent: "par0".into(),
            mode: MacvlanMode::default(),
        };
        let err = interfaces::realize(&host, &c1.bound.ns, &c1.nl, &mv, true)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "network mv: eth0: add address 10.90.0.2/24: File exists"
        );
        assert!(c1.nl.link_by_name("eth0").await.unwrap().is_none());

        // A taken name inside fails before anything is made, and the undo does not
        // touch the interface that was there first.
        let good = bridge_alloc("n1", "c1", "eth0", "cbr-n1");
        interfaces::realize(&host, &c1.bound.ns, &c1.nl, &good, true)
            .await
            .unwrap();
        let mut clash = bridge_alloc("n1", "c1-other", "eth0", "cbr-n1");
        clash.addresses = vec![net("10.88.0.7/24")];
        let err = interfaces::realize(&host, &c1.bound.ns, &c1.nl, &clash, false)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("network n1: eth0: create veth "),
            "{err}"
        );
        assert!(err.to_string().ends_with("File exists"), "{err}");
        assert!(host
            .link_by_name(&veth_host_name("c1-other", "eth0"))
            .await
            .unwrap()
            .is_none());
        let eth0 = c1.nl.link_by_name("eth0").await.unwrap().unwrap();
        assert_eq!(eth0.mac, Some(MAC1));
    });
}

#[test]
fn missing_bridges_and_bad_names_are_refused() {
    let iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let host = Netlink::connect().unwrap();
        let c1 = container(&iso, "c1");
        // The plugin is the data's variant: no allocation names one plugin and carries
        // another's data, and a plugin this build lacks does not decode.
        let mut alloc = bridge_alloc("n1", "c1", "eth0", "cbr-n1");
        let err = interfaces::realize(&host, &c1.bound.ns, &c1.nl, &alloc, true)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "network n1: eth0: bridge cbr-n1 not found in the host namespace"
        );

        alloc.ifname = "bad/name".into();
        let err = interfaces::realize(&host, &c1.bound.ns, &c1.nl, &alloc, true)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("invalid interface name"), "{err}");
        assert_eq!(c1.nl.links().await.unwrap().len(), 1);
    });
}
