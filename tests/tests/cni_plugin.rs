//! Issue 14: `container-cni` alone, invoked exactly as libcni invokes a plugin, for every
//! verb at every spec version; bad input; GC against valid-attachments (with host-local's
//! own reservations in the directory); a SIGKILL mid-ADD then GC; chaining with the
//! reference portmap.

mod cni_common;

use std::path::Path;
use std::time::{Duration, Instant};

use cni_common::*;
use serde_json::{json, Value};

#[test]
fn every_verb_at_every_spec_version() {
    let iso = container_testkit::isolate().expect("isolate");
    let data = iso.dir().join("ipam");
    for (n, version) in VERSIONS.iter().enumerate() {
        let ns = netns(iso.dir(), &format!("v{n}"));
        let id = format!("ctr-{n}");
        let conf = plugin_conf(version, "verbs", &data, "cnitest0", "10.71.0.0/24");

        let v = call(
            &ours(),
            &Call::new("VERSION", "", None),
            &json!({"cniVersion": version}),
        )
        .ok();
        assert_eq!(v["cniVersion"], *version);
        let supported: Vec<&str> = v["supportedVersions"]
            .as_array()
            .expect("supportedVersions")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(supported, VERSIONS);

        let result = call(&ours(), &Call::new("ADD", &id, Some(&ns)), &conf).ok();
        check_result_shape(&result, version);
        let addr = result["ips"][0]["address"]
            .as_str()
            .expect("address")
            .to_string();
        // The kernel has what the result says.
        let inside = ip_in(&ns, &["addr", "show", "eth0"]);
        let local = inside[0]["addr_info"]
            .as_array()
            .expect("addr_info")
            .iter()
            .any(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]) == addr);
        assert!(local, "{addr} not on eth0: {inside}");
        assert_eq!(result["interfaces"][2]["sandbox"], ns.display().to_string());
        let ip = addr.split('/').next().expect("ip").to_string();
        assert_eq!(
            reservations(&data.join("verbs")),
            vec![(ip.clone(), id.clone())]
        );

        let mut with_prev = conf.clone();
        with_prev["prevResult"] = result.clone();
        let check = call(&ours(), &Call::new("CHECK", &id, Some(&ns)), &with_prev);
        if *version == "0.3.1" {
            check.error(1);
        } else {
            assert!(check.ok, "CHECK: {} {}", check.raw, check.stderr);
            assert!(
                check.raw.trim().is_empty(),
                "CHECK prints nothing: {}",
                check.raw
            );
        }

        let status = call(&ours(), &Call::new("STATUS", "", None), &conf);
        let gc_conf = {
            let mut c = conf.clone();
            c["cni.dev/valid-attachments"] = json!([{"containerID": id, "ifname": "eth0"}]);
            c
        };
        let gc = call(&ours(), &Call::new("GC", "", None), &gc_conf);
        if *version == "1.1.0" {
            assert!(status.ok, "STATUS: {}", status.raw);
            assert!(gc.ok, "GC: {}", gc.raw);
            assert_eq!(
                reservations(&data.join("verbs")).len(),
                1,
                "GC kept the live one"
            );
        } else {
            status.error(1);
            gc.error(1);
        }

        // DEL twice, then with the netns gone: each succeeds and prints nothing.
        for _ in 0..2 {
            let del = call(&ours(), &Call::new("DEL", &id, Some(&ns)), &with_prev);
            assert!(
                del.ok && del.raw.trim().is_empty(),
                "DEL: {} {}",
                del.raw,
                del.stderr
            );
        }
        assert!(reservations(&data.join("verbs")).is_empty());
        assert!(!links_in(&ns).contains(&"eth0".to_string()));
        assert!(our_host_ends().is_empty(), "{:?}", our_host_ends());
        // DEL answers once both ends are out of their namespaces (the kernel's clean-up
        // after that is its own): the same pod's names are free again at once.
        call(&ours(), &Call::new("ADD", &id, Some(&ns)), &conf).ok();
        let del = call(&ours(), &Call::new("DEL", &id, Some(&ns)), &conf);
        assert!(del.ok, "DEL after a second ADD: {}", del.raw);
        assert!(!links_in(&ns).contains(&"eth0".to_string()));
        assert!(our_host_ends().is_empty(), "{:?}", our_host_ends());
        assert!(reservations(&data.join("verbs")).is_empty());
        container_netlink::NetNs::remove_bound(&ns).expect("remove netns");
        let del = call(&ours(), &Call::new("DEL", &id, Some(&ns)), &conf);
        assert!(del.ok, "DEL with the netns gone: {}", del.raw);
        let del = call(&ours(), &Call::new("DEL", &id, None), &conf);
        assert!(del.ok, "DEL with no CNI_NETNS: {}", del.raw);
    }
}

