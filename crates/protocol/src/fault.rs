//! Named fault points for crash-safety tests.
//!
//! `CONTAINER_FAULT=<name>[,<name>...]` makes the process that reaches one of those
//! points kill itself with SIGKILL, exactly as an outside SIGKILL would: no unwinding,
//! no destructors, no flushing. Only debug builds (what the tests run) have them; a
//! release build compiles every point to nothing.

/// Environment variable arming fault points.
pub const FAULT_ENV: &str = "CONTAINER_FAULT";

/// Environment variable arming pauses: `<name>=<ms>[,<name>=<ms>...]` makes the task
/// that reaches [`pause`] `<name>` wait that long, so a test can put another call
/// exactly into the window after it.
pub const PAUSE_ENV: &str = "CONTAINER_FAULT_PAUSE";

/// Where a triggered fault point appends `<name> <pid>`, so tests can count them.
pub const FAULT_LOG_ENV: &str = "CONTAINER_FAULT_LOG";

/// Every fault point, `<process>:<where>`, for tests to iterate over.
pub const POINTS: &[&str] = &[
    "apiserver:network-after-record",
    "apiserver:network-rm-after-teardown",
    "apiserver:after-sandbox-spawn",
    "apiserver:after-allocate",
    "apiserver:after-setup",
    "apiserver:after-start",
    "apiserver:finish-before-release",
    "apiserver:finish-after-release",
    "apiserver:volume-before-rename",
    "network-helper:after-reserve",
    "network-helper:during-release",
    "sandbox-helper:after-interface",
    "sandbox-helper:after-start",
    "sandbox-helper:during-shutdown",
];

/// Points only a particular scenario reaches, each exercised by its own test:
/// `apiserver:restart-pending` (a restart policy's decision recorded, its back-off not
/// yet waited out: tests/tests/restart.rs), and each step of a running container's
/// `network connect` and `disconnect` ([`CONNECT_POINTS`]: tests/tests/connect.rs).
pub const SCENARIO_POINTS: &[&str] = &["apiserver:restart-pending"];

/// After each step of `network connect` (intent recorded, address allocated, interface
/// attached, configuration written, state written) and of `disconnect` (intent, names
/// gone, interface detached, address released, configuration written).
pub const CONNECT_POINTS: &[&str] = &[
    "apiserver:connect-after-intent",
    "apiserver:connect-after-allocate",
    "apiserver:connect-after-attach",
    "apiserver:connect-after-config",
    "apiserver:connect-after-record",
    "apiserver:disconnect-after-intent",
    "apiserver:disconnect-after-names",
    "apiserver:disconnect-after-detach",
    "apiserver:disconnect-after-release",
    "apiserver:disconnect-after-config",
];

#[inline]
pub fn point(name: &str) {
    #[cfg(debug_assertions)]
    {
        if let Some(armed) = std::env::var_os(FAULT_ENV) {
            if armed.to_string_lossy().split(',').any(|p| p == name) {
                eprintln!("fault point {name}: killing pid {}", std::process::id());
                if let Some(log) = std::env::var_os(FAULT_LOG_ENV) {
                    use std::io::Write;
                    if let Ok(mut f) = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(log)
                    {
                        let _ = writeln!(f, "{name} {}", std::process::id());
                    }
                }
                let _ = nix::sys::signal::kill(
                    nix::unistd::getpid(),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Waits as long as [`PAUSE_ENV`] says for `name`; nothing in a release build.
#[inline]
pub async fn pause(name: &str) {
    #[cfg(debug_assertions)]
    {
        let armed = std::env::var(PAUSE_ENV).unwrap_or_default();
        let ms = armed
            .split(',')
            .filter_map(|p| p.split_once('='))
            .find(|(n, _)| *n == name)
            .and_then(|(_, ms)| ms.parse::<u64>().ok());
        if let Some(ms) = ms {
            tracing::info!("fault pause {name}: {ms} ms");
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
