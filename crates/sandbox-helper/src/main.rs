use std::sync::Arc;

use container_protocol::helper_server::{run_helper, HelperArgs};
use container_protocol::{HelperInfo, HelperKind};
use container_sandbox_helper::cleanup;
use container_sandbox_helper::namespaces::Namespaces;
use container_sandbox_helper::service::SandboxHelper;
use tokio::sync::Notify;

fn main() -> anyhow::Result<()> {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("cleanup") {
        argv.remove(0);
        // The apiserver reads this mode's stderr as its error: plain, not rotated.
        container_store::logfile::init_tracing(None);
        let args = HelperArgs::parse(argv).map_err(anyhow::Error::msg)?;
        return cleanup(args);
    }
    let userns_range =
        container_sandbox_helper::userns::take_arg(&mut argv).map_err(anyhow::Error::msg)?;
    let bound = container_sandbox_helper::namespaces::take_bound_arg(&mut argv);
    let args = HelperArgs::parse(argv).map_err(anyhow::Error::msg)?;
    let paths = container_store::Paths::new(&args.root, &args.run_dir);
    let files = paths.helper_files(HelperKind::Sandbox, &args.id)?;
    // The apiserver points our stderr at our log, which we rotate.
    container_store::logfile::init_tracing(Some(&files.log));
    // A live twin owns the netns mount we are about to (re)create: leave it alone.
    let socket = &files.bootstrap.socket;
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        anyhow::bail!(
            "helper sandbox {} is already running (its bootstrap socket {} answers)",
            args.id,
            socket.display()
        );
    }
    // Before the runtime and the pid namespace: one thread, and a child forked here is
    // not the container's PID 1 (see userns).
    let userns = match userns_range {
        Some(range) => Some((range, container_sandbox_helper::userns::create(range)?)),
        None => None,
    };
    // Before the runtime: the process must still have a single thread (see namespaces).
    let ns = Namespaces::prepare(&paths.netns(&args.id)?, &args.id, bound)?;
    // One thread keeps the helper small; its work is a handful of calls per container.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ns.remove_netns();
            return Err(e.into());
        }
    };
    rt.block_on(async {
        let shutdown = Arc::new(Notify::new());
        let helper = Arc::new(
            SandboxHelper::new(
                HelperInfo {
                    kind: HelperKind::Sandbox,
                    id: args.id.clone(),
                    pid: std::process::id(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    started: container_store::unix_now(),
                },
                shutdown.clone(),
                args.root.clone(),
                ns,
            )
            .with_masked(vec![args.root.clone(), args.run_dir.clone()])
            .with_userns(userns),
        );
        let result = run_helper(
            &files.bootstrap,
            HelperKind::Sandbox,
            &args.id,
            helper.clone(),
            shutdown,
        )
        .await;
        // After a `Shutdown` this finds nothing left to do; after SIGTERM or a failed
        // start it keeps the netns mount and host interfaces from outliving us.
        helper.teardown().await;
        result
    })?;
    Ok(())
}

/// `cleanup`: see `container_sandbox_helper::cleanup`. Input on stdin, the report on
/// stdout; exit 0 when nothing failed, 1 when something could not be removed, 2 when
/// nothing was tried (bad input, a live helper).
fn cleanup(args: HelperArgs) -> anyhow::Result<()> {
    use std::io::Read;
    let paths = container_store::Paths::new(&args.root, &args.run_dir);
    let mut input = Vec::new();
    std::io::stdin()
        .take(cleanup::INPUT_LIMIT as u64 + 1)
        .read_to_end(&mut input)?;
    let refused = |e: cleanup::CleanupError| -> anyhow::Result<()> {
        eprintln!("container-sandbox-helper cleanup: {e}");
        std::process::exit(2)
    };
    let remains = match cleanup::parse(&args.id, &input) {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    if let Err(e) = cleanup::check_dead(&paths, &args.id) {
        return refused(e);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = match rt.block_on(cleanup::run(&paths, &args.id, &remains)) {
        Ok(report) => report,
        Err(e) => return refused(e),
    };
    println!("{}", serde_json::to_string(&report)?);
    if !report.errors.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
