//! `Setup` end to end: interfaces from allocations, devices moved in, /etc files, the
//! rollback of a failing setup, and what shutdown gives back.

mod common;

use std::process::Command;

use common::*;
use container_protocol::network::{Allocation, PluginData};
use container_protocol::sandbox::{NetDeviceSpec, SandboxRequest, SandboxResponse};
use container_sandbox_helper::interfaces::veth_host_name;

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?}: {status}");
}

/// A veth pair dies with its namespace in the kernel's background cleanup: allow it a
/// moment (a hang guard, not a timing assertion).
fn gone_soon(name: &str) -> bool {
    for _ in 0..500 {
        if !link_exists(name) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
        || Command::new("ip")
            .args(["link", "show", name])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

fn bridge_alloc(id: &str, ifname: &str, addr: &str, bridge: &str) -> Allocation {
    Allocation {
        network: "n1".into(),
        container_id: id.into(),
        ifname: ifname.into(),
        addresses: vec![addr.parse().unwrap()],
        gateways: vec!["10.88.0.1".parse().unwrap()],
        routes: vec![],
        mac: None,
        mtu: None,
        dns: vec!["10.88.0.1".parse().unwrap()],
        data: PluginData::Bridge {
            bridge: bridge.into(),
        },
    }
}

#[test]
fn bridge_interface_device_and_etc_files() {
    let env = env();
    ip(&["link", "add", "cbr-test", "type", "bridge"]);
    ip(&["addr", "add", "10.88.0.1/24", "dev", "cbr-test"]);
    ip(&["link", "set", "cbr-test", "up"]);
    // No dummy links in this kernel: one end of a veth pair stands for a device.
    ip(&[
        "link", "add", "dum-test", "type", "veth", "peer", "name", "dum-peer",
    ]);
    ip(&["addr", "add", "192.0.2.7/24", "dev", "dum-test"]);
    env.rt.block_on(async {
        let sb = env.spawn("c-net").await;
        let mut s = spec(
            "c-net",
            &[
                "sh",
                "-c",
                "ip -o -4 addr show dev eth0; ip -o -4 addr show dev dev0; ip route show default; \
                 busybox ping -c1 -W2 10.88.0.1 >/dev/null && echo ping-ok; cat /etc/hosts /etc/resolv.conf",
            ],
            &sb.log_path(),
        );
        s.allocations = vec![bridge_alloc("c-net", "eth0", "10.88.0.2/24", "cbr-test")];
        s.net_devices = vec![NetDeviceSpec {
            host_name: "dum-test".into(),
            name: Some("dev0".into()),
        }];
        s.hosts = vec![("10.88.0.9".parse().unwrap(), "other".into())];
        let (status, log) = sb.run_logged(s).await;
        assert_eq!(status.code, 0, "log: {log}");
        assert!(log.contains("eth0    inet 10.88.0.2/24"), "log: {log}");
        assert!(log.contains("dev0    inet 192.0.2.7/24"), "log: {log}");
        assert!(log.contains("default via 10.88.0.1 dev eth0"), "log: {log}");
        assert!(log.contains("ping-ok"), "log: {log}");
        assert!(log.contains("10.88.0.2\tc-net-host"), "log: {log}");
        assert!(log.contains("10.88.0.9\tother"), "log: {log}");
        assert!(log.contains("nameserver 10.88.0.1"), "log: {log}");
        let host_end = veth_host_name("c-net", "eth0");
        assert!(link_exists(&host_end));
        assert!(!link_exists("dum-test"), "device still on the host");
        sb.shutdown().await;
        assert!(gone_soon(&host_end), "veth host end left behind");
        assert!(link_exists("dum-test"), "device not given back");
    });
}

#[test]
fn failing_setup_undoes_earlier_interfaces() {
    let env = env();
    ip(&["link", "add", "cbr-test", "type", "bridge"]);
    ip(&["link", "set", "cbr-test", "up"]);
    env.rt.block_on(async {
        let sb = env.spawn("c-bad").await;
        let mut s = spec("c-bad", &["true"], &sb.log_path());
        s.allocations = vec![
            bridge_alloc("c-bad", "eth0", "10.88.0.2/24", "cbr-test"),
            bridge_alloc("c-bad", "eth1", "10.88.0.3/24", "nosuchbr0"),
        ];
        let err = sb
            .call(SandboxRequest::Setup(Box::new(s.clone())))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("interface eth1: "), "{err}");
        assert!(err.contains("nosuchbr0"), "{err}");
        assert!(
            !link_exists(&veth_host_name("c-bad", "eth0")),
            "first interface not undone"
        );
        // Nothing was kept: the same setup without the bad network works.
        s.allocations.pop();
        match sb.call(SandboxRequest::Setup(Box::new(s))).await {
            Ok(SandboxResponse::SetUp(report)) => {
                assert_eq!(report.interfaces.len(), 1);
                assert_eq!(report.interfaces[0].ifname, "eth0");
            }
            other => panic!("second setup: {other:?}"),
        }
        sb.shutdown().await;
        assert!(gone_soon(&veth_host_name("c-bad", "eth0")));
    });
}
