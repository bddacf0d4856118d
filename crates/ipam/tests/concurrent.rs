//! Many allocators on one directory at once: threads of this process, other processes
//! running this crate, and the real host-local binary. Every address returned to anyone
//! must be unique and its file must name whoever got it.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::thread;

use common::{rs, Net};
use container_ipam::{Ipam, RangeSet};

const CHILD_ENV: &str = "CONTAINER_IPAM_TEST_CHILD";
const PER_WORKER: usize = 15;

fn ranges() -> Vec<RangeSet> {
    vec![rs("10.30.0.0/22"), rs("fd00:30::/64")]
}

/// Not a test by itself: the body of a child process started by
/// [`no_duplicates_across_threads_processes_and_host_local`].
#[test]
fn child_worker() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, prefix) = spec.split_once('|').unwrap();
    let ipam = Ipam::open(&PathBuf::from(dir), ranges()).unwrap();
    for i in 0..PER_WORKER {
        let id = format!("{prefix}-{i}");
        let got = ipam.allocate(&id, "eth0", &[]).unwrap();
        for a in got {
            println!("ALLOC {id} {}", a.address.addr());
        }
    }
}

#[test]
fn no_duplicates_across_threads_processes_and_host_local() {
    let net = Net::new(ranges());
    let ipam = Arc::new(net.ipam());
    let dir = net.dir();
    let mut handed_out: Vec<(IpAddr, String)> = Vec::new();

    common::host_local();
    let net = Arc::new(net);
    thread::scope(|s| {
        let mut workers = Vec::new();
        // Threads sharing one Ipam, and threads with their own.
        for t in 0..4 {
            let shared = Arc::clone(&ipam);
            let dir = dir.clone();
            workers.push(s.spawn(move || {
                let own;
                let ipam: &Ipam = if t % 2 == 0 {
                    &shared
                } else {
                    own = Ipam::open(&dir, ranges()).unwrap();
                    &own
                };
                let mut out = Vec::new();
                for i in 0..PER_WORKER {
                    let id = format!("thread{t}-{i}");
                    for a in ipam.allocate(&id, "eth0", &[]).unwrap() {
                        out.push((a.address.addr(), id.clone()));
                    }
                }
                out
            }));
        }
        // Other processes using this crate.
        for p in 0..2 {
            let dir = dir.clone();
            workers.push(s.spawn(move || {
                let out = Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "child_worker", "--nocapture", "--test-threads=1"])
                    .env(CHILD_ENV, format!("{}|proc{p}", dir.display()))
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    // libtest may print "test child_worker ... " on the same line first.
                    .filter_map(|l| l.split_once("ALLOC ").map(|(_, rest)| rest))
                    .map(|l| {
                        let (id, ip) = l.split_once(' ').unwrap();
                        (ip.parse().unwrap(), id.to_string())
                    })
                    .collect()
            }));
        }
        // host-local ADDs, several in flight at a time.
        for h in 0..3 {
            let net = Arc::clone(&net);
            workers.push(s.spawn(move || {
                let mut out = Vec::new();
                for i in 0..PER_WORKER {
                    let id = format!("hostlocal{h}-{i}");
                    for n in net.host_local_add(&id, "eth0") {
                        out.push((n.addr(), id.clone()));
                    }
                }
                out
            }));
        }
        for w in workers {
            handed_out.extend(w.join().unwrap());
        }
    });

    let workers = 4 + 2 + 3;
    assert_eq!(handed_out.len(), workers * PER_WORKER * 2);
    let mut seen: HashMap<IpAddr, &str> = HashMap::new();
    for (ip, id) in &handed_out {
        if let Some(other) = seen.insert(*ip, id) {
            panic!("{ip} handed out to both {other} and {id}");
        }
    }
    let on_disk = common::holders(&ipam);
    assert_eq!(on_disk.len(), handed_out.len());
    for (ip, id) in &handed_out {
        assert_eq!(&on_disk[ip].0, id, "file for {ip}");
    }
    println!(
        "{} addresses handed out by {workers} concurrent workers, no duplicates",
        handed_out.len()
    );
}

/// GC racing allocations must never remove a live reservation. The caller makes the live
/// set consistent (a container is registered before its allocation starts, and the
/// snapshot is held across the GC); the directory lock does the rest.
#[test]
fn gc_concurrent_with_allocation_keeps_live_reservations() {
    let net = Net::new(ranges());
    let ipam = net.ipam();
    let live = std::sync::Mutex::new(std::collections::HashSet::new());
    thread::scope(|s| {
        s.spawn(|| {
            for i in 0..40 {
                let id = format!("c{i}");
                // Registered as live before the reservation exists, as the apiserver does.
                live.lock()
                    .unwrap()
                    .insert((id.clone(), "eth0".to_string()));
                ipam.allocate(&id, "eth0", &[]).unwrap();
            }
        });
        s.spawn(|| {
            for _ in 0..20 {
                let snapshot = live.lock().unwrap();
                let released = ipam.gc(&snapshot).unwrap();
                drop(snapshot);
                assert!(released.is_empty(), "GC released live {released:?}");
            }
        });
    });
    assert_eq!(ipam.reservations().unwrap().len(), 80);
}

/// Both sides flock the same file: while someone else holds `<dir>/lock`, neither
/// host-local nor this crate gets in.
#[test]
fn waits_for_the_lock_host_local_uses() {
    use nix::fcntl::{Flock, FlockArg};
    use std::sync::mpsc;
    use std::time::Duration;

    let net = Net::new(ranges());
    let ipam = net.ipam();
    let lock_file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(net.dir().join("lock"))
        .unwrap();
    let held = Flock::lock(lock_file, FlockArg::LockExclusive).unwrap();

    common::host_local();
    let mut hl = {
        let mut cmd = net.host_local_cmd("ADD", "hl", "eth0");
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(net.host_local_config().as_bytes())
            .unwrap();
        child
    };
    thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let ipam = &ipam;
        s.spawn(move || {
            let got = ipam.allocate("ours", "eth0", &[]);
            tx.send(got.is_ok()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "allocated while the lock was held"
        );
        assert!(
            hl.try_wait().unwrap().is_none(),
            "host-local ignored the lock"
        );
        drop(held);
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    });
    assert!(hl.wait_with_output().unwrap().status.success());
    assert_eq!(ipam.reservations().unwrap().len(), 4);
}