/// The bridge plugin's keys reach the kernel: the bridge's MTU, promiscuity and gateway
/// address, hairpin on the port, the MAC of `CNI_ARGS`, ipam routes.
#[test]
fn bridge_keys_reach_the_kernel() {
    let iso = container_testkit::isolate().expect("isolate");
    let data = iso.dir().join("ipam");
    let ns = netns(iso.dir(), "keys");
    let mut conf = plugin_conf("1.1.0", "keys", &data, "cnikeys0", "10.72.0.0/24");
    conf["mtu"] = json!(1400);
    conf["hairpinMode"] = json!(true);
    conf["promiscMode"] = json!(true);
    conf["ipam"]["routes"] = json!([{"dst": "192.168.77.0/24"}]);
    let mut c = Call::new("ADD", "keys1", Some(&ns));
    c.args = Some("IgnoreUnknown=1;K8S_POD_NAME=p;MAC=02:00:00:00:00:42");
    let r = call(&ours(), &c, &conf).ok();
    check_result_shape(&r, "1.1.0");
    let br = &container_tests::ip_json(&["-d", "link", "show", "cnikeys0"])[0];
    assert_eq!(br["mtu"], 1400, "{br}");
    assert_eq!(br["promiscuity"], 1, "{br}");
    let host_end = r["interfaces"][1]["name"].as_str().expect("host end");
    let port = &container_tests::ip_json(&["-d", "link", "show", host_end])[0];
    assert_eq!(
        port["linkinfo"]["info_slave_data"]["hairpin"], true,
        "{port}"
    );
    assert_eq!(port["master"], "cnikeys0");
    let eth0 = &ip_in(&ns, &["link", "show", "eth0"])[0];
    assert_eq!(eth0["address"], "02:00:00:00:00:42");
    assert_eq!(r["interfaces"][2]["mac"], "02:00:00:00:00:42");
    assert_eq!(eth0["mtu"], 1400);
    let routes = ip_in(&ns, &["route", "show"]);
    let dsts: Vec<&str> = routes
        .as_array()
        .expect("routes")
        .iter()
        .filter_map(|r| r["dst"].as_str())
        .collect();
    assert!(
        dsts.contains(&"192.168.77.0/24") && dsts.contains(&"default"),
        "{routes}"
    );
    let br_addrs = container_tests::ip_json(&["addr", "show", "cnikeys0"]);
    assert!(
        br_addrs.to_string().contains("10.72.0.1"),
        "gateway on the bridge: {br_addrs}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .expect("sysctl")
            .trim(),
        "1"
    );
}

/// `ipMasq` goes through the project's nftables layout, under the network's own chains.
#[test]
fn ip_masq_installs_masquerade_for_the_subnet() {
    let iso = container_testkit::isolate().expect("isolate");
    let data = iso.dir().join("ipam");
    let ns = netns(iso.dir(), "masq");
    let mut conf = plugin_conf("1.0.0", "masq", &data, "cnimasq0", "10.73.0.0/24");
    conf["ipMasq"] = json!(true);
    call(&ours(), &Call::new("ADD", "m1", Some(&ns)), &conf).ok();
    let out = std::process::Command::new("nft")
        .args(["list", "table", "inet", "container"])
        .output()
        .expect("nft");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("nw-cni-masq-nat"), "{table}");
    assert!(
        table.contains("10.73.0.0/24") && table.contains("masquerade"),
        "{table}"
    );
}

