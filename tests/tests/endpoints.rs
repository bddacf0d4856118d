//! Seed 002 on real processes: a helper's endpoints die with it, and nothing brings it back.

use std::sync::Arc;
use std::time::Duration;

use container_protocol::bootstrap::bootstrap_connect;
use container_protocol::sandbox::{SandboxRequest, SandboxResponse};
use container_protocol::HelperKind;
use container_store::Paths;
use container_supervise::table::HelperEvent;
use container_supervise::{Deadlines, HelperTable, SandboxProto, Spawner};
use container_tests::{alive, bin_dir, eventually, runtime, World, HANG};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn spawner(world: &World) -> Arc<Spawner> {
    Arc::new(Spawner::new(
        Paths::new(world.root(), world.run_dir()),
        bin_dir(),
    ))
}

#[test]
fn killed_helper_fails_pending_and_later_calls_and_stays_dead() {
    let world = World::new();
    runtime().block_on(async {
        let spawner = spawner(&world);
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let table =
            HelperTable::<SandboxProto>::new(spawner.clone(), events_tx, Deadlines::default());
        let helper = table.start("c1", &[]).await.expect("start sandbox helper");
        let pid = helper.info.pid;
        assert!(alive(pid));

        // A call that stays pending: there is no workload, so `wait` never resolves.
        let client = helper.client.clone();
        let pending = tokio::spawn(async move { client.call(SandboxRequest::Wait).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !pending.is_finished(),
            "wait must be pending while the helper lives"
        );

        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill helper");
        let result = tokio::time::timeout(HANG, pending)
            .await
            .expect("pending call must fail at once, not hang")
            .expect("join");
        let err = result.expect_err("pending call must fail");
        assert!(err.is_gone(), "{err}");
        assert_eq!(err.to_string(), "helper sandbox c1 is gone");

        let later = helper
            .client
            .call(SandboxRequest::Echo(7))
            .await
            .expect_err("later call");
        assert!(later.is_gone(), "{later}");

        let Some(HelperEvent::Gone(gone)) = tokio::time::timeout(HANG, events.recv())
            .await
            .expect("gone event")
        else {
            panic!("expected a gone event")
        };
        assert_eq!(
            (gone.kind, gone.id.as_str(), gone.pid),
            (HelperKind::Sandbox, "c1", pid)
        );
        assert!(table.get("c1").is_none(), "a dead helper leaves the table");

        // Reaching it again by its bootstrap path fails; nothing started a new one.
        let again = bootstrap_connect(
            &spawner.socket(HelperKind::Sandbox, "c1").unwrap(),
            "helper sandbox c1",
        )
        .await;
        assert!(
            again.is_err(),
            "a dead helper's bootstrap socket must not answer"
        );
        eventually("helper reaped", || !alive(pid));
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Only this world's helpers: other test runs on the machine may have a c1.
        let pattern = format!(
            "container-sandbox-helper.*--run-dir {}.*--id c1",
            world.run_dir().display()
        );
        let running = std::process::Command::new("pgrep")
            .args(["-f", &pattern])
            .output()
            .expect("pgrep");
        assert!(
            running.stdout.is_empty(),
            "no sandbox helper may run again: {}",
            String::from_utf8_lossy(&running.stdout)
        );
    });
}

#[test]
fn sixty_four_concurrent_calls_on_one_endpoint_correlate() {
    let world = World::new();
    runtime().block_on(async {
        let spawner = spawner(&world);
        let (events_tx, _events) = tokio::sync::mpsc::unbounded_channel();
        let table =
            HelperTable::<SandboxProto>::new(spawner.clone(), events_tx, Deadlines::default());
        let helper = table.start("c2", &[]).await.expect("start sandbox helper");
        let client = Arc::new(helper.client.clone());

        // A long wait shares the endpoint and must not hold anything up.
        let waiter = {
            let c = client.clone();
            tokio::spawn(async move { c.call(SandboxRequest::Wait).await })
        };
        let calls: Vec<_> = (0..64u64)
            .map(|i| {
                let c = client.clone();
                tokio::spawn(async move { (i, c.call(SandboxRequest::Echo(i * 1000 + 7)).await) })
            })
            .collect();
        for call in calls {
            let (i, reply) = tokio::time::timeout(HANG, call)
                .await
                .expect("no hang")
                .expect("join");
            match reply.expect("echo") {
                SandboxResponse::Echo(n) => {
                    assert_eq!(n, i * 1000 + 7, "reply went to the wrong call")
                }
                other => panic!("unexpected reply {other:?}"),
            }
        }
        assert!(!waiter.is_finished());
        assert!(table.shutdown("c2", HANG).await, "c2 answered its shutdown");
        let err = waiter
            .await
            .expect("join")
            .expect_err("wait ends with the helper");
        assert!(err.is_gone(), "{err}");
        eventually("helper exited", || !alive(helper.info.pid));
        assert!(
            !spawner.socket(HelperKind::Sandbox, "c2").unwrap().exists(),
            "a helper that shut down removes its bootstrap socket"
        );
    });
}

#[test]
fn restarted_apiserver_reaches_live_helpers_through_bootstrap_path() {
    let world = World::new();
    runtime().block_on(async {
        let spawner = spawner(&world);
        let (tx1, _e1) = tokio::sync::mpsc::unbounded_channel();
        let first = HelperTable::<SandboxProto>::new(spawner.clone(), tx1, Deadlines::default());
        let a = first.start("a", &[]).await.expect("start a");
        let b = first.start("b", &[]).await.expect("start b");
        kill(Pid::from_raw(b.info.pid as i32), Signal::SIGKILL).expect("kill b");
        eventually("b reaped", || !alive(b.info.pid));
        drop(first);

        // A second table stands for a restarted apiserver: it finds `a`, buries `b`.
        let (tx2, _e2) = tokio::sync::mpsc::unbounded_channel();
        let second = HelperTable::<SandboxProto>::new(spawner.clone(), tx2, Deadlines::default());
        let adoption = second.adopt_all().await;
        assert_eq!(adoption.dead, vec!["b".to_string()]);
        assert_eq!(adoption.adopted, vec!["a".to_string()]);
        let adopted = second.get("a").expect("a adopted");
        assert_eq!(adopted.info.pid, a.info.pid);
        assert!(matches!(
            adopted.client.call(SandboxRequest::Echo(1)).await,
            Ok(SandboxResponse::Echo(1))
        ));
        assert!(
            !spawner.socket(HelperKind::Sandbox, "b").unwrap().exists(),
            "dead helper's socket removed"
        );
        assert!(second.shutdown("a", HANG).await, "a answered its shutdown");
    });
}
