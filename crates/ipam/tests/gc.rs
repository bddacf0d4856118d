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