fn unchanged(data: &Path, ns: &Path, before: &[(String, String)], ends: &[String]) {
    assert_eq!(reservations(data), before, "reservations changed");
    assert_eq!(our_host_ends(), ends, "host ends changed");
    assert!(
        !links_in(ns).contains(&"eth1".to_string()),
        "eth1 left in the netns"
    );
}

/// Every bad input gets the spec's error JSON with its code, a non-zero exit, and leaves
/// no reservation and no link.
#[test]
fn bad_input_gets_spec_errors_and_leaves_nothing() {
    let iso = container_testkit::isolate().expect("isolate");
    let data = iso.dir().join("ipam");
    let dir = data.join("bad");
    let ns = netns(iso.dir(), "bad");
    // One address: 10.74.0.2.
    let mut conf = plugin_conf("1.0.0", "bad", &data, "cnibad0", "10.74.0.0/24");
    conf["ipam"]["ranges"][0][0]["rangeStart"] = json!("10.74.0.2");
    conf["ipam"]["ranges"][0][0]["rangeEnd"] = json!("10.74.0.2");
    let first = call(&ours(), &Call::new("ADD", "holder", Some(&ns)), &conf).ok();
    let before = reservations(&dir);
    assert_eq!(before.len(), 1);
    let host_before = our_host_ends();
    let ends_unchanged = || assert_eq!(our_host_ends(), host_before);
    let mut c = Call::new("ADD", "second", Some(&ns));
    c.ifname = "eth1";

    // Garbled stdin.
    for garbage in [&b"{not json"[..], b"", b"\xff\xfe", b"[1,2]"] {
        let r = run_raw(command(&ours(), &c), garbage);
        let code = if garbage == b"[1,2]" { 1 } else { 6 };
        r.error(code);
        ends_unchanged();
        assert_eq!(reservations(&dir), before);
    }
    // The environment.
    let mut no_cmd = command(&ours(), &c);
    no_cmd.env_remove("CNI_COMMAND");
    run_raw(no_cmd, conf.to_string().as_bytes()).error(4);
    let unknown = Call {
        command: "ATTACH",
        ..c.clone()
    };
    call(&ours(), &unknown, &conf).error(4);
    let no_id = Call {
        container: "",
        ..c.clone()
    };
    call(&ours(), &no_id, &conf).error(4);
    let bad_id = Call {
        container: "../../etc",
        ..c.clone()
    };
    call(&ours(), &bad_id, &conf).error(4);
    let no_ifname = Call {
        ifname: "",
        ..c.clone()
    };
    call(&ours(), &no_ifname, &conf).error(4);
    let long_ifname = Call {
        ifname: "a-name-far-too-long",
        ..c.clone()
    };
    call(&ours(), &long_ifname, &conf).error(4);
    let no_netns = Call {
        netns: None,
        ..c.clone()
    };
    call(&ours(), &no_netns, &conf).error(4);
    let mut no_path = command(&ours(), &c);
    no_path.env_remove("CNI_PATH");
    run_raw(no_path, conf.to_string().as_bytes()).error(4);
    let unknown_arg = Call {
        args: Some("COLOR=blue"),
        ..c.clone()
    };
    let e = call(&ours(), &unknown_arg, &conf).error(4);
    assert!(e["msg"].as_str().unwrap_or("").contains("COLOR"), "{e}");
    unchanged(&dir, &ns, &before, &host_before);

    // A netns that doesn't exist.
    let missing = iso.dir().join("netns/nosuch");
    let gone = Call {
        netns: Some(&missing),
        ..c.clone()
    };
    call(&ours(), &gone, &conf).error(3);
    unchanged(&dir, &ns, &before, &host_before);

    // Versions and config.
    let mut v = conf.clone();
    v["cniVersion"] = json!("0.2.0");
    call(&ours(), &c, &v).error(1);
    v.as_object_mut().expect("conf").remove("cniVersion");
    call(&ours(), &c, &v).error(1);
    let mut vlan = conf.clone();
    vlan["vlan"] = json!(100);
    let e = call(&ours(), &c, &vlan).error(2);
    assert!(e["msg"].as_str().unwrap_or("").contains("vlan"), "{e}");
    let mut dhcp = conf.clone();
    dhcp["ipam"]["type"] = json!("dhcp");
    call(&ours(), &c, &dhcp).error(2);
    let mut no_ipam = conf.clone();
    no_ipam.as_object_mut().expect("conf").remove("ipam");
    call(&ours(), &c, &no_ipam).error(7);
    let mut bad_subnet = conf.clone();
    bad_subnet["ipam"]["ranges"][0][0]["subnet"] = json!("10.74.0.0/99");
    call(&ours(), &c, &bad_subnet).error(7);
    let mut typed = conf.clone();
    typed["isGateway"] = json!("yes");
    call(&ours(), &c, &typed).error(7);
    unchanged(&dir, &ns, &before, &host_before);

    // A prevResult of another version, or of the wrong shape.
    let mut prev = conf.clone();
    let mut old = first.clone();
    old["cniVersion"] = json!("0.4.0");
    prev["prevResult"] = old;
    call(&ours(), &c, &prev).error(1);
    let mut shaped = first.clone();
    shaped["ips"][0]["version"] = json!("4");
    prev["prevResult"] = shaped;
    call(&ours(), &c, &prev).error(1);
    prev["prevResult"] = json!({"cniVersion": "1.0.0", "ips": "many"});
    call(&ours(), &c, &prev).error(6);
    unchanged(&dir, &ns, &before, &host_before);

    // The range is exhausted.
    let e = call(&ours(), &c, &conf).error(101);
    assert!(
        e["details"]
            .as_str()
            .unwrap_or("")
            .contains("no free address"),
        "{e}"
    );
    unchanged(&dir, &ns, &before, &host_before);

    // STATUS of a network whose IPAM directory cannot be made: not available (50).
    let blocker = iso.dir().join("not-a-dir");
    std::fs::write(&blocker, "").expect("file");
    let mut status = plugin_conf("1.1.0", "status", &blocker, "cnibad0", "10.74.1.0/24");
    call(&ours(), &Call::new("STATUS", "", None), &status).error(50);
    status["ipam"]["dataDir"] = json!(data);
    call(&ours(), &Call::new("STATUS", "", None), &status).ok();

    // The interface exists already.
    call(&ours(), &Call::new("ADD", "again", Some(&ns)), &conf).error(100);
    unchanged(&dir, &ns, &before, &host_before);

    // A failure after the veth and the reservation were made (a route the kernel refuses:
    // its gateway is on no link) undoes both.
    let mut wide = plugin_conf("1.0.0", "undo", &data, "cnibad0", "10.75.0.0/24");
    wide["ipam"]["routes"] = json!([{"dst": "192.168.9.0/24", "gw": "172.31.255.1"}]);
    let e = call(&ours(), &c, &wide).error(103);
    assert!(
        e["details"]
            .as_str()
            .unwrap_or("")
            .contains("192.168.9.0/24"),
        "{e}"
    );
    assert!(
        reservations(&data.join("undo")).is_empty(),
        "reservation left"
    );
    unchanged(&dir, &ns, &before, &host_before);
}

