//! The edges of bridge and CNI networks end to end: IPv6 usable at once, published
//! ports on both families, the host's loopback kept from containers, bridges the user
//! owns, and what a CNI conflist declares. All inside the test's private namespace.

use container_tests::{links, read_from, setup, World};

/// Issue 19.4: the runtime's IPv6 addresses skip DAD, so the first packet after start
/// goes out. One ping each, no retry: a tentative address fails at once.
#[test]
fn ipv6_answers_at_once_after_start() {
    let s = setup();
    let w = &s.world;
    w.ok(&[
        "network",
        "create",
        "--subnet",
        "10.71.0.0/24",
        "--subnet-v6",
        "fd71::/64",
        "v6n",
    ]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        "v6n,ip6=fd71::10",
        "--rootfs",
        &s.rootfs,
        "--",
        "sleep",
        "1000",
    ]);
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "v6n",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "ping6 -c 1 -W 5 fd71::1 >/dev/null && echo gateway-ok; \
         ping6 -c 1 -W 5 fd71::10 >/dev/null && echo peer-ok",
    ]);
    assert!(out.contains("gateway-ok"), "{out}");
    assert!(out.contains("peer-ok"), "{out}");
    w.ok(&["rm", "-f", "peer"]);
}

/// The IPv4 addresses of `link`, as `ip -j addr` shows them.
fn ipv4_of(link: &str) -> Vec<String> {
    container_tests::ip_json(&["-4", "addr", "show", "dev", link])[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"])))
        .collect()
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("ip");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

/// Issue 19.5: `network rm` removes the bridge only when the runtime made it, and
/// knows which it made across a restart of the apiserver and the network helper.
#[test]
fn network_rm_leaves_a_users_bridge_and_removes_its_own() {
    let mut s = setup();
    ip(&["link", "add", "userbr0", "type", "bridge"]);
    ip(&["addr", "add", "192.0.2.1/24", "dev", "userbr0"]);
    let w = &s.world;
    w.ok(&[
        "network",
        "create",
        "--subnet",
        "10.72.0.0/24",
        "--opt",
        "bridge=userbr0",
        "theirs",
    ]);
    w.ok(&[
        "network",
        "create",
        "--subnet",
        "10.73.0.0/24",
        "--opt",
        "bridge=ourbr0",
        "mine",
    ]);
    assert!(links().contains(&"ourbr0".to_string()), "created by setup");
    // Both are used: a container reaches its gateway on the user's bridge.
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "theirs",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "ping -c 1 -W 5 10.72.0.1 >/dev/null && echo ok",
    ]);
    assert!(out.contains("ok"), "{out}");

    // A restart of everything: what was created is known from disk.
    s.world.kill_apiserver();
    container_tests::kill_helpers_under(&s.world.run_dir());
    s.world.start_apiserver();
    let w = &s.world;
    w.ok(&["network", "rm", "theirs", "mine"]);
    let now = links();
    assert!(
        now.contains(&"userbr0".to_string()),
        "the user's bridge stays: {now:?}"
    );
    // With its own address, less the gateway the network put on it.
    assert_eq!(ipv4_of("userbr0"), ["192.0.2.1/24"]);
    assert!(!now.contains(&"ourbr0".to_string()), "ours goes: {now:?}");
    assert!(!s.world.root().join("networks/mine.bridge").exists());

    // Made again under the same name, it is the user's again.
    w.ok(&[
        "network",
        "create",
        "--subnet",
        "10.73.0.0/24",
        "--opt",
        "bridge=userbr0",
        "again",
    ]);
    w.ok(&["network", "rm", "again"]);
    assert!(links().contains(&"userbr0".to_string()));
    assert_eq!(ipv4_of("userbr0"), ["192.0.2.1/24"]);
}

