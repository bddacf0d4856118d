mod common;

use std::collections::HashSet;
use std::fs;

use common::{host_local, ip, rs, Net};
use container_ipam::{Allocated, Holder, Ipam, IpamError, Special};

fn addr(a: &[Allocated]) -> Vec<String> {
    a.iter().map(|a| a.address.to_string()).collect()
}

#[test]
fn writes_host_local_layout() {
    let net = Net::new(vec![rs("10.1.0.0/24"), rs("fd00:1::/120")]);
    let ipam = net.ipam();
    let got = ipam.allocate("ctr1", "eth0", &[]).unwrap();
    assert_eq!(addr(&got), ["10.1.0.2/24", "fd00:1::2/120"]);
    assert_eq!(got[0].gateway, Some(ip("10.1.0.1")));
    assert_eq!(got[1].gateway, Some(ip("fd00:1::1")));
    assert_eq!(
        net.files(),
        [
            "10.1.0.2",
            "fd00:1::2",
            "last_reserved_ip.0",
            "last_reserved_ip.1",
            "lock"
        ]
    );
    assert_eq!(net.read("10.1.0.2"), "ctr1\r\neth0");
    assert_eq!(net.read("fd00:1::2"), "ctr1\r\neth0");
    assert_eq!(net.read("last_reserved_ip.0"), "10.1.0.2");
    assert_eq!(net.read("last_reserved_ip.1"), "fd00:1::2");
}

#[test]
fn round_robin_continues_after_last_reserved() {
    let net = Net::new(vec![rs("10.2.0.0/29")]);
    let ipam = net.ipam();
    let a = ipam.allocate("a", "eth0", &[]).unwrap();
    let b = ipam.allocate("b", "eth0", &[]).unwrap();
    assert_eq!(addr(&a), ["10.2.0.2/29"]);
    assert_eq!(addr(&b), ["10.2.0.3/29"]);
    // A released address is not reused right away: the walk goes on after the last one.
    ipam.release("a", "eth0").unwrap();
    let c = ipam.allocate("c", "eth0", &[]).unwrap();
    assert_eq!(addr(&c), ["10.2.0.4/29"]);
    for id in ["d", "e"] {
        ipam.allocate(id, "eth0", &[]).unwrap();
    }
    // .6 was the last; wrapping skips .7 (broadcast), .0 (network), .1 (gateway).
    let f = ipam.allocate("f", "eth0", &[]).unwrap();
    assert_eq!(addr(&f), ["10.2.0.2/29"]);
    // The position survives a reopen: it lives on disk.
    let again = Ipam::open(&net.dir(), net.ranges.clone()).unwrap();
    ipam.release("c", "eth0").unwrap();
    let g = again.allocate("g", "eth0", &[]).unwrap();
    assert_eq!(addr(&g), ["10.2.0.4/29"]);
}