/// GC releases exactly the reservations of attachments not in valid-attachments, those
/// written by the reference host-local included; the older `cni.dev/attachments` key
/// is taken too; without either nothing goes.
#[test]
fn gc_releases_exactly_the_stale_reservations() {
    let iso = container_testkit::isolate().expect("isolate");
    let data = iso.dir().join("ipam");
    let dir = data.join("gcnet");
    let conf = plugin_conf("1.1.0", "gcnet", &data, "cnigc0", "10.76.0.0/24");
    let mut live_ns = Vec::new();
    for id in ["ours-live", "ours-stale-1", "ours-stale-2"] {
        let ns = netns(iso.dir(), id);
        call(&ours(), &Call::new("ADD", id, Some(&ns)), &conf).ok();
        live_ns.push(ns);
    }
    // host-local, as the reference bridge would call it, in the same directory.
    let hl_conf = json!({
        "cniVersion": "1.0.0",
        "name": "gcnet",
        "ipam": conf["ipam"].clone(),
    });
    let host_local = Path::new(REFERENCE).join("host-local");
    for id in ["hl-live", "hl-stale"] {
        call(
            &host_local,
            &Call::new("ADD", id, Some(&live_ns[0])),
            &hl_conf,
        )
        .ok();
    }
    let holders = |dir: &Path| -> Vec<String> {
        let mut h: Vec<String> = reservations(dir).into_iter().map(|(_, h)| h).collect();
        h.sort();
        h
    };
    assert_eq!(holders(&dir).len(), 5);

    // No key: nothing released.
    call(&ours(), &Call::new("GC", "", None), &conf).ok();
    assert_eq!(holders(&dir).len(), 5);

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID": "ours-live", "ifname": "eth0"},
        {"containerID": "hl-live", "ifname": "eth0"},
        {"containerID": "ours-stale-1", "ifname": "eth9"},
    ]);
    call(&ours(), &Call::new("GC", "", None), &gc).ok();
    assert_eq!(holders(&dir), vec!["hl-live", "ours-live"]);
    // The stale attachments' host ends went with them.
    assert_eq!(our_host_ends().len(), 1, "{:?}", our_host_ends());
    assert!(links_in(&live_ns[0]).contains(&"eth0".to_string()));
    assert!(!links_in(&live_ns[1]).contains(&"eth0".to_string()));

    // The older key, an empty list: everything goes, host-local's too.
    let mut gc = conf.clone();
    gc["cni.dev/attachments"] = json!([]);
    call(&ours(), &Call::new("GC", "", None), &gc).ok();
    assert!(holders(&dir).is_empty());
    assert!(our_host_ends().is_empty());
}