/// Issue 19.14: on a dual-stack network a port without a host address is published on
/// both families, an IPv6 host address works, and a host address that is not local is
/// refused at create.
#[test]
fn ports_are_published_on_ipv6_and_only_on_local_addresses() {
    let s = setup();
    let w = &s.world;
    // A host address of the test's "host" namespace to publish on.
    ip(&["addr", "add", "fd99::1/128", "dev", "lo", "nodad"]);
    w.ok(&[
        "network",
        "create",
        "--subnet",
        "10.74.0.0/24",
        "--subnet-v6",
        "fd74::/64",
        "dual",
    ]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "dual",
        "-p",
        "8080:7000",
        "-p",
        "[fd99::1]:8081:7000",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "while true; do echo hello | nc -l -p 7000; done",
    ]);
    assert_eq!(read_from("10.74.0.1:8080").trim(), "hello");
    assert_eq!(read_from("[fd74::1]:8080").trim(), "hello");
    assert_eq!(read_from("[fd99::1]:8081").trim(), "hello");

    for (spec, ip) in [
        ("192.0.2.99:8090:80", "192.0.2.99"),
        ("[fd98::5]:8091:80", "fd98::5"),
    ] {
        let out = w.cli(&[
            "create",
            "--network",
            "dual",
            "-p",
            spec,
            "--rootfs",
            &s.rootfs,
            "--",
            "true",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "invalid: {err}");
        assert!(
            err.contains(&format!(
                "cannot publish on {ip}: not an address of this host"
            )),
            "{err}"
        );
    }
    let err = w.fails(&[
        "create",
        "-p",
        "[fd99::1]:8092:80",
        "--rootfs",
        &s.rootfs,
        "--",
        "true",
    ]);
    assert!(err.contains("has no IPv6 subnet"), "{err}");
    assert_eq!(
        w.json(&["ls", "-a", "--format", "json"])
            .as_array()
            .map(Vec::len),
        Some(1),
        "nothing was created"
    );
    w.ok(&["rm", "-f", "web"]);
}

/// A conflist of Debian's reference plugins: a bridge with host-local IPAM on `subnet`,
/// and, with `capabilities`, the `ips` capability on the bridge and a portmap plugin.
fn conflist(world: &World, name: &str, bridge: &str, subnet: &str, capabilities: bool) -> String {
    let mut main = serde_json::json!({
        "type": "bridge",
        "bridge": bridge,
        "isGateway": true,
        "ipMasq": false,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": subnet}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": world.root().join("cni-ipam").join(name),
        }
    });
    let mut plugins = vec![];
    if capabilities {
        main["capabilities"] = serde_json::json!({"ips": true});
        plugins.push(main);
        plugins.push(serde_json::json!({
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true,
        }));
    } else {
        plugins.push(main);
    }
    let list = serde_json::json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins});
    let path = world.iso.dir().join(format!("{name}.conflist"));
    std::fs::write(&path, list.to_string()).expect("write conflist");
    format!("conflist={}", path.display())
}

/// Issue 19.6: the subnets a conflist's IPAM declares take part in the overlap check,
/// both ways, and in the choice of a subnet.
#[test]
fn cni_subnets_count_in_the_overlap_check() {
    let s = setup();
    let w = &s.world;
    let cn = conflist(w, "cn", "cni-cn0", "10.55.0.0/24", false);
    w.ok(&["network", "create", "--plugin", "cni", "--opt", &cn, "cn"]);
    let err = w.fails(&["network", "create", "--subnet", "10.55.0.0/24", "br"]);
    assert!(err.contains("overlaps network cn (10.55.0.0/24)"), "{err}");

    w.ok(&["network", "create", "--subnet", "10.56.0.0/24", "br2"]);
    let late = conflist(w, "late", "cni-late0", "10.56.0.128/25", false);
    let err = w.fails(&[
        "network", "create", "--plugin", "cni", "--opt", &late, "late",
    ]);
    assert!(
        err.contains("subnet 10.56.0.128/25 overlaps network br2"),
        "{err}"
    );

    // The pool's next /24 after default's is a conflist's: a new network skips it.
    let pooled = conflist(w, "pooled", "cni-pool0", "10.88.1.0/24", false);
    w.ok(&[
        "network", "create", "--plugin", "cni", "--opt", &pooled, "pooled",
    ]);
    w.ok(&["network", "create", "auto"]);
    let inspect = w.json(&["network", "inspect", "auto"]);
    assert_eq!(inspect[0]["config"]["subnet"], "10.88.2.0/24");
    let names: Vec<String> = w
        .json(&["network", "ls", "--format", "json"])
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect();
    assert!(!names.contains(&"br".to_string()) && !names.contains(&"late".to_string()));
}

