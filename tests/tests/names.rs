//! Names on bridge networks (issue 13): each network's helper answers its running
//! containers' names, hostnames and aliases on the gateway, port 53, and forwards the
//! rest to the host's resolvers. All traffic stays inside the test's namespaces.

use std::net::UdpSocket;
use std::process::Output;

use container_tests::{eventually, setup, Setup};

fn run(s: &Setup, name: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name, "--rootfs", &s.rootfs];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sleep", "1000"]);
    s.world.ok(&args);
}

fn exec(s: &Setup, ctr: &str, cmd: &[&str]) -> Output {
    let mut args = vec!["exec", ctr];
    args.extend_from_slice(cmd);
    s.world.cli(&args)
}

/// What busybox nslookup says NAME is, from inside CTR, or None if it can't resolve.
fn lookup(s: &Setup, ctr: &str, name: &str) -> Option<String> {
    let out = exec(s, ctr, &["nslookup", name]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // busybox prints the server first, then "Name:" and "Address: IP" of the answer.
    let answer = text.split_once("Name:")?.1.to_string();
    (out.status.success() && answer.contains("Address")).then_some(answer)
}

fn address_of(s: &Setup, ctr: &str, network: &str) -> String {
    let v = s.world.json(&["inspect", ctr]);
    v[0]["state"]["allocations"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["network"] == network))
        .and_then(|a| a["addresses"][0].as_str())
        .map(|a| a.split('/').next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("{ctr} has no address on {network}: {v}"))
}

