//! OCI netDevices against the real kernel. The kernel here has no dummy links, so veth
//! pairs (both ends in the test's "host" namespace) stand in for host NICs.

use std::path::PathBuf;

use container_netlink::{AddrScope, NetNs, Netlink};
use container_protocol::sandbox::{NetDeviceRecord, NetDeviceSpec};
use container_sandbox_helper::netdev::{self, NetDevError};
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

fn ipv6_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6")
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}

/// A container namespace, unmounted when the test ends (also by a panic).
struct BoundNs {
    ns: NetNs,
    path: PathBuf,
}

impl Drop for BoundNs {
    fn drop(&mut self) {
        let _ = NetNs::remove_bound(&self.path);
    }
}

struct Container {
    bound: BoundNs,
    nl: Netlink,
}

fn container(iso: &container_testkit::Isolated, name: &str) -> Container {
    let path = iso.run_dir().join("netns").join(name);
    let ns = NetNs::create_bound(&path).expect("create container netns");
    let nl = Netlink::connect_in(&ns).unwrap();
    Container {
        bound: BoundNs { ns, path },
        nl,
    }
}

fn spec(host_name: &str, name: Option<&str>) -> NetDeviceSpec {
    NetDeviceSpec {
        host_name: host_name.into(),
        name: name.map(Into::into),
    }
}

fn mac(last: u8) -> [u8; 6] {
    [0x02, 0x00, 0x5e, 0x10, 0x00, last]
}

/// A stand-in NIC `name` (peer `<name>p`, up) with MAC, MTU, global IPv4 (and IPv6
/// when the kernel has it) addresses, up or down.
async fn fake_nic(host: &Netlink, name: &str, n: u8, up: bool) -> Vec<IpNet> {
    let here = NetNs::current().unwrap();
    let peer = format!("{name}p");
    let idx = host
        .create_veth(name, &peer, &here, Some(1400 + u32::from(n)), None)
        .await
        .unwrap();
    host.set_mac(idx, mac(n)).await.unwrap();
    let mut addrs = vec![net(&format!("192.168.{n}.10/24"))];
    if ipv6_enabled() {
        addrs.push(net(&format!("2001:db8:{n}::10/64")));
    }
    for a in &addrs {
        host.add_address(idx, *a).await.unwrap();
    }
    let peer_idx = host.link_by_name(&peer).await.unwrap().unwrap().index;
    host.set_up(peer_idx).await.unwrap();
    if up {
        host.set_up(idx).await.unwrap();
    }
    addrs.sort();
    addrs
}

/// What must survive a trip: name, MAC, MTU, up state, global addresses.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    name: String,
    mac: Option<[u8; 6]>,
    mtu: u32,
    up: bool,
    addresses: Vec<IpNet>,
}

async fn snapshot(nl: &Netlink, name: &str) -> Option<Snapshot> {
    let link = nl.link_by_name(name).await.unwrap()?;
    let mut addresses: Vec<IpNet> = nl
        .addresses(link.index)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.scope == AddrScope::Universe)
        .map(|a| a.address)
        .collect();
    addresses.sort();
    Some(Snapshot {
        name: link.name,
        mac: link.mac,
        mtu: link.mtu,
        up: link.up,
        addresses,
    })
}

