//! Allocate+release round trips and GC, ours against the host-local binary on the same
//! kind of directory. Directories live under the system temp dir (a real filesystem here,
//! so our fsyncs cost what they cost in production; host-local does not fsync).

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

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("round_trip");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for n in [100u32, 10_000] {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = populate(root.path(), n);
        let ipam = Ipam::open(&dir, ranges()).expect("open");
        g.bench_with_input(BenchmarkId::new("ours", n), &n, |b, _| {
            b.iter(|| {
                black_box(ipam.allocate("bench", "eth0", &[]).expect("allocate"));
                black_box(ipam.release("bench", "eth0").expect("release"));
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

fn gc(c: &mut Criterion) {
    let mut g = c.benchmark_group("gc_10000");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let live: HashSet<(String, String)> = (0..5_000)
        .map(|i| (format!("other-{i}"), "eth0".to_string()))
        .collect();

    // Every reservation stale: lists, reads and removes 10,000 files.
    g.bench_function("all_stale", |b| {
        b.iter_batched(
            || {
                let root = tempfile::tempdir().expect("tempdir");
                let dir = populate(root.path(), 10_000);
                let ipam = Ipam::open(&dir, ranges()).expect("open");
                (root, ipam)
            },
            |(root, ipam)| {
                let released = ipam.gc(&HashSet::new()).expect("gc");
                assert_eq!(released.len(), 10_000);
                (root, ipam)
            },
            BatchSize::PerIteration,
        )
    });

    // Half stale.
    g.bench_function("half_stale", |b| {
        b.iter_batched(
            || {
                let root = tempfile::tempdir().expect("tempdir");
                let dir = populate(root.path(), 10_000);
                let ipam = Ipam::open(&dir, ranges()).expect("open");
                (root, ipam)
            },
            |(root, ipam)| {
                let released = ipam.gc(&live).expect("gc");
                assert_eq!(released.len(), 5_000);
                (root, ipam)
            },
            BatchSize::PerIteration,
        )
    });

    // Nothing stale: the cost of the check at every apiserver start.
    let root = tempfile::tempdir().expect("tempdir");
    let dir = populate(root.path(), 10_000);
    let ipam = Ipam::open(&dir, ranges()).expect("open");
    let all: HashSet<(String, String)> = (0..10_000)
        .map(|i| (format!("other-{i}"), "eth0".to_string()))
        .collect();
    g.bench_function("none_stale", |b| {
        b.iter(|| assert!(ipam.gc(&all).expect("gc").is_empty()))
    });
    g.finish();
}

criterion_group!(benches, round_trip, gc);
criterion_main!(benches);