#[test]
fn containers_on_one_network_resolve_each_other_by_name_and_alias() {
    let s = setup();
    s.world
        .ok(&["network", "create", "--subnet", "10.91.0.0/24", "app"]);
    run(
        &s,
        "db",
        &["--network", "app", "--network-alias", "database"],
    );
    run(&s, "web", &["--network", "app,alias=www"]);
    let db = address_of(&s, "db", "app");
    let web = address_of(&s, "web", "app");

    let resolv =
        String::from_utf8_lossy(&exec(&s, "web", &["cat", "/etc/resolv.conf"]).stdout).into_owned();
    assert!(resolv.contains("nameserver 10.91.0.1"), "{resolv}");
    assert!(resolv.contains("search dns.container"), "{resolv}");

    for name in ["db", "database", "db.dns.container"] {
        let got = lookup(&s, "web", name).unwrap_or_else(|| panic!("{name} did not resolve"));
        assert!(got.contains(&db), "{name}: {got}");
    }
    let got = lookup(&s, "db", "www").expect("alias www");
    assert!(got.contains(&web), "{got}");
    // Its own name too, and a real packet goes to the address it gave.
    assert!(lookup(&s, "web", "web").expect("own name").contains(&web));
    let ping = exec(&s, "web", &["ping", "-c1", "-W2", "db"]);
    assert!(
        ping.status.success(),
        "ping db: {}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );
    // Reverse: the address names its container.
    let out = exec(&s, "web", &["nslookup", &db]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("db.dns.container"), "{text}");

    // Garbage at the port (short packets, a compression loop, random bytes, a TCP
    // client that announces a message and stalls): the server keeps answering.
    let junk = UdpSocket::bind("0.0.0.0:0").unwrap();
    let mut x: u32 = 0x1234_5678;
    for i in 0..2000u32 {
        let len = (i % 600) as usize;
        let mut p: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        if i % 3 == 0 && p.len() > 14 {
            // Header of one question whose name points at itself.
            p[..14].copy_from_slice(b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c");
        }
        let _ = junk.send_to(&p, "10.91.0.1:53");
    }
    let mut stalled = std::net::TcpStream::connect("10.91.0.1:53").expect("tcp 53");
    std::io::Write::write_all(&mut stalled, &[0xff, 0xff, 0x00]).unwrap();
    let got = lookup(&s, "web", "db").expect("db after the garbage");
    assert!(got.contains(&db), "{got}");
    // And over TCP, from the container (busybox's nslookup speaks UDP only: a framed
    // query through nc; the host's own connections are masqueraded, not on the network).
    let mut q = hickory_proto::op::Message::new();
    q.set_id(99)
        .set_recursion_desired(true)
        .add_query(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii("db.").unwrap(),
            hickory_proto::rr::RecordType::A,
        ));
    let bytes = q.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    let octal: String = framed.iter().map(|b| format!("\\{b:03o}")).collect();
    let script = format!("printf '{octal}' | nc -w 3 10.91.0.1 53 | od -An -tx1");
    let out = exec(&s, "web", &["sh", "-c", &script]);
    let hex: String = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect();
    let want: String = db
        .parse::<std::net::Ipv4Addr>()
        .unwrap()
        .octets()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // Length, then id 99 (0x0063), and db's address as the answer's data.
    assert!(
        hex.get(4..8) == Some("0063") && hex.ends_with(&want),
        "tcp answer: {hex}"
    );
    drop(stalled);
}

fn mac_of(link: &str) -> String {
    container_tests::ip_json(&["link", "show", "dev", link])[0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The gateway's MAC must not follow the bridge's ports: a container's cached neighbour
/// entry for its gateway (its name server) would go stale each time another container
/// joins or leaves, and the gateway be unreachable until probed again.
#[test]
fn the_gateways_mac_stays_as_containers_come_and_go() {
    let s = setup();
    s.world
        .ok(&["network", "create", "--subnet", "10.98.0.0/24", "m1"]);
    let bridge = s.world.json(&["network", "inspect", "m1"])[0]["state"]["link"]
        .as_str()
        .expect("bridge")
        .to_string();
    let before = mac_of(&bridge);
    run(&s, "p1", &["--network", "m1"]);
    assert_eq!(mac_of(&bridge), before, "a port joined");
    run(&s, "p2", &["--network", "m1"]);
    s.world.ok(&["rm", "-f", "p1"]);
    assert_eq!(mac_of(&bridge), before, "a port left");
}

#[test]
fn names_stay_on_their_network_and_leave_with_their_container() {
    let s = setup();
    s.world
        .ok(&["network", "create", "--subnet", "10.92.0.0/24", "n1"]);
    s.world
        .ok(&["network", "create", "--subnet", "10.93.0.0/24", "n2"]);
    run(&s, "a", &["--network", "n1"]);
    run(&s, "b", &["--network", "n1"]);
    run(&s, "other", &["--network", "n2"]);
    assert!(lookup(&s, "a", "b").is_some());
    // Not across networks: neither from its own server nor by asking n1's.
    assert_eq!(lookup(&s, "other", "a"), None);
    let a = address_of(&s, "a", "n1");
    let out = exec(&s, "other", &["nslookup", "a", "10.92.0.1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("REFUSED") && !text.contains(&a),
        "n1's server answered a stranger: {text}"
    );
    // A stopped container's name goes, and comes back at its (new) address.
    s.world.ok(&["stop", "-t", "1", "b"]);
    assert_eq!(lookup(&s, "a", "b"), None, "b still resolves after stop");
    s.world.ok(&["start", "b"]);
    let b = address_of(&s, "b", "n1");
    let got = lookup(&s, "a", "b").expect("b after its restart");
    assert!(got.contains(&b), "{got}");
    s.world.ok(&["rm", "-f", "b"]);
    assert_eq!(lookup(&s, "a", "b"), None, "b still resolves after rm");
    // The name is free again.
    run(&s, "b", &["--network", "n1"]);
    assert!(lookup(&s, "a", "b").is_some(), "b after rm and a new run");
}

#[test]
fn name_and_alias_conflicts_are_refused_and_change_nothing() {
    let s = setup();
    s.world
        .ok(&["network", "create", "--subnet", "10.94.0.0/24", "n1"]);
    run(&s, "db", &["--network", "n1", "--network-alias", "store"]);
    let before = s.world.ok(&["ls", "-a", "-q"]);
    for (args, what) in [
        (vec!["--name", "db"], "already exists"),
        (vec!["--name", "store"], "taken"),
        (vec!["--name", "x", "--network-alias", "db"], "alias db"),
        (
            vec!["--name", "y", "--network-alias", "bad_alias!"],
            "invalid alias",
        ),
    ] {
        let mut full = vec!["run", "-d", "--rootfs", &s.rootfs, "--network", "n1"];
        full.extend_from_slice(&args);
        full.extend_from_slice(&["--", "true"]);
        let out = s.world.cli(&full);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(what), "{args:?}: {err}");
    }
    assert_eq!(s.world.ok(&["ls", "-a", "-q"]), before);
}

#[test]
fn verbs_take_a_unique_prefix() {
    let s = setup();
    run(&s, "alpha1", &[]);
    run(&s, "alpha2", &[]);
    run(&s, "beta", &[]);
    assert_eq!(s.world.json(&["inspect", "bet"])[0]["config"]["id"], "beta");
    let err = s.world.fails(&["inspect", "alp"]);
    assert!(
        err.contains("ambiguous") && err.contains("alpha1, alpha2"),
        "{err}"
    );
    s.world.ok(&["rm", "-f", "be"]);
    assert!(!s.world.ok(&["ls", "-a", "-q"]).contains("beta"));
}

/// A resolver of the test's own on 127.0.0.1:53 (inside its network namespace),
/// answering every A query with 192.0.2.77.
fn fake_upstream() -> std::thread::JoinHandle<()> {
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::{rdata::A, RData, Record};
    let sock = UdpSocket::bind("127.0.0.1:53").expect("bind 127.0.0.1:53 in the test netns");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = q.clone();
            r.set_message_type(MessageType::Response);
            if let Some(query) = q.queries().first() {
                r.add_answer(Record::from_rdata(
                    query.name().clone(),
                    5,
                    RData::A(A("192.0.2.77".parse().unwrap())),
                ));
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), from);
        }
    })
}