/// Issue 19.16: `ip=` and `-p` on a CNI network reach the plugins as the `ips` and
/// `portMappings` capabilities, and are refused clearly by a conflist without them.
#[test]
fn cni_networks_take_static_addresses_and_ports_through_capabilities() {
    let s = setup();
    let w = &s.world;
    let caps = conflist(w, "capnet", "cni-cap0", "10.57.0.0/24", true);
    w.ok(&[
        "network", "create", "--plugin", "cni", "--opt", &caps, "capnet",
    ]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "capnet,ip=10.57.0.50",
        "-p",
        "8085:7000",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "while true; do echo hello | nc -l -p 7000; done",
    ]);
    let addrs = w.ok(&[
        "exec", "web", "--", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(addrs.contains("10.57.0.50/24"), "{addrs}");
    // portmap's DNAT answers on a host address.
    assert_eq!(read_from("10.57.0.1:8085").trim(), "hello");
    w.ok(&["rm", "-f", "web"]);
    // portmap's DEL took its rules: the port is closed again.
    assert!(std::net::TcpStream::connect("10.57.0.1:8085").is_err());

    let plain = conflist(w, "plain", "cni-plain0", "10.58.0.0/24", false);
    w.ok(&[
        "network", "create", "--plugin", "cni", "--opt", &plain, "plain",
    ]);
    let refused = [
        (
            &["--network", "plain,ip=10.58.0.9"][..],
            "cannot assign a static address",
        ),
        (
            &["--network", "plain,ip=10.99.0.9"],
            "cannot assign a static address",
        ),
        (
            &["--network", "plain", "-p", "8086:80"],
            "cannot publish them",
        ),
        (
            &["--network", "capnet,ip=10.99.0.9"],
            "address 10.99.0.9 is not in network capnet (10.57.0.0/24)",
        ),
    ];
    for (flags, want) in refused {
        let mut args = vec!["create"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--rootfs", &s.rootfs, "--", "true"]);
        let err = w.fails(&args);
        assert!(err.contains(want), "{flags:?}: {err}");
    }
}

/// Issue 19.9 end to end, with the bridge plugin's own `route_localnet`: a container
/// that reroutes 127.0.0.1 via its gateway cannot reach a UDP service the host bound to
/// 127.0.0.1 only (busybox's nslookup sends the datagram), and a port published on
/// 127.0.0.1 still answers the host.
#[test]
fn a_container_cannot_reach_the_hosts_loopback() {
    let s = setup();
    let w = &s.world;
    let dns = std::net::UdpSocket::bind("127.0.0.1:53").expect("bind 127.0.0.1:53");
    dns.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .expect("timeout");
    w.ok(&["network", "create", "--subnet", "10.76.0.0/24", "lonet"]);
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "lonet",
        "--rootfs",
        &s.rootfs,
        // The attacker this plays has CAP_NET_ADMIN and writable net sysctls (in its
        // own network namespace): a default container has neither.
        "--cap-add",
        "NET_ADMIN",
        "--security-opt",
        "systempaths=unconfined",
        "--",
        "sh",
        "-c",
        "ip route del local 127.0.0.1 dev lo table local; \
         ip route del local 127.0.0.0/8 dev lo table local; \
         echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet; \
         echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet; \
         ip route add 127.0.0.1/32 via 10.76.0.1 dev eth0 && echo routed; \
         nslookup -timeout=1 -retry=1 probe 127.0.0.1 >/dev/null 2>&1; echo sent",
    ]);
    assert!(out.contains("routed") && out.contains("sent"), "{out}");
    let mut buf = [0u8; 512];
    assert!(
        dns.recv_from(&mut buf).is_err(),
        "a container's datagram reached the host's 127.0.0.1"
    );

    w.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "lonet",
        "-p",
        "127.0.0.1:8088:7000",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "while true; do echo hello | nc -l -p 7000; done",
    ]);
    assert_eq!(read_from("127.0.0.1:8088").trim(), "hello");
    w.ok(&["rm", "-f", "web"]);
}
