//! Dual stack and IPv6-only networks end to end (issue 13): `network create --ipv6`
//! picks a free ULA /64, containers get both families (`ip6=` on `--network`, `--ip6`
//! on `connect`), an IPv6 default route and AAAA records, and a network given only
//! `--subnet-v6` carries IPv6 alone.

use std::net::Ipv6Addr;
use std::process::Output;

use container_tests::{setup, Setup, World};

fn sleeper(s: &Setup, name: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name, "--rootfs", &s.rootfs];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sleep", "1000"]);
    s.world.ok(&args);
}

fn exec(world: &World, ctr: &str, cmd: &[&str]) -> Output {
    let mut args = vec!["exec", ctr];
    args.extend_from_slice(cmd);
    world.cli(&args)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An IPv6 subnet as inspect shows it: its network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Net6(Ipv6Addr, u8);

impl Net6 {
    fn parse(s: &str) -> Net6 {
        let (a, l) = s.split_once('/').expect("CIDR");
        Net6(a.parse().expect("address"), l.parse().expect("length"))
    }
    fn host(self, n: u128) -> String {
        Ipv6Addr::from(u128::from(self.0) | n).to_string()
    }
    fn contains(self, other: Net6) -> bool {
        let mask = u128::MAX.checked_shl(128 - u32::from(self.1)).unwrap_or(0);
        u128::from(self.0) & mask == u128::from(other.0) & mask
    }
}

impl std::fmt::Display for Net6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.0, self.1)
    }
}

fn subnet_v6(world: &World, network: &str) -> (Option<String>, Net6) {
    let v = &world.json(&["network", "inspect", network])[0]["config"];
    let v6 = Net6::parse(
        v["subnet_v6"]
            .as_str()
            .unwrap_or_else(|| panic!("{network} has no IPv6 subnet: {v}")),
    );
    (v["subnet"].as_str().map(str::to_string), v6)
}