/// SIGKILLs at spread points of ADD, then one GC: no reservation and no link is left.
#[test]
fn sigkill_mid_add_then_gc_leaks_nothing() {
    let iso = container_testkit::isolate().expect("isolate");
    let data = iso.dir().join("ipam");
    let dir = data.join("crash");
    let conf = plugin_conf("1.1.0", "crash", &data, "cnicrash0", "10.78.0.0/24");
    // How long one ADD takes here, to spread the kills over it.
    let ns = netns(iso.dir(), "probe");
    let start = Instant::now();
    call(&ours(), &Call::new("ADD", "probe", Some(&ns)), &conf).ok();
    let took = start.elapsed();
    // Kills that landed mid-ADD and left part of its work.
    let mut cut_short = 0;
    let mut namespaces = vec![ns];
    for i in 0..24u32 {
        let id = format!("kill-{i}");
        let ns = netns(iso.dir(), &id);
        let mut child = command(&ours(), &Call::new("ADD", &id, Some(&ns)))
            .spawn()
            .expect("spawn");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(conf.to_string().as_bytes()).expect("stdin");
        }
        std::thread::sleep(took * i / 20);
        let _ = child.kill();
        let killed = !child.wait().expect("wait").success();
        let reserved = reservations(&dir).iter().any(|(_, h)| *h == id);
        let linked = links_in(&ns).contains(&"eth0".to_string());
        if killed && (reserved || linked) {
            cut_short += 1;
        }
        namespaces.push(ns);
    }
    eprintln!("ADD took {took:?}; {cut_short} killed ADDs left part of their work");
    assert!(cut_short > 0, "no kill landed in the middle of an ADD");
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    call(&ours(), &Call::new("GC", "", None), &gc).ok();
    assert!(reservations(&dir).is_empty(), "{:?}", reservations(&dir));
    assert!(our_host_ends().is_empty(), "{:?}", our_host_ends());
    for ns in &namespaces {
        assert!(
            !links_in(ns).contains(&"eth0".to_string()),
            "{}",
            ns.display()
        );
    }
}

