use std::sync::Arc;

use container_protocol::helper_server::{run_helper, HelperArgs};
use container_protocol::{HelperInfo, HelperKind};
use container_sandbox_helper::service::SandboxHelper;
use tokio::sync::Notify;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONTAINER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = HelperArgs::parse(std::env::args().skip(1)).map_err(anyhow::Error::msg)?;
    // One thread keeps the helper small; its work is a handful of calls per container.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let shutdown = Arc::new(Notify::new());
        let helper = Arc::new(SandboxHelper::new(
            HelperInfo {
                kind: HelperKind::Sandbox,
                id: args.id.clone(),
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                started: now(),
            },
            shutdown.clone(),
        ));
        run_helper(
            &args.run_dir.join("helpers"),
            HelperKind::Sandbox,
            &args.id,
            helper,
            shutdown,
        )
        .await
    })?;
    Ok(())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
