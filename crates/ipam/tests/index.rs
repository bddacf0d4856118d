//! The index of a long-lived `Ipam` against every other writer of its directory: the
//! real host-local binary, hand edits, a directory removed under it, more changes than
//! the change marker's queue holds. After each step, what the index answers must be
//! what the files say, read here straight from disk, and no address may have two
//! holders. The short-lived mode (a full read per call) is held to the same.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::net::IpAddr;
use std::path::Path;

use common::{host_local, ip, rs, Net};
use container_ipam::{Ipam, IpamError, RangeSet};

/// ip -> "<id> <ifname>", read from the files, not through the crate.
fn on_disk(dir: &Path) -> BTreeMap<IpAddr, String> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let ip: IpAddr = e.file_name().to_str()?.parse().ok()?;
            let text = fs::read_to_string(e.path()).ok()?;
            let (id, ifname) = text.trim().split_once("\r\n").unwrap_or((text.trim(), ""));
            Some((ip, format!("{id} {ifname}")))
        })
        .collect()
}

/// What `ipam` answers, in the same shape.
fn indexed(ipam: &Ipam) -> BTreeMap<IpAddr, String> {
    ipam.reservations()
        .unwrap()
        .into_iter()
        .map(|r| (r.ip, format!("{} {}", r.container_id, r.ifname)))
        .collect()
}

fn assert_true_to_disk(net: &Net, ipam: &Ipam, step: &str) {
    assert_eq!(indexed(ipam), on_disk(&net.dir()), "after {step}");
}

fn open(net: &Net, long_lived: bool) -> Ipam {
    if long_lived {
        Ipam::open(&net.dir(), net.ranges.clone()).unwrap()
    } else {
        Ipam::open_short_lived(&net.dir(), net.ranges.clone()).unwrap()
    }
}

fn ranges() -> Vec<RangeSet> {
    // .1 is the gateway: .2 to .6 are the five addresses.
    vec![rs("10.60.0.0/29")]
}

/// host-local allocates while our index is live, then we allocate: we skip what it took
/// and continue its round-robin; it frees one, and we find it once ours are exhausted.
/// Then the other way round: host-local skips ours.
fn host_local_then_ours(long_lived: bool) {
    host_local();
    let net = Net::new(ranges());
    let ipam = open(&net, long_lived);
    let first = ipam.allocate("ours-a", "eth0", &[]).unwrap();
    assert_eq!(first[0].address.to_string(), "10.60.0.2/29");

    let hl1 = net.host_local_add("hl-1", "eth0");
    let hl2 = net.host_local_add("hl-2", "eth0");
    assert_eq!(
        [hl1[0].to_string(), hl2[0].to_string()],
        ["10.60.0.3/29", "10.60.0.4/29"]
    );
    assert_true_to_disk(&net, &ipam, "host-local's two ADDs");
    // Its cursor is ours now: the next is .5, not a retry of .3 and .4.
    let b = ipam.allocate("ours-b", "eth0", &[]).unwrap();
    assert_eq!(b[0].address.to_string(), "10.60.0.5/29");

    net.host_local_del("hl-1", "eth0");
    assert_true_to_disk(&net, &ipam, "host-local's DEL");
    let c = ipam.allocate("ours-c", "eth0", &[]).unwrap();
    assert_eq!(c[0].address.to_string(), "10.60.0.6/29");
    // Wrapping round finds the address host-local freed: an index that missed the DEL
    // would call the network full here.
    let d = ipam.allocate("ours-d", "eth0", &[]).unwrap();
    assert_eq!(d[0].address.to_string(), "10.60.0.3/29");
    assert!(matches!(
        ipam.allocate("ours-e", "eth0", &[]),
        Err(IpamError::Exhausted { .. })
    ));

    // The other way round: host-local, told nothing, skips all of ours.
    ipam.release("ours-b", "eth0").unwrap();
    let hl3 = net.host_local_add("hl-3", "eth0");
    assert_eq!(hl3[0].to_string(), "10.60.0.5/29");
    let out = net.run_host_local("ADD", "hl-4", "eth0");
    assert!(
        !out.status.success(),
        "host-local found room in a full network"
    );
    assert_true_to_disk(&net, &ipam, "host-local filling the network");
    let held: BTreeMap<IpAddr, String> = on_disk(&net.dir());
    assert_eq!(
        held.values().map(String::as_str).collect::<Vec<_>>(),
        [
            "ours-a eth0",
            "ours-d eth0",
            "hl-2 eth0",
            "hl-3 eth0",
            "ours-c eth0"
        ]
    );
}

