use std::sync::Arc;

use container_network_helper::NetworkHelper;
use container_protocol::helper_server::{run_helper, HelperArgs};
use container_protocol::{HelperInfo, HelperKind};
use container_store::Paths;
use tokio::sync::Notify;

fn main() -> anyhow::Result<()> {
    let args = HelperArgs::parse(std::env::args().skip(1)).map_err(anyhow::Error::msg)?;
    // The apiserver points our stderr at this file; we rotate it.
    // (An id the store refuses has no such file: then nothing rotates.)
    let log = container_store::logfile::SelfLog::stderr(
        &container_store::Paths::new(args.root.clone(), args.run_dir.clone())
            .helper_file(HelperKind::Network, &args.id, "log")
            .unwrap_or_default(),
    );
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONTAINER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(move || log.clone())
        .init();
    // One thread is plenty for one network's calls and keeps the helper small.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let shutdown = Arc::new(Notify::new());
        let info = HelperInfo {
            kind: HelperKind::Network,
            id: args.id.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started: now(),
        };
        // A helper without a readable, valid config has nothing to serve: exit with
        // the reason rather than answer every call with it.
        let paths = Paths::new(&args.root, &args.run_dir);
        let helper = NetworkHelper::load(info, paths, shutdown.clone())?;
        tracing::info!(network = %args.id, plugin = %helper.plugin().kind(), "network helper ready");
        run_helper(
            &args.run_dir.join("helpers"),
            HelperKind::Network,
            &args.id,
            Arc::new(helper),
            shutdown,
        )
        .await?;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