#[test]
fn a_device_moves_in_renamed_with_its_addresses_and_comes_back() {
    let iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let host = Netlink::connect().unwrap();
        let addrs = fake_nic(&host, "nic1", 1, true).await;
        let before = snapshot(&host, "nic1").await.unwrap();
        let c1 = container(&iso, "c1");
        let specs = [spec("nic1", Some("data0"))];

        netdev::check(&host, &specs, &["eth0".into()])
            .await
            .unwrap();
        let records = netdev::move_in(&host, &c1.bound.ns, &c1.nl, &specs)
            .await
            .unwrap();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.host_name, "nic1");
        assert_eq!(r.container_name, "data0");
        assert_eq!(r.mac, Some(mac(1)));
        assert_eq!(r.mtu, 1401);
        let mut recorded = r.addresses.clone();
        recorded.sort();
        assert_eq!(recorded, addrs);

        assert!(host.link_by_name("nic1").await.unwrap().is_none());
        let inside = snapshot(&c1.nl, "data0").await.unwrap();
        assert_eq!(
            inside,
            Snapshot {
                name: "data0".into(),
                ..before
            }
        );
        assert!(host.link_by_name("nic1p").await.unwrap().is_some());

        netdev::give_back(&host, &c1.nl, &records).await.unwrap();
        assert!(c1.nl.link_by_name("data0").await.unwrap().is_none());
        let after = snapshot(&host, "nic1").await.unwrap();
        assert_eq!(after.mac, Some(mac(1)));
        assert_eq!(after.mtu, 1401);
        assert!(after.up);
        assert_eq!(after.addresses, addrs);
    });
}

#[test]
fn ten_cycles_give_identical_results() {
    let iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let host = Netlink::connect().unwrap();
        fake_nic(&host, "nic1", 1, true).await;
        let original = snapshot(&host, "nic1").await.unwrap();
        let specs = [spec("nic1", Some("data0"))];
        let mut first_records = None;
        for round in 0..10 {
            // A fresh container each time, as create/remove would make.
            let c = container(&iso, &format!("c{round}"));
            netdev::check(&host, &specs, &[]).await.unwrap();
            let records = netdev::move_in(&host, &c.bound.ns, &c.nl, &specs)
                .await
                .unwrap();
            let inside = snapshot(&c.nl, "data0").await.unwrap();
            assert_eq!(inside.addresses, original.addresses, "round {round}");
            netdev::give_back(&host, &c.nl, &records).await.unwrap();
            assert_eq!(
                snapshot(&host, "nic1").await.unwrap(),
                original,
                "round {round}"
            );
            match &first_records {
                None => first_records = Some(records),
                Some(first) => assert_eq!(&records, first, "round {round}"),
            }
        }
    });
}

#[test]
fn every_check_fails_cleanly_and_names_the_device() {
    let iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let host = Netlink::connect().unwrap();
        fake_nic(&host, "nic1", 1, true).await;
        fake_nic(&host, "nic2", 2, true).await;
        let original = snapshot(&host, "nic1").await.unwrap();
        let others = ["eth0".to_string()];

        let cases: Vec<(Vec<NetDeviceSpec>, &str)> = vec![
            (
                vec![spec("nope0", None)],
                "net device nope0: no such device in the host namespace",
            ),
            (
                vec![spec("lo", Some("lo0"))],
                "net device lo: loopback cannot be moved",
            ),
            (
                vec![spec("nic1", Some("a/b"))],
                "net device nic1: invalid container-side name \"a/b\": contains '/' or ':'",
            ),
            (
                vec![spec("nic1", Some("abcdefghijklmnop"))],
                "net device nic1: invalid container-side name \"abcdefghijklmnop\": longer than 15 bytes",
            ),
            (
                vec![spec("nic1", Some(".."))],
                "net device nic1: invalid container-side name \"..\": reserved name",
            ),
            (
                vec![spec("nic1", Some("data %d"))],
                "net device nic1: invalid container-side name \"data %d\": contains whitespace",
            ),
            (
                vec![spec("nic1", Some("a%sb"))],
                "net device nic1: invalid container-side name \"a%sb\": '%' is only allowed in a trailing %d",
            ),
            (
                vec![spec("nic1", Some("eth0"))],
                "net device nic1: container-side name eth0 is taken by one of the container's network interfaces",
            ),
            (
                vec![spec("nic1", Some("data0")), spec("nic2", Some("data0"))],
                "net device nic2: container-side name data0 is asked for by another device too",
            ),
            (
                vec![spec("nic1", None), spec("nic1", Some("x"))],
                "net device nic1: listed more than once",
            ),
        ];
        for (specs, want) in cases {
            let err = netdev::check(&host, &specs, &others).await.unwrap_err();
            assert!(matches!(err, NetDevError::Refused { .. }), "{err:?}");
            assert_eq!(err.to_string(), want);
        }
        // `%d` patterns may repeat: the kernel picks distinct numbers.
        netdev::check(
            &host,
            &[spec("nic1", Some("net%d")), spec("nic2", Some("net%d"))],
            &others,
        )
        .await
        .unwrap();
        // Nothing changed.
        assert_eq!(snapshot(&host, "nic1").await.unwrap(), original);

        // A "container" without a namespace of its own is refused too.
        let err = netdev::move_in(&host, host.netns(), &host, &[spec("nic1", None)])
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "net device nic1: the container has no network namespace of its own"
        );
        assert_eq!(snapshot(&host, "nic1").await.unwrap(), original);
        drop(iso);
    });
}