#[test]
fn never_hands_out_gateway_network_or_broadcast() {
    let net = Net::new(vec![rs("10.3.0.0/28").with_gateway(ip("10.3.0.9"))]);
    let ipam = net.ipam();
    let mut got = HashSet::new();
    for i in 0.. {
        match ipam.allocate(&format!("c{i}"), "eth0", &[]) {
            Ok(a) => assert!(got.insert(a[0].address.addr())),
            Err(IpamError::Exhausted { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    // .1 to .14 minus the gateway .9.
    assert_eq!(got.len(), 13);
    for special in ["10.3.0.0", "10.3.0.9", "10.3.0.15"] {
        assert!(!got.contains(&ip(special)), "{special} handed out");
    }
    for (req, kind) in [
        ("10.3.0.9", Special::Gateway),
        ("10.3.0.0", Special::Network),
        ("10.3.0.15", Special::Broadcast),
    ] {
        match ipam.allocate("x", "eth0", &[ip(req)]) {
            Err(IpamError::ReservedAddress { ip: i, kind: k, .. }) => {
                assert_eq!((i, k), (ip(req), kind))
            }
            other => panic!("{req}: {other:?}"),
        }
    }
}

#[test]
fn exhaustion_of_a_slash_30() {
    let net = Net::new(vec![rs("10.4.0.0/30")]);
    let ipam = net.ipam();
    // .0 network, .1 gateway, .3 broadcast: only .2 is usable.
    assert_eq!(
        addr(&ipam.allocate("a", "eth0", &[]).unwrap()),
        ["10.4.0.2/30"]
    );
    let err = ipam.allocate("b", "eth0", &[]).unwrap_err();
    assert!(matches!(&err, IpamError::Exhausted { subnet } if subnet.to_string() == "10.4.0.0/30"));
    assert_eq!(err.to_string(), "no free address left in 10.4.0.0/30");
    assert_eq!(net.files(), ["10.4.0.2", "last_reserved_ip.0", "lock"]);
}

#[test]
fn static_request_and_conflict() {
    let net = Net::new(vec![rs("10.5.0.0/24"), rs("fd00:5::/64")]);
    let ipam = net.ipam();
    let got = ipam
        .allocate("a", "eth0", &[ip("fd00:5::50"), ip("10.5.0.50")])
        .unwrap();
    assert_eq!(addr(&got), ["10.5.0.50/24", "fd00:5::50/64"]);

    let err = ipam.allocate("b", "eth0", &[ip("10.5.0.50")]).unwrap_err();
    match &err {
        IpamError::AddressInUse { ip: i, holder } => {
            assert_eq!(*i, ip("10.5.0.50"));
            assert_eq!(
                holder.as_ref(),
                Some(&Holder {
                    container_id: "a".into(),
                    ifname: "eth0".into()
                })
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "address 10.5.0.50 is already reserved by container a (eth0)"
    );
    // The failed attempt left nothing behind, not even b's v6 address.
    assert_eq!(common::holders(&ipam).len(), 2);

    assert!(matches!(
        ipam.allocate("b", "eth0", &[ip("10.6.0.1")]),
        Err(IpamError::NotInAnyRange { .. })
    ));
    assert!(matches!(
        ipam.allocate("b", "eth0", &[ip("10.5.0.7"), ip("10.5.0.8")]),
        Err(IpamError::DuplicateRequest { .. })
    ));
    // The same attachment cannot take a second address in a range set it already holds.
    assert!(matches!(
        ipam.allocate("a", "eth0", &[]),
        Err(IpamError::AlreadyAllocated { .. })
    ));
    // Round-robin carries on from the static address, as in host-local.
    assert_eq!(
        addr(&ipam.allocate("c", "eth0", &[]).unwrap()),
        ["10.5.0.51/24", "fd00:5::51/64"]
    );
}

#[test]
fn ipv6_range_with_explicit_bounds() {
    let set =
        rs("2001:db8:0:0:1::/80").with_range(ip("2001:db8::1:0:0:fffe"), ip("2001:db8::1:0:1:1"));
    let net = Net::new(vec![set]);
    let ipam = net.ipam();
    let mut got = Vec::new();
    while let Ok(a) = ipam.allocate(&format!("c{}", got.len()), "eth0", &[]) {
        got.push(a[0].address.to_string());
    }
    assert_eq!(
        got,
        [
            "2001:db8::1:0:0:fffe/80",
            "2001:db8::1:0:0:ffff/80",
            "2001:db8::1:0:1:0/80",
            "2001:db8::1:0:1:1/80"
        ]
    );
    assert!(net.files().contains(&"2001:db8::1:0:1:0".to_string()));
}

#[test]
fn all_or_nothing_across_v4_and_v6() {
    let net = Net::new(vec![rs("10.7.0.0/24"), rs("fd00:7::/126")]);
    let ipam = net.ipam();
    ipam.allocate("a", "eth0", &[]).unwrap();
    ipam.allocate("b", "eth0", &[]).unwrap();
    let before = net.files();
    // v4 has room, v6 (fd00:7::2 and ::3) is full: the v4 address must not stay reserved.
    let err = ipam.allocate("c", "eth0", &[]).unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { subnet } if subnet.to_string() == "fd00:7::/126"));
    assert_eq!(net.files(), before);
    assert!(common::holders(&ipam).values().all(|(id, _)| id != "c"));

    // Same with a conflicting static v6 address.
    ipam.release("b", "eth0").unwrap();
    let err = ipam.allocate("c", "eth0", &[ip("fd00:7::2")]).unwrap_err();
    assert!(matches!(err, IpamError::AddressInUse { .. }));
    assert!(common::holders(&ipam).values().all(|(id, _)| id != "c"));
    assert_eq!(ipam.reservations().unwrap().len(), 2);
}

#[test]
fn release_is_exact_and_idempotent() {
    let net = Net::new(vec![rs("10.8.0.0/24"), rs("fd00:8::/120")]);
    let ipam = net.ipam();
    ipam.allocate("a", "eth0", &[]).unwrap();
    ipam.allocate("a", "eth1", &[]).unwrap();
    ipam.allocate("b", "eth0", &[]).unwrap();
    let released = ipam.release("a", "eth0").unwrap();
    assert_eq!(released, [ip("10.8.0.2"), ip("fd00:8::2")]);
    assert!(ipam.release("a", "eth0").unwrap().is_empty());
    assert!(ipam.release("nobody", "eth0").unwrap().is_empty());
    let left: Vec<_> = ipam
        .reservations()
        .unwrap()
        .into_iter()
        .map(|r| (r.ip.to_string(), r.container_id, r.ifname))
        .collect();
    assert_eq!(left.len(), 4);
    assert!(left
        .iter()
        .all(|(_, id, ifn)| (id, ifn) != (&"a".to_string(), &"eth0".to_string())));

    // Old-format files (id only) go only when nothing matches exactly, as in host-local.
    net.write_raw("10.8.0.100", "old");
    assert_eq!(ipam.release("old", "eth0").unwrap(), [ip("10.8.0.100")]);
}

#[test]
fn junk_files_are_ignored() {
    let net = Net::new(vec![rs("10.9.0.0/29")]);
    let ipam = net.ipam();
    for junk in [
        "junk",
        "10.9.0.300",
        "10.9.0.2.bak",
        "FD00::2",
        ".hidden",
        "last_reserved_ip.7",
    ] {
        net.write_raw(junk, "whatever\r\neth0");
    }
    fs::create_dir(net.dir().join("10.9.0.3")).unwrap();
    net.write_raw("last_reserved_ip.0", "not an ip");

    // The directory named like an address still blocks it (O_EXCL fails), so .4 is next.
    let got = ipam.allocate("a", "eth0", &[]).unwrap();
    assert_eq!(addr(&got), ["10.9.0.2/29"]);
    let got = ipam.allocate("b", "eth0", &[]).unwrap();
    assert_eq!(addr(&got), ["10.9.0.4/29"]);
    assert_eq!(ipam.reservations().unwrap().len(), 2);

    // GC lists the directory: it names what it ignores, and with nobody alive removes
    // the reservations and nothing else.
    let (logs, released) = common_logs::capture(|| ipam.gc(&HashSet::new()));
    assert_eq!(released.unwrap().len(), 2);
    assert!(logs.contains("not an IP reservation"), "{logs}");
    assert!(
        logs.contains("junk") && logs.contains("10.9.0.2.bak"),
        "{logs}"
    );
    // A directory named like an address is no reservation either, and is said too.
    assert!(logs.contains("file=10.9.0.3\n"), "{logs}");
    for junk in [
        "junk",
        "10.9.0.300",
        "10.9.0.2.bak",
        "FD00::2",
        ".hidden",
        "10.9.0.3",
    ] {
        assert!(net.dir().join(junk).exists(), "{junk} was removed");
    }
}

#[test]
fn rejects_unsafe_names() {
    let root = tempfile::tempdir().unwrap();
    for bad in ["..", ".", "a/b", "a\0b", ""] {
        assert!(
            matches!(
                Ipam::open_network(root.path(), bad, vec![]),
                Err(IpamError::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    let net = Net::new(vec![rs("10.10.0.0/24")]);
    let ipam = net.ipam();
    for bad in ["..", "a/b", "a\0b", "a\r\nb", ""] {
        assert!(matches!(
            ipam.allocate(bad, "eth0", &[]),
            Err(IpamError::InvalidName { .. })
        ));
        assert!(matches!(
            ipam.release(bad, "eth0"),
            Err(IpamError::InvalidName { .. })
        ));
    }
    assert!(matches!(
        ipam.allocate("ok", "eth0/x", &[]),
        Err(IpamError::InvalidName { .. })
    ));
    assert!(matches!(
        Ipam::open(&net.dir(), vec![rs("10.10.0.0/24"), rs("10.10.0.128/25")]),
        Err(IpamError::InvalidRange { .. })
    ));
}

/// Both directions of sharing: host-local sees and honours our files, we see its files.
#[test]
fn shares_directory_with_host_local() {
    host_local();
    let net = Net::new(vec![rs("10.11.0.0/29"), rs("fd00:11::/125")]);
    let ipam = net.ipam();
    assert_eq!(
        addr(&ipam.allocate("ours", "eth0", &[]).unwrap()),
        ["10.11.0.2/29", "fd00:11::2/125"]
    );
    // host-local continues our round-robin.
    let theirs: Vec<_> = net
        .host_local_add("theirs", "eth0")
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(theirs, ["10.11.0.3/29", "fd00:11::3/125"]);
    // We continue theirs.
    assert_eq!(
        addr(&ipam.allocate("ours2", "eth0", &[]).unwrap()),
        ["10.11.0.4/29", "fd00:11::4/125"]
    );
    let h = common::holders(&ipam);
    assert_eq!(h[&ip("10.11.0.3")], ("theirs".into(), "eth0".into()));
    // host-local refuses a static address we hold (CNI_ARGS IP=...).
    let out = common::run_with_stdin(
        {
            let mut c = net.host_local_cmd("ADD", "x", "eth0");
            c.env("CNI_ARGS", "IP=10.11.0.2");
            c
        },
        &net.host_local_config(),
    );
    assert!(!out.status.success(), "host-local took an address we hold");
    // host-local DEL understands our files, and we release what it wrote.
    net.host_local_del("ours", "eth0");
    assert_eq!(ipam.release("theirs", "eth0").unwrap().len(), 2);
    let left: Vec<_> = ipam
        .reservations()
        .unwrap()
        .into_iter()
        .map(|r| r.container_id)
        .collect();
    assert_eq!(left, ["ours2", "ours2"]);
}

mod common_logs {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `f` with a subscriber that records log lines, and returns them.
    pub fn capture<T>(f: impl FnOnce() -> T) -> (String, T) {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish();
        let out = tracing::subscriber::with_default(sub, f);
        let logs = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
        (logs, out)
    }
}
