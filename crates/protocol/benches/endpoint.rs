//! Round trip of a small call over a vended endpoint, beside the floor: a plain Unix
//! socket echo of the same payload, measured in the same run on the same runtime.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use container_protocol::bootstrap::{create_endpoint, into_tokio, Vendor};
use container_protocol::rpc::serve;
use container_protocol::{Client, RemoteError, Service};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Serialize, Deserialize)]
struct Ping(u64);

struct Echo;

impl Service for Echo {
    type Req = Ping;
    type Resp = Ping;
    const NAME: &'static str = "echo";
    async fn handle(
        self: Arc<Self>,
        req: Ping,
        _fds: Vec<OwnedFd>,
    ) -> Result<(Ping, Vec<OwnedFd>), RemoteError> {
        Ok((req, vec![]))
    }
}

fn pair() -> (tokio::net::UnixStream, tokio::net::UnixStream) {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    (into_tokio(a).expect("a"), into_tokio(b).expect("b"))
}

async fn vended_client() -> Client<Ping, Ping> {
    let (boot_client, boot_server) = pair();
    let vendor = Vendor::new(Arc::new(Echo), "bench");
    let admitted = container_protocol::rpc::Admission::default()
        .try_admit()
        .expect("a place");
    tokio::spawn(serve(boot_server, vendor, "bootstrap".into(), admitted));
    let bootstrap = container_protocol::bootstrap::bootstrap_client(boot_client, "bench")
        .await
        .expect("bootstrap");
    create_endpoint(&bootstrap, "echo").await.expect("endpoint")
}

fn bench(c: &mut Criterion) {
    // Helpers and the CLI run a current-thread runtime, the apiserver a multi-thread one:
    // measure both, each against its own floor.
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    round_trips(c, "current_thread", &current);
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    round_trips(c, "multi_thread", &multi);
}

fn round_trips(c: &mut Criterion, flavor: &str, rt: &tokio::runtime::Runtime) {
    let mut group = c.benchmark_group(format!("endpoint_round_trip_{flavor}"));

    let (mut client_end, mut server_end) = rt.block_on(async { pair() });
    rt.spawn(async move {
        let mut buf = [0u8; 8];
        while server_end.read_exact(&mut buf).await.is_ok() {
            if server_end.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    group.bench_function("unix_socket_echo_baseline", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let mut buf = 42u64.to_le_bytes();
                    client_end.write_all(&buf).await.expect("write");
                    client_end.read_exact(&mut buf).await.expect("read");
                }
                start.elapsed()
            })
        })
    });
    drop(client_end);

    let client = rt.block_on(vended_client());
    group.bench_function("vended_endpoint_call", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    client.call(Ping(42)).await.expect("call");
                }
                start.elapsed()
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group(format!("endpoint_throughput_{flavor}"));
    group.throughput(Throughput::Elements(64));
    group.bench_with_input(
        BenchmarkId::new("vended_endpoint_concurrent", 64),
        &64,
        |b, &n| {
            b.to_async(rt).iter(|| {
                let client = client.clone();
                async move {
                    let calls: Vec<_> = (0..n)
                        .map(|i| {
                            let c = client.clone();
                            tokio::spawn(async move { c.call(Ping(i)).await })
                        })
                        .collect();
                    for call in calls {
                        call.await.expect("join").expect("call");
                    }
                }
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