/// libcni's chain: our result is portmap's prevResult (and portmap's tuning's), and a hostPort reaches a listener
/// in the pod's netns; DEL in reverse order closes it.
#[test]
fn chained_with_portmap_a_host_port_reaches_the_pod() {
    let iso = container_testkit::isolate().expect("isolate");
    let data = iso.dir().join("ipam");
    let ns = netns(iso.dir(), "pod");
    let conf = plugin_conf("1.0.0", "chain", &data, "cnichain0", "10.79.0.0/24");
    let result = call(&ours(), &Call::new("ADD", "pod1", Some(&ns)), &conf).ok();
    let portmap_conf = |prev: &Value| {
        json!({
            "cniVersion": "1.0.0",
            "name": "chain",
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": [
                {"hostPort": 18081, "containerPort": 7000, "protocol": "tcp"}
            ]},
            "prevResult": prev,
        })
    };
    let portmap = Path::new(REFERENCE).join("portmap");
    let chained = call(
        &portmap,
        &Call::new("ADD", "pod1", Some(&ns)),
        &portmap_conf(&result),
    )
    .ok();
    check_result_shape(&chained, "1.0.0");
    assert_eq!(
        chained["ips"], result["ips"],
        "portmap passed our result on"
    );
    // tuning, next in the chain, reads the interface from our result and passes it on.
    let tuning_conf = json!({
        "cniVersion": "1.0.0",
        "name": "chain",
        "type": "tuning",
        "sysctl": {"net.ipv4.conf.eth0.accept_local": "1"},
        "prevResult": chained.clone(),
    });
    let tuning = Path::new(REFERENCE).join("tuning");
    let tuned = call(&tuning, &Call::new("ADD", "pod1", Some(&ns)), &tuning_conf).ok();
    check_result_shape(&tuned, "1.0.0");
    assert_eq!(tuned["ips"], result["ips"], "tuning passed our result on");
    let sysctl = std::process::Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["cat", "/proc/sys/net/ipv4/conf/eth0/accept_local"])
        .output()
        .expect("nsenter cat");
    assert_eq!(String::from_utf8_lossy(&sysctl.stdout).trim(), "1");

    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _listener = Kill(
        std::process::Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args([
                "busybox",
                "nc",
                "-ll",
                "-p",
                "7000",
                "-e",
                "echo",
                "hello from the pod",
            ])
            .spawn()
            .expect("listener"),
    );
    assert_eq!(
        container_tests::read_from("10.79.0.1:18081").trim(),
        "hello from the pod"
    );

    // DEL in reverse order, as libcni does: portmap's rules go, then our link and address.
    let mut tuning_del = tuning_conf.clone();
    tuning_del["prevResult"] = tuned.clone();
    call(&tuning, &Call::new("DEL", "pod1", Some(&ns)), &tuning_del).ok();
    let mut del = portmap_conf(&chained);
    del["prevResult"] = chained.clone();
    call(&portmap, &Call::new("DEL", "pod1", Some(&ns)), &del).ok();
    let mut ours_del = conf.clone();
    ours_del["prevResult"] = chained;
    call(&ours(), &Call::new("DEL", "pod1", Some(&ns)), &ours_del).ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect("10.79.0.1:18081").is_ok() {
        assert!(Instant::now() < deadline, "the host port still answers");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(reservations(&data.join("chain")).is_empty());
}