#[test]
fn host_local_between_our_calls_long_lived() {
    host_local_then_ours(true);
}

#[test]
fn host_local_between_our_calls_short_lived() {
    host_local_then_ours(false);
}

/// A fixed-seed walk of ADDs and DELs by host-local, allocations and releases by us,
/// and hand edits, on two range sets. After every step each holder has exactly what it
/// was given, as the files say, and the index agrees.
fn interleaved(long_lived: bool) {
    host_local();
    let net = Net::new(vec![rs("10.61.0.0/28"), rs("fd00:61::/124")]);
    let ipam = open(&net, long_lived);
    let mut model: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    let mut seed = 0x5eed_u64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    for step in 0..80 {
        let who = format!("c{}", next(12));
        let action = next(6);
        let what = match action {
            0 | 1 if !model.contains_key(&who) => match ipam.allocate(&who, "eth0", &[]) {
                Ok(got) => {
                    model.insert(who.clone(), got.iter().map(|a| a.address.addr()).collect());
                    "ours allocate"
                }
                Err(IpamError::Exhausted { .. }) => "ours exhausted",
                Err(e) => panic!("step {step}: {e}"),
            },
            2 if !model.contains_key(&who) => {
                let out = net.run_host_local("ADD", &who, "eth0");
                if out.status.success() {
                    let got = common::parse_host_local_ips(&out.stdout);
                    model.insert(who.clone(), got.iter().map(|n| n.addr()).collect());
                    "host-local ADD"
                } else {
                    "host-local full"
                }
            }
            0 | 3 if model.contains_key(&who) => {
                ipam.release(&who, "eth0").unwrap();
                model.remove(&who);
                "ours release"
            }
            4 if model.contains_key(&who) => {
                net.host_local_del(&who, "eth0");
                model.remove(&who);
                "host-local DEL"
            }
            5 if model.contains_key(&who) => {
                // By hand, as `rm` would (both of its files).
                for ip in model.remove(&who).unwrap() {
                    fs::remove_file(net.dir().join(ip.to_string())).unwrap();
                }
                "removed by hand"
            }
            _ => continue,
        };
        let mut expected = BTreeMap::new();
        for (holder, ips) in &model {
            for ip in ips {
                assert!(
                    expected.insert(*ip, format!("{holder} eth0")).is_none(),
                    "step {step} ({what}): {ip} handed out twice"
                );
            }
        }
        assert_eq!(on_disk(&net.dir()), expected, "step {step} ({what})");
        assert_true_to_disk(&net, &ipam, &format!("step {step} ({what})"));
    }
}

#[test]
fn interleaved_with_host_local_and_hand_edits_long_lived() {
    interleaved(true);
}

#[test]
fn interleaved_with_host_local_and_hand_edits_short_lived() {
    interleaved(false);
}

/// `system check --fix` and a person both edit the directory by hand: a file removed
/// frees its address, a file written takes one, a file rewritten changes its holder.
#[test]
fn hand_edits_are_seen_by_a_live_index() {
    let net = Net::new(ranges());
    let ipam = net.ipam();
    for id in ["a", "b", "c", "d", "e"] {
        ipam.allocate(id, "eth0", &[]).unwrap();
    }
    assert!(matches!(
        ipam.allocate("f", "eth0", &[]),
        Err(IpamError::Exhausted { .. })
    ));
    fs::remove_file(net.dir().join("10.60.0.4")).unwrap();
    assert_true_to_disk(&net, &ipam, "a removal by hand");
    let f = ipam.allocate("f", "eth0", &[]).unwrap();
    assert_eq!(f[0].address.addr(), ip("10.60.0.4"));

    // A holder rewritten in place: the old one can no longer release it.
    net.write_raw("10.60.0.2", "someone\r\neth1");
    assert_true_to_disk(&net, &ipam, "a rewrite by hand");
    assert!(ipam.release("a", "eth0").unwrap().is_empty());
    assert!(net.dir().join("10.60.0.2").exists());
    assert_eq!(ipam.release("someone", "eth1").unwrap(), [ip("10.60.0.2")]);

    // A file written by hand holds its address.
    net.write_raw("10.60.0.2", "ghost\r\neth0");
    assert!(matches!(
        ipam.allocate("g", "eth0", &[ip("10.60.0.2")]),
        Err(IpamError::AddressInUse { holder: Some(h), .. }) if h.container_id == "ghost"
    ));
    assert!(matches!(
        ipam.allocate("g", "eth0", &[]),
        Err(IpamError::Exhausted { .. })
    ));
    // And GC, told who is live, releases it.
    let live: HashSet<(String, String)> = ["b", "c", "d", "e", "f"]
        .iter()
        .map(|id| (id.to_string(), "eth0".to_string()))
        .collect();
    let released = ipam.gc(&live).unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].container_id, "ghost");
    assert_true_to_disk(&net, &ipam, "gc");
}