#[test]
fn two_devices_in_one_container() {
    let iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let host = Netlink::connect().unwrap();
        let a1 = fake_nic(&host, "nic1", 1, true).await;
        let a2 = fake_nic(&host, "nic2", 2, true).await;
        let c1 = container(&iso, "c1");
        // Pretend a network already made eth0, so the pattern must skip nothing but
        // still resolve to a concrete name.
        let specs = [spec("nic1", Some("data0")), spec("nic2", Some("net%d"))];
        netdev::check(&host, &specs, &["eth0".into()])
            .await
            .unwrap();
        let records = netdev::move_in(&host, &c1.bound.ns, &c1.nl, &specs)
            .await
            .unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].container_name, "data0");
        assert_eq!(records[1].container_name, "net0");

        let d0 = snapshot(&c1.nl, "data0").await.unwrap();
        assert_eq!(d0.addresses, a1);
        assert_eq!(d0.mac, Some(mac(1)));
        assert!(d0.up);
        let n0 = snapshot(&c1.nl, "net0").await.unwrap();
        assert_eq!(n0.addresses, a2);
        assert_eq!(n0.mac, Some(mac(2)));
        assert_eq!(n0.mtu, 1402);

        netdev::give_back(&host, &c1.nl, &records).await.unwrap();
        assert_eq!(snapshot(&host, "nic1").await.unwrap().addresses, a1);
        assert_eq!(snapshot(&host, "nic2").await.unwrap().addresses, a2);
        assert_eq!(c1.nl.links().await.unwrap().len(), 1);
    });
}

#[test]
fn a_failure_on_the_third_of_three_returns_the_first_two() {
    let iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let host = Netlink::connect().unwrap();
        fake_nic(&host, "nic1", 1, true).await;
        // Down on purpose: it must come back down, as it was.
        fake_nic(&host, "nic2", 2, false).await;
        fake_nic(&host, "nic3", 3, true).await;
        let before: Vec<Snapshot> = vec![
            snapshot(&host, "nic1").await.unwrap(),
            snapshot(&host, "nic2").await.unwrap(),
            snapshot(&host, "nic3").await.unwrap(),
        ];
        let c1 = container(&iso, "c1");
        // Something inside already holds the third name: only the move itself can
        // tell, after the first two have moved.
        let here = c1.bound.ns.try_clone().unwrap();
        c1.nl
            .create_veth("data2", "data2p", &here, None, None)
            .await
            .unwrap();

        let specs = [
            spec("nic1", Some("data0")),
            spec("nic2", Some("data1")),
            spec("nic3", Some("data2")),
        ];
        netdev::check(&host, &specs, &[]).await.unwrap();
        let err = netdev::move_in(&host, &c1.bound.ns, &c1.nl, &specs)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("net device nic3: move into "), "{msg}");
        assert!(msg.ends_with("File exists"), "{msg}");

        let after: Vec<Snapshot> = vec![
            snapshot(&host, "nic1").await.unwrap(),
            snapshot(&host, "nic2").await.unwrap(),
            snapshot(&host, "nic3").await.unwrap(),
        ];
        assert_eq!(after, before);
        for name in ["data0", "data1", "nic1", "nic2", "nic3"] {
            assert!(c1.nl.link_by_name(name).await.unwrap().is_none(), "{name}");
        }
    });
}