/// The container's addresses on `network`, without prefix lengths.
fn addresses(world: &World, ctr: &str, network: &str) -> Vec<std::net::IpAddr> {
    let v = world.json(&["inspect", ctr]);
    v[0]["state"]["allocations"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["network"] == network))
        .and_then(|a| a["addresses"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str()?.split('/').next()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn v6_of(world: &World, ctr: &str, network: &str) -> String {
    addresses(world, ctr, network)
        .into_iter()
        .find(|a| a.is_ipv6())
        .unwrap_or_else(|| panic!("{ctr} has no IPv6 address on {network}"))
        .to_string()
}

/// busybox nslookup's answer for an AAAA query.
fn aaaa(world: &World, ctr: &str, name: &str) -> String {
    let out = exec(world, ctr, &["nslookup", "-type=aaaa", name]);
    assert!(out.status.success(), "nslookup {name}: {}", text(&out));
    text(&out)
}

fn default_v6_route(world: &World, ctr: &str) -> String {
    let out = exec(world, ctr, &["ip", "-6", "route", "show", "default"]);
    assert!(out.status.success(), "ip -6 route: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ping6(world: &World, ctr: &str, target: &str) {
    let out = exec(world, ctr, &["ping", "-6", "-c1", "-W2", target]);
    assert!(
        out.status.success(),
        "{ctr}: ping -6 {target}: {}",
        text(&out)
    );
}

#[test]
fn ipv6_picks_a_free_ula_64_and_containers_get_both_families() {
    let s = setup();
    let w = &s.world;
    w.ok(&["network", "create", "--ipv6", "dual"]);
    w.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.94.2.0/24",
        "dual2",
    ]);
    let (v4, v6) = subnet_v6(w, "dual");
    let (v4b, v6b) = subnet_v6(w, "dual2");
    assert!(v4.is_some(), "dual stack keeps an IPv4 subnet");
    assert_eq!(v4b.as_deref(), Some("10.94.2.0/24"));
    for net in [v6, v6b] {
        assert_eq!(net.1, 64, "{net}");
        assert_eq!(net.0.octets()[0], 0xfd, "{net} is a ULA");
    }
    assert!(
        !v6.contains(v6b) && !v6b.contains(v6),
        "{v6} and {v6b} overlap"
    );
    // A picked prefix is taken like a given one.
    let taken = w.fails(&["network", "create", "--subnet-v6", &v6.to_string(), "clash"]);
    assert!(taken.contains("overlaps network dual"), "{taken}");

    let wanted = v6.host(0x50);
    sleeper(&s, "a", &["--network", "dual"]);
    sleeper(&s, "b", &["--network", &format!("dual,ip6={wanted}")]);
    let a = addresses(w, "a", "dual");
    assert!(
        a.iter().any(|x| x.is_ipv4()) && a.iter().any(|x| x.is_ipv6()),
        "{a:?}"
    );
    assert_eq!(v6_of(w, "b", "dual"), wanted);
    let gw6 = v6.host(1);
    assert!(
        default_v6_route(w, "a").contains(&format!("default via {gw6}")),
        "{}",
        default_v6_route(w, "a")
    );
    let got = aaaa(w, "a", "b");
    assert!(got.contains(&wanted), "AAAA of b: {got}");
    ping6(w, "a", "b");

    // `--ip6` on connect, on the second dual-stack network.
    let wanted_b = v6b.host(0x77);
    w.ok(&["network", "connect", "--ip6", &wanted_b, "dual2", "a"]);
    assert_eq!(v6_of(w, "a", "dual2"), wanted_b);
    let a2 = addresses(w, "a", "dual2");
    assert!(
        a2.iter().any(|x| x.is_ipv4()),
        "both families on connect: {a2:?}"
    );
    sleeper(&s, "c", &["--network", "dual2"]);
    let got = aaaa(w, "c", "a");
    assert!(got.contains(&wanted_b), "AAAA of a on dual2: {got}");
    ping6(w, "c", &wanted_b);
    // The first network keeps the default route.
    assert!(default_v6_route(w, "a").contains(&gw6));
    // An --ip6 outside the subnet is refused and changes nothing.
    let out = w.cli(&["network", "connect", "--ip6", "fd99::5", "dual2", "b"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(
        text(&out).contains("not in network dual2"),
        "{}",
        text(&out)
    );
    assert!(addresses(w, "b", "dual2").is_empty());
}

#[test]
fn an_ipv6_only_network_carries_containers_names_and_routes() {
    let s = setup();
    let w = &s.world;
    w.ok(&["network", "create", "--subnet-v6", "fd94:1::/64", "v6only"]);
    let (v4, v6) = subnet_v6(w, "v6only");
    assert_eq!(v4, None, "only an IPv6 subnet was given");
    assert_eq!(v6.to_string(), "fd94:1::/64");
    sleeper(&s, "x", &["--network", "v6only"]);
    sleeper(&s, "y", &["--network", "v6only"]);
    let x = addresses(w, "x", "v6only");
    assert!(!x.is_empty() && x.iter().all(|a| a.is_ipv6()), "{x:?}");
    let resolv = text(&exec(w, "x", &["cat", "/etc/resolv.conf"]));
    assert!(resolv.contains("nameserver fd94:1::1"), "{resolv}");
    assert!(default_v6_route(w, "x").contains("default via fd94:1::1"));
    let y = v6_of(w, "y", "v6only");
    let got = aaaa(w, "x", "y");
    assert!(got.contains(&y), "AAAA of y: {got}");
    ping6(w, "x", "y");
    // No IPv4 address to give: a static one is refused.
    let out = w.cli(&[
        "run",
        "--rm",
        "--network",
        "v6only,ip=10.1.1.1",
        "--rootfs",
        &s.rootfs,
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    let out = w.cli(&["system", "check"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A network that gives no IPv6 leaves the container's interface and its bridge port
/// without it: both have IPv6 off before they come up, so neither sends the
/// solicitations a bridge floods to every port. A dual-stack network's interface keeps
/// its link-local and its ULA.
#[test]
fn ipv6_is_off_where_the_network_gives_none() {
    let s = setup();
    let w = &s.world;
    let v6_in_kernel = std::path::Path::new("/proc/sys/net/ipv6").exists();
    assert!(v6_in_kernel, "this suite needs a kernel with IPv6");
    w.ok(&["network", "create", "--subnet", "10.94.7.0/24", "four"]);
    w.ok(&["network", "create", "--ipv6", "both"]);
    sleeper(&s, "c4", &["--network", "four"]);
    sleeper(&s, "c46", &["--network", "both"]);

    let inside = |ctr: &str, cmd: &[&str]| {
        let out = exec(w, ctr, cmd);
        assert!(out.status.success(), "{ctr}: {cmd:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let sysctl = ["cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"];
    assert_eq!(inside("c4", &sysctl).trim(), "1");
    let v6 = inside("c4", &["ip", "-6", "addr", "show", "dev", "eth0"]);
    assert!(v6.trim().is_empty(), "c4's eth0 has IPv6: {v6}");

    assert_eq!(inside("c46", &sysctl).trim(), "0");
    let v6 = inside("c46", &["ip", "-6", "addr", "show", "dev", "eth0"]);
    let ula = v6_of(w, "c46", "both");
    assert!(
        v6.contains(&ula) && v6.contains("fe80:"),
        "c46's eth0: {v6}"
    );

    // Every bridge port here (other tests' too) is a host end of ours.
    let ports: Vec<String> = container_tests::links()
        .into_iter()
        .filter(|l| l.starts_with("veth"))
        .collect();
    assert!(ports.len() >= 2, "host ends: {ports:?}");
    for port in ports {
        let path = format!("/proc/sys/net/ipv6/conf/{port}/disable_ipv6");
        match std::fs::read_to_string(&path) {
            Ok(v) => assert_eq!(v.trim(), "1", "{path}"),
            // Another test's container went away meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("{path}: {e}"),
        }
    }
}
