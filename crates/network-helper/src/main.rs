use std::sync::Arc;

use container_network_helper::NetworkHelper;
use container_protocol::helper_server::{run_helper, HelperArgs};
use container_protocol::{HelperInfo, HelperKind};
use container_store::Paths;
use tokio::sync::Notify;

fn main() -> anyhow::Result<()> {
    let args = HelperArgs::parse(std::env::args().skip(1)).map_err(anyhow::Error::msg)?;
    let paths = Paths::new(&args.root, &args.run_dir);
    let kind = HelperKind::Network;
    // The apiserver points our stderr at our log, which we rotate.
    let files = paths.helper_files(kind, &args.id)?;
    container_store::logfile::init_tracing(Some(&files.log));
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
            started: container_store::unix_now(),
        };
        // A helper without a readable, valid config has nothing to serve: exit with
        // the reason rather than answer every call with it.
        let helper = NetworkHelper::load(info, paths.clone(), shutdown.clone())?;
        tracing::info!(network = %args.id, plugin = %helper.plugin().kind(), "network helper ready");
        run_helper(
            &files.bootstrap,
            kind,
            &args.id,
            Arc::new(helper),
            shutdown,
        )
        .await?;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}