/// The whole directory removed and made again (a teardown, `rm -rf`) under a live
/// index: the next call starts from what is there now.
#[test]
fn a_directory_replaced_under_a_live_index() {
    let net = Net::new(ranges());
    let ipam = net.ipam();
    ipam.allocate("a", "eth0", &[]).unwrap();
    ipam.allocate("b", "eth0", &[]).unwrap();
    fs::remove_dir_all(net.dir()).unwrap();
    assert!(ipam.reservations().unwrap().is_empty());
    let again = ipam.allocate("c", "eth0", &[]).unwrap();
    assert_eq!(again[0].address.addr(), ip("10.60.0.2"));
    assert_true_to_disk(&net, &ipam, "the directory's removal");

    // Replaced with another's content while we are not looking.
    fs::remove_dir_all(net.dir()).unwrap();
    fs::create_dir_all(net.dir()).unwrap();
    net.write_raw("10.60.0.3", "elsewhere\r\neth0");
    net.write_raw("last_reserved_ip.0", "10.60.0.3");
    let d = ipam.allocate("d", "eth0", &[]).unwrap();
    assert_eq!(d[0].address.addr(), ip("10.60.0.4"));
    assert_true_to_disk(&net, &ipam, "the directory's replacement");
}

/// A directory built beside the live one, the old lock file moved into it, and swapped
/// in place (as a restore from a copy might). The lock file is the same inode, and the
/// removal of the old directory raises no event while its descriptor is open: only the
/// lock file being absent from the directory the index was read from tells.
#[test]
fn a_directory_swapped_in_with_the_old_lock_file() {
    let net = Net::new(ranges());
    let ipam = net.ipam();
    ipam.allocate("a", "eth0", &[]).unwrap();
    let dir = net.dir();
    let new = dir.with_file_name("testnet.new");
    fs::create_dir(&new).unwrap();
    fs::rename(dir.join("lock"), new.join("lock")).unwrap();
    fs::write(new.join("10.60.0.5"), "elsewhere\r\neth0").unwrap();
    fs::write(new.join("10.60.0.6"), "elsewhere\r\neth1").unwrap();
    fs::write(new.join("last_reserved_ip.0"), "10.60.0.6").unwrap();
    fs::remove_dir_all(&dir).unwrap();
    fs::rename(&new, &dir).unwrap();

    assert_true_to_disk(&net, &ipam, "the swap");
    // Round-robin from the new directory's cursor: past .6, wrapped round to .2.
    let b = ipam.allocate("b", "eth0", &[]).unwrap();
    assert_eq!(b[0].address.addr(), ip("10.60.0.2"));
    assert_true_to_disk(&net, &ipam, "an allocation after the swap");
}

/// More changes between two calls than the kernel queues (fs.inotify.max_queued_events,
/// 16384 by default; each new file is two events): the queue overflows, and the index
/// is read again from the directory instead of trusted.
#[test]
fn an_overflowed_change_queue_falls_back_to_a_full_read() {
    let queued: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    let files = queued / 2 + 100;
    let net = Net::new(vec![rs("10.62.0.0/16")]);
    let ipam = net.ipam();
    ipam.allocate("first", "eth0", &[]).unwrap();
    let base = u32::from(std::net::Ipv4Addr::new(10, 62, 1, 0));
    for i in 0..files as u32 {
        let ip = std::net::Ipv4Addr::from(base + i);
        net.write_raw(&ip.to_string(), &format!("other-{i}\r\neth0"));
    }
    // An index that trusted the part of the queue that fit would miss the rest.
    assert_eq!(ipam.reservations().unwrap().len(), files + 1);
    assert_true_to_disk(&net, &ipam, "the overflow");
}
