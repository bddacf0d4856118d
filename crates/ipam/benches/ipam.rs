//! Allocate+release round trips and GC, ours against the host-local binary on the same
//! kind of directory, at 100 to 60,000 reservations. Directories live under the system
//! temp dir (a real filesystem here). Neither side fsyncs a reservation (see
//! docs/networking.md for why ours need not).

use std::collections::HashSet;
use std::fs;
use std::hint::black_box;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use container_ipam::{Ipam, RangeSet};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};

const HOST_LOCAL: &str = "/usr/lib/cni/host-local";
const NETWORK: &str = "benchnet";
const SUBNET: &str = "10.40.0.0/16";

fn ranges() -> Vec<RangeSet> {
    vec![RangeSet::new(SUBNET.parse().expect("subnet"))]
}

/// `<root>/ipam/benchnet` holding `n` reservations by other containers, as host-local
/// would have written them, starting at 10.40.1.0 so the allocator's walk from range
/// start is not what is measured.
fn populate(root: &Path, n: u32) -> PathBuf {
    let dir = root.join("ipam").join(NETWORK);
    fs::create_dir_all(&dir).expect("mkdir");
    let base = u32::from(Ipv4Addr::new(10, 40, 1, 0));
    for i in 0..n {
        let ip = Ipv4Addr::from(base + i);
        fs::write(dir.join(ip.to_string()), format!("other-{i}\r\neth0")).expect("write");
    }
    dir
}

fn host_local_config(root: &Path) -> String {
    format!(
        r#"{{"cniVersion":"0.4.0","name":"{NETWORK}","type":"host-local","ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"{SUBNET}"}}]]}}}}"#,
        root.join("ipam").display()
    )
}

fn host_local(command: &str, config: &str) {
    let mut child = Command::new(HOST_LOCAL)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "bench")
        .env("CNI_NETNS", "/dev/null")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn host-local");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(config.as_bytes()).expect("stdin");
    }
    assert!(
        child.wait().expect("wait").success(),
        "host-local {command}"
    );
}

/// Reservation counts of the round-trip and GC-at-N groups.
const SIZES: [u32; 4] = [100, 1_000, 10_000, 60_000];

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("round_trip");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for n in SIZES {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = populate(root.path(), n);
        // What any allocate+release in this directory costs the filesystem: one create
        // (O_EXCL) with its write, one unlink. Measured next to ours, because its cost
        // depends on how many files were removed in the last minute (see docs/ipam.md).
        let spare = dir.join("10.40.0.250");
        g.bench_with_input(BenchmarkId::new("floor", n), &n, |b, _| {
            b.iter(|| {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&spare)
                    .expect("create");
                f.write_all(b"bench\r\neth0").expect("write");
                drop(f);
                fs::remove_file(&spare).expect("unlink");
            })
        });
        // The network helper's case: one Ipam for the process's life, its index built
        // at the first call (here, before timing).
        let ipam = Ipam::open(&dir, ranges()).expect("open");
        assert_eq!(ipam.reservations().expect("index").len(), n as usize);
        g.bench_with_input(BenchmarkId::new("ours", n), &n, |b, _| {
            b.iter(|| {
                black_box(ipam.allocate("bench", "eth0", &[]).expect("allocate"));
                black_box(ipam.release("bench", "eth0").expect("release"));
            })
        });
        // A CNI plugin's case: a process per ADD and per DEL, each opening the
        // directory and reading it whole (process start and exit not included).
        g.bench_with_input(BenchmarkId::new("short-lived", n), &n, |b, _| {
            b.iter(|| {
                let add = Ipam::open_short_lived(&dir, ranges()).expect("open");
                black_box(add.allocate("bench", "eth0", &[]).expect("allocate"));
                drop(add);
                let del = Ipam::open_short_lived(&dir, ranges()).expect("open");
                black_box(del.release("bench", "eth0").expect("release"));
            })
        });
        if Path::new(HOST_LOCAL).exists() {
            let config = host_local_config(root.path());
            g.bench_with_input(BenchmarkId::new("host-local", n), &n, |b, _| {
                b.iter(|| {
                    host_local("ADD", &config);
                    host_local("DEL", &config);
                })
            });
        } else {
            eprintln!("{HOST_LOCAL} absent: host-local baseline skipped");
        }
    }
    g.finish();
}

/// `<root>/ipam/benchnet` with `n` reservations and a long-lived Ipam on it whose index
/// is built, as in a network helper that has answered its first call.
fn warm(n: u32) -> (tempfile::TempDir, Ipam) {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = populate(root.path(), n);
    let ipam = Ipam::open(&dir, ranges()).expect("open");
    assert_eq!(ipam.reservations().expect("index").len(), n as usize);
    (root, ipam)
}

fn live(n: u32) -> HashSet<(String, String)> {
    (0..n)
        .map(|i| (format!("other-{i}"), "eth0".to_string()))
        .collect()
}

fn gc(c: &mut Criterion) {
    let mut g = c.benchmark_group("gc_10000");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    // The floor of the next two: 10,000 unlinks of the same kind of files, nothing else.
    g.bench_function("unlink_floor", |b| {
        b.iter_batched(
            || {
                let root = tempfile::tempdir().expect("tempdir");
                let dir = populate(root.path(), 10_000);
                let names: Vec<PathBuf> = fs::read_dir(&dir)
                    .expect("list")
                    .map(|e| e.expect("entry").path())
                    .collect();
                (root, names)
            },
            |(root, names)| {
                for name in &names {
                    fs::remove_file(name).expect("unlink");
                }
                (root, names)
            },
            BatchSize::PerIteration,
        )
    });

    // Every reservation stale: one listing, 10,000 removals.
    g.bench_function("all_stale", |b| {
        b.iter_batched(
            || warm(10_000),
            |(root, ipam)| {
                let released = ipam.gc(&HashSet::new()).expect("gc");
                assert_eq!(released.len(), 10_000);
                (root, ipam)
            },
            BatchSize::PerIteration,
        )
    });

    // Half stale.
    let half = live(5_000);
    g.bench_function("half_stale", |b| {
        b.iter_batched(
            || warm(10_000),
            |(root, ipam)| {
                let released = ipam.gc(&half).expect("gc");
                assert_eq!(released.len(), 5_000);
                (root, ipam)
            },
            BatchSize::PerIteration,
        )
    });

    // Nothing stale: the check at every apiserver start, by a helper that is running.
    let all = live(10_000);
    let (_root, ipam) = warm(10_000);
    g.bench_function("none_stale", |b| {
        b.iter(|| assert!(ipam.gc(&all).expect("gc").is_empty()))
    });
    drop(ipam);

    // A helper's first call after it starts: the index is read whole (one listing, one
    // read per file) and that listing serves the GC.
    let root = tempfile::tempdir().expect("tempdir");
    let dir = populate(root.path(), 10_000);
    g.bench_function("none_stale_helper_start", |b| {
        b.iter(|| {
            let ipam = Ipam::open(&dir, ranges()).expect("open");
            assert!(ipam.gc(&all).expect("gc").is_empty());
        })
    });
    g.finish();

    // None stale against N, for the plot.
    let mut g = c.benchmark_group("gc_none_stale");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in SIZES {
        let all = live(n);
        let (_root, ipam) = warm(n);
        g.bench_with_input(BenchmarkId::new("ours", n), &n, |b, _| {
            b.iter(|| assert!(ipam.gc(&all).expect("gc").is_empty()))
        });
    }
    g.finish();
}

criterion_group!(benches, round_trip, gc);
criterion_main!(benches);