#[test]
fn other_names_go_to_the_hosts_resolvers() {
    // The host's resolv.conf, as this test's mount namespace sees it (the apiserver and
    // its helpers are started from this thread and see the same).
    let Setup { mut world, rootfs } = {
        let world = container_tests::World::new();
        let rootfs = container_tests::busybox_rootfs(world.iso.dir())
            .display()
            .to_string();
        Setup { world, rootfs }
    };
    let conf = world.iso.dir().join("resolv.conf");
    std::fs::write(&conf, "nameserver 127.0.0.1\n").unwrap();
    nix::mount::mount(
        Some(&conf),
        "/etc/resolv.conf",
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .expect("bind a resolv.conf over the test's own");
    let _upstream = fake_upstream();
    world.start_apiserver();
    let s = Setup { world, rootfs };
    s.world
        .ok(&["network", "create", "--subnet", "10.95.0.0/24", "out"]);
    s.world.ok(&[
        "network",
        "create",
        "--subnet",
        "10.96.0.0/24",
        "--internal",
        "inner",
    ]);
    run(&s, "c", &["--network", "out"]);
    run(&s, "d", &["--network", "inner"]);
    let got = lookup(&s, "c", "example.test").expect("forwarded name");
    assert!(got.contains("192.0.2.77"), "{got}");
    // An internal network answers its own names only.
    assert_eq!(lookup(&s, "d", "example.test"), None);
    assert!(lookup(&s, "d", "d").is_some());
    // --dns replaces the networks' servers for that container.
    run(&s, "e", &["--network", "out", "--dns", "192.0.2.53"]);
    let resolv =
        String::from_utf8_lossy(&exec(&s, "e", &["cat", "/etc/resolv.conf"]).stdout).into_owned();
    assert_eq!(resolv, "nameserver 192.0.2.53\n");
    // --disable-dns: no server, and the host's servers (a loopback one is dropped).
    s.world.ok(&[
        "network",
        "create",
        "--subnet",
        "10.97.0.0/24",
        "--disable-dns",
        "quiet",
    ]);
    run(&s, "f", &["--network", "quiet"]);
    let resolv =
        String::from_utf8_lossy(&exec(&s, "f", &["cat", "/etc/resolv.conf"]).stdout).into_owned();
    assert!(!resolv.contains("10.97.0.1"), "{resolv}");
    eventually("no listener on quiet's gateway", || {
        UdpSocket::bind("10.97.0.1:53").is_ok()
    });
}