#[test]
fn give_back_keeps_going_past_a_failure() {
    let iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let host = Netlink::connect().unwrap();
        let a1 = fake_nic(&host, "nic1", 1, true).await;
        let a2 = fake_nic(&host, "nic2", 2, true).await;
        let c1 = container(&iso, "c1");
        let specs = [spec("nic1", Some("data0")), spec("nic2", Some("data1"))];
        let mut records = netdev::move_in(&host, &c1.bound.ns, &c1.nl, &specs)
            .await
            .unwrap();
        // The workload renamed one of them: it is still found, by its MAC.
        let d1 = c1.nl.link_by_name("data1").await.unwrap().unwrap();
        c1.nl.set_down(d1.index).await.unwrap();
        c1.nl.rename(d1.index, "renamed1").await.unwrap();
        // A record for a device that is no longer there, first in line.
        records.insert(
            0,
            NetDeviceRecord {
                host_name: "gone0".into(),
                container_name: "gone1".into(),
                mac: Some(mac(9)),
                mtu: 1500,
                addresses: vec![],
            },
        );
        let err = netdev::give_back(&host, &c1.nl, &records)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "net device gone0: gone1 not found in the container"
        );
        assert_eq!(snapshot(&host, "nic1").await.unwrap().addresses, a1);
        assert_eq!(snapshot(&host, "nic2").await.unwrap().addresses, a2);
        assert!(snapshot(&host, "nic2").await.unwrap().up);
        assert_eq!(c1.nl.links().await.unwrap().len(), 1);
    });
}

#[test]
fn a_device_returned_by_the_kernel_is_restored_by_mac() {
    let _iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let host = Netlink::connect().unwrap();
        let addrs = fake_nic(&host, "nic1", 1, true).await;
        let original = snapshot(&host, "nic1").await.unwrap();
        let record = NetDeviceRecord {
            host_name: "nic1".into(),
            container_name: "data0".into(),
            mac: Some(mac(1)),
            mtu: 1401,
            addresses: addrs.clone(),
        };
        // What a sandbox death leaves: the device back in the host under its
        // container-side name, down, without addresses.
        let idx = host.link_by_name("nic1").await.unwrap().unwrap().index;
        for a in &addrs {
            host.del_address(idx, *a).await.unwrap();
        }
        host.set_down(idx).await.unwrap();
        host.rename(idx, "data0").await.unwrap();
        // And a virtual device the kernel destroyed: nowhere to be found.
        let vanished = NetDeviceRecord {
            host_name: "veth9".into(),
            container_name: "data9".into(),
            mac: Some(mac(9)),
            mtu: 1500,
            addresses: vec![net("192.168.9.10/24")],
        };

        let records = [record, vanished];
        let restored = netdev::restore_returned(&host, &records).await.unwrap();
        assert_eq!(restored, vec!["nic1".to_string()]);
        assert_eq!(snapshot(&host, "nic1").await.unwrap(), original);
        assert!(host.link_by_name("data0").await.unwrap().is_none());

        // Already fine: left alone.
        let restored = netdev::restore_returned(&host, &records).await.unwrap();
        assert!(restored.is_empty(), "{restored:?}");

        // Under its own name but stripped of addresses: addresses come back.
        host.del_address(idx, addrs[0]).await.unwrap();
        let restored = netdev::restore_returned(&host, &records).await.unwrap();
        assert_eq!(restored, vec!["nic1".to_string()]);
        assert_eq!(snapshot(&host, "nic1").await.unwrap(), original);
    });
}
