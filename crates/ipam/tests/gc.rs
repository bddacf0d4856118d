mod common;

use std::collections::HashSet;

use common::{host_local, ip, rs, Net};
use container_ipam::Reservation;

fn live(pairs: &[(&str, &str)]) -> HashSet<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Seed 004: reservations written by the real host-local binary, whose containers are gone,
/// are found on disk and released; live ones (ours and host-local's) stay.
#[test]
fn gc_releases_stale_host_local_reservations() {
    host_local();
    let net = Net::new(vec![rs("10.20.0.0/24"), rs("fd00:20::/120")]);
    let ipam = net.ipam();
    net.host_local_add("live-hl", "eth0");
    net.host_local_add("dead-hl", "eth0");
    net.host_local_add("dead-hl2", "net1");
    ipam.allocate("live-ours", "eth0", &[]).unwrap();
    ipam.allocate("dead-ours", "eth0", &[]).unwrap();
    // A container can be live with one interface and have leaked another.
    net.host_local_add("live-hl", "eth1");
    // host-local before ifname support wrote only the id.
    net.write_raw("10.20.0.200", "old-live");
    net.write_raw("10.20.0.201", "old-dead");
    net.write_raw("not-an-ip", "dead-hl");
    assert_eq!(ipam.reservations().unwrap().len(), 14);

    let released = ipam
        .gc(&live(&[
            ("live-hl", "eth0"),
            ("live-ours", "eth0"),
            ("old-live", "eth0"),
        ]))
        .unwrap();
    let mut gone: Vec<_> = released
        .iter()
        .map(|r| format!("{} {}", r.container_id, r.ifname))
        .collect();
    gone.sort();
    gone.dedup();
    assert_eq!(
        gone,
        [
            "dead-hl eth0",
            "dead-hl2 net1",
            "dead-ours eth0",
            "live-hl eth1",
            "old-dead "
        ]
    );
    assert_eq!(released.len(), 9);

    let mut left: Vec<_> = ipam
        .reservations()
        .unwrap()
        .into_iter()
        .map(|r| r.container_id)
        .collect();
    left.dedup();
    assert_eq!(
        left,
        ["live-hl", "live-ours", "old-live", "live-hl", "live-ours"]
    );
    assert!(net.dir().join("not-an-ip").exists());
    // The files really are gone from disk, not just from a view of them.
    for r in &released {
        assert!(!net.dir().join(r.ip.to_string()).exists(), "{}", r.ip);
    }

    // host-local agrees: a released container can ADD again (it refuses duplicates).
    net.host_local_add("dead-hl", "eth0");
    // A second GC with the same live set finds only the new leak.
    let again = ipam
        .gc(&live(&[
            ("live-hl", "eth0"),
            ("live-ours", "eth0"),
            ("old-live", "eth0"),
        ]))
        .unwrap();
    assert!(again.iter().all(|r| r.container_id == "dead-hl"));
    assert_eq!(again.len(), 2);
}

#[test]
fn gc_of_empty_or_missing_state() {
    let net = Net::new(vec![]);
    let ipam = net.ipam();
    assert!(ipam.gc(&HashSet::new()).unwrap().is_empty());
    // An empty file (a writer that crashed between create and write) belongs to nobody.
    net.write_raw("10.0.0.9", "");
    assert_eq!(
        ipam.gc(&live(&[("a", "eth0")])).unwrap(),
        [Reservation {
            ip: ip("10.0.0.9"),
            container_id: String::new(),
            ifname: String::new()
        }]
    );
}

#[test]
fn gc_removes_crash_debris_of_our_temp_files() {
    let net = Net::new(vec![rs("10.21.0.0/24")]);
    let ipam = net.ipam();
    net.write_raw(".container-ipam.tmp.reserve", "x\r\neth0");
    assert!(ipam.gc(&HashSet::new()).unwrap().is_empty());
    assert_eq!(net.files(), ["lock"]);
}

/// A GC with thousands of stale reservations removes them on several threads: exactly
/// the stale ones go, the index knows it (their addresses are handed out again), and
/// the live ones stay.
#[test]
fn a_large_gc_releases_exactly_the_stale_and_the_index_follows() {
    let net = Net::new(vec![rs("10.21.0.0/20")]);
    let ipam = net.ipam();
    let mut keep = Vec::new();
    for i in 0..1500 {
        let id = format!("c{i}");
        let got = ipam.allocate(&id, "eth0", &[]).unwrap();
        if i % 3 == 0 {
            keep.push((id, got[0].address.addr()));
        }
    }
    let live: HashSet<(String, String)> = keep
        .iter()
        .map(|(id, _)| (id.clone(), "eth0".to_string()))
        .collect();
    let released = ipam.gc(&live).unwrap();
    assert_eq!(released.len(), 1000);
    assert!(released
        .iter()
        .all(|r| !live.contains(&(r.container_id.clone(), r.ifname.clone()))));
    let mut held: Vec<_> = ipam
        .reservations()
        .unwrap()
        .into_iter()
        .map(|r| (r.container_id, r.ip))
        .collect();
    held.sort();
    let mut want = keep.clone();
    want.sort();
    assert_eq!(held, want);
    // Every released address can be had again, and none that is kept.
    let freed: HashSet<_> = released.iter().map(|r| r.ip).collect();
    let kept: HashSet<_> = keep.iter().map(|(_, ip)| *ip).collect();
    for r in &released {
        let again = ipam
            .allocate(&format!("re-{}", r.container_id), "eth0", &[r.ip])
            .unwrap();
        assert_eq!(again[0].address.addr(), r.ip);
    }
    assert!(freed.is_disjoint(&kept));
    assert!(
        ipam.gc(&live).unwrap().len() == 1000,
        "the re-allocated ones are stale too"
    );
}
