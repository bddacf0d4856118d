//! `container-sandbox-helper cleanup`: what a SIGKILLed sandbox left on the host, removed
//! from what the record says, by the sandbox's own rules.

mod common;

use std::io::Write;
use std::process::{Command, Stdio as PStdio};

use common::*;
use container_protocol::network::{Allocation, PluginData};
use container_protocol::sandbox::{NetDeviceSpec, SandboxRequest, SandboxResponse};
use container_sandbox_helper::interfaces::veth_host_name;

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?}: {status}");
}

/// By `ip`: /sys/class/net shows the namespace that mounted /sys, not this test's.
fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .stderr(PStdio::null())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn addresses(name: &str) -> String {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", name])
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the cleanup mode with `input` on stdin: (exit code, stdout, stderr).
fn cleanup(env: &Env, id: &str, input: &str) -> (i32, String, String) {
    let mut child = Command::new(container_testkit::bin("container-sandbox-helper"))
        .arg("cleanup")
        .arg("--root")
        .arg(env.iso.root())
        .arg("--run-dir")
        .arg(env.iso.run_dir())
        .arg("--id")
        .arg(id)
        .stdin(PStdio::piped())
        .stdout(PStdio::piped())
        .stderr(PStdio::piped())
        .spawn()
        .expect("spawn cleanup");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("cleanup");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn bridge_alloc(id: &str) -> Allocation {
    Allocation {
        network: "n1".into(),
        container_id: id.into(),
        ifname: "eth0".into(),
        addresses: vec!["10.88.0.2/24".parse().unwrap()],
        gateways: vec![],
        routes: vec![],
        mac: None,
        mtu: None,
        dns: vec![],
        data: PluginData::Bridge {
            bridge: "cbr-test".into(),
        },
    }
}

#[test]
fn cleanup_removes_what_a_killed_sandbox_left_and_gives_devices_back() {
    let env = env();
    ip(&["link", "add", "cbr-test", "type", "bridge"]);
    ip(&["link", "set", "cbr-test", "up"]);
    ip(&[
        "link", "add", "nic-test", "type", "veth", "peer", "name", "nic-peer",
    ]);
    ip(&["addr", "add", "192.0.2.7/24", "dev", "nic-test"]);
    let id = "c-dead";
    let host_end = veth_host_name(id, "eth0");
    let netns = env.iso.run_dir().join("netns").join(id);
    let socket = env.iso.run_dir().join("helpers/sandbox/c-dead.sock");
    let devices = env.rt.block_on(async {
        let sb = env.spawn(id).await;
        let mut s = spec(id, &["true"], &sb.log_path());
        s.allocations = vec![bridge_alloc(id)];
        s.net_devices = vec![NetDeviceSpec {
            host_name: "nic-test".into(),
            name: Some("dev0".into()),
        }];
        let report = match sb.call(SandboxRequest::Setup(Box::new(s))).await {
            Ok(SandboxResponse::SetUp(r)) => r,
            other => panic!("setup: {other:?}"),
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(sb.helper.info.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        sb.helper.client.closed().await;
        // What the kernel does with a physical device when its namespace dies: back
        // here under its container-side name, without addresses. A veth would be
        // destroyed instead, so do the kernel's part by hand.
        let ns = container_netlink::NetNs::open(&netns).expect("netns");
        let inside = container_netlink::Netlink::connect_in(&ns).expect("netlink inside");
        let dev = inside
            .link_by_name("dev0")
            .await
            .unwrap()
            .expect("dev0 inside");
        let here = container_netlink::NetNs::current().unwrap();
        inside.move_to_netns(dev.index, &here, None).await.unwrap();
        report.net_devices
    });
    assert!(link_exists(&host_end) && netns.exists() && socket.exists());
    assert!(link_exists("dev0") && !link_exists("nic-test"));

    let input = serde_json::json!({ "ifnames": ["eth0"], "net_devices": devices }).to_string();
    let (code, out, err) = cleanup(&env, id, &input);
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("report");
    assert_eq!(report["restored"], serde_json::json!(["nic-test"]), "{out}");
    assert_eq!(report["errors"], serde_json::json!([]), "{out}");
    assert!(!link_exists(&host_end), "host veth end left");
    assert!(!netns.exists(), "netns mount left");
    assert!(!socket.exists(), "helper socket left");
    assert!(!env
        .iso
        .run_dir()
        .join("helpers/sandbox/c-dead.pid")
        .exists());
    assert!(
        addresses("nic-test").contains("192.0.2.7/24"),
        "addresses not restored"
    );
    assert!(!link_exists("dev0"));

    // Again: nothing left to do, nothing fails.
    let (code, out, _) = cleanup(&env, id, &input);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["removed"], serde_json::json!([]), "{out}");
}

#[test]
fn cleanup_refuses_bad_input_and_a_live_helper_and_changes_nothing() {
    let env = env();
    env.rt.block_on(async {
        let sb = env.spawn("c-live").await;
        let netns = sb.netns_path();
        for (id, input, want) in [
            (
                "c-live",
                "{\"ifnames\": [\"eth0\"]}",
                "its sandbox helper is running",
            ),
            (
                "c-live",
                "{\"ifnames\": [\"eth0/../x\"]}",
                "interface \"eth0/../x\"",
            ),
            (
                "c-live",
                "{\"ifnames\": [], \"extra\": 1}",
                "unknown field `extra`",
            ),
            ("c-live", "[1, 2", "cleanup input"),
            ("../../c-live", "{}", "invalid"),
        ] {
            let (code, out, err) = cleanup(&env, id, input);
            assert_eq!(code, 2, "{input}: {out}{err}");
            assert!(err.contains(want), "{input}: {err}");
            assert!(out.is_empty(), "{out}");
        }
        assert!(container_sandbox_helper::namespaces::is_nsfs(&netns));
        assert!(matches!(
            sb.call(SandboxRequest::Echo(1)).await,
            Ok(SandboxResponse::Echo(1))
        ));
        sb.shutdown().await;
    });
}
