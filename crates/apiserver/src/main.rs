use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use container_apiserver::daemon::{run, Options};
use container_apiserver::server::{self, Access, Limits};
use container_protocol::rpc::{Admission, HELLO_TIMEOUT, MAX_PENDING_HELLOS};
use container_store::paths::{self, Paths};
use container_supervise::{default_helper_dir, Deadlines};

/// The apiserver of container: owns persisted state, spawns and drives the helpers.
#[derive(Parser)]
#[command(name = "container-apiserver", version)]
struct Args {
    /// State root (networks, containers, IPAM).
    #[arg(long, env = paths::ROOT_ENV, default_value = paths::DEFAULT_ROOT)]
    root: PathBuf,
    /// Runtime directory (sockets, netns mounts, helper logs).
    #[arg(long = "run-dir", env = paths::RUN_DIR_ENV, default_value = paths::DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    /// Where helper binaries live (default: beside this binary, then /usr/libexec/container).
    #[arg(long = "helper-dir", env = "CONTAINER_HELPER_DIR")]
    helper_dir: Option<PathBuf>,
    /// Also allow this uid to use the API socket (repeatable).
    #[arg(long = "allow-uid")]
    allow_uid: Vec<u32>,
    /// Also allow this gid to use the API socket (repeatable).
    #[arg(long = "allow-gid")]
    allow_gid: Vec<u32>,
    /// Give the API socket to this group, mode 0660 (default: root only, 0600).
    #[arg(long = "socket-group")]
    socket_group: Option<u32>,
    /// How long a helper may take to answer a quick call before it is taken for not
    /// answering (calls that build things get six times this).
    #[arg(
        long = "call-timeout-ms",
        env = "CONTAINER_CALL_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    call_timeout_ms: u64,
    /// How long a new connection may take to say hello before it is closed.
    #[arg(long = "hello-timeout-ms", env = "CONTAINER_HELLO_TIMEOUT_MS",
          default_value_t = HELLO_TIMEOUT.as_millis() as u64)]
    hello_timeout_ms: u64,
    /// How many connections may wait for their hello at once; more are refused.
    #[arg(long = "max-pending-hellos", env = "CONTAINER_MAX_PENDING_HELLOS",
          default_value_t = MAX_PENDING_HELLOS)]
    max_pending_hellos: usize,
    /// Set no_new_privs for every container that does not say otherwise (a container's
    /// `--security-opt no-new-privileges=false` still turns it off).
    #[arg(long = "no-new-privileges", env = "CONTAINER_NO_NEW_PRIVILEGES")]
    no_new_privileges: bool,
    /// The cgroup every container's cgroup goes under, relative to each hierarchy's
    /// root (`/sys/fs/cgroup/<controller>/<parent>/<id>`).
    #[arg(long = "cgroup-parent", env = "CONTAINER_CGROUP_PARENT",
          default_value = container_apiserver::resources::DEFAULT_CGROUP_PARENT)]
    cgroup_parent: String,
    /// `--userns` of a container that does not say: host or auto.
    #[arg(long = "userns-default", env = "CONTAINER_USERNS_DEFAULT", default_value = "host",
          value_parser = container_protocol::resources::UsernsMode::parse)]
    userns_default: container_protocol::resources::UsernsMode,
    /// Host ids `--userns=auto` ranges are taken from, START:SIZE (default: systemd's
    /// range for containers, 524288:1878523904).
    #[arg(long = "userns-pool", env = "CONTAINER_USERNS_POOL",
          value_parser = |s: &str| container_idranges::Pool::parse(s).map_err(|e| e.to_string()))]
    userns_pool: Option<container_idranges::Pool>,
    /// Run a start's independent steps (the sandbox spawn, the allocations) one after
    /// another instead of together: the baseline of the benchmark's parallel start.
    #[arg(long = "serial-start", env = "CONTAINER_SERIAL_START", hide = true)]
    serial_start: bool,
    /// Largest uncompressed layer an image may have (bytes; k, m, g, t suffixes).
    #[arg(long = "image-max-layer-size", env = "CONTAINER_IMAGE_MAX_LAYER_SIZE", value_parser = parse_size, default_value = "16g")]
    image_max_layer_size: u64,
    /// Largest uncompressed image (all its layers).
    #[arg(long = "image-max-image-size", env = "CONTAINER_IMAGE_MAX_IMAGE_SIZE", value_parser = parse_size, default_value = "64g")]
    image_max_image_size: u64,
    /// How many times its compressed size a layer may decompress to (past 8 MiB).
    #[arg(
        long = "image-max-ratio",
        env = "CONTAINER_IMAGE_MAX_RATIO",
        default_value_t = 250
    )]
    image_max_ratio: u64,
    /// A registry reached over plain HTTP or unverified TLS (repeatable; HOST[:PORT]).
    /// Localhost is, always, as Docker treats it.
    #[arg(
        long = "insecure-registry",
        env = "CONTAINER_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    insecure_registries: Vec<String>,
}

/// `16g`, `512m`, `100k`, or bytes; units of 1024.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let (num, unit) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t.as_str(), 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a size (bytes, or 512m, 16g)"))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // `system start` points our stderr at this file; we rotate it. Under a supervisor
    // stderr is its journal, and nothing rotates here.
    container_store::logfile::init_tracing(Some(
        &Paths::new(args.root.clone(), args.run_dir.clone()).apiserver_log(),
    ));
    let max_connections = match server::raise_nofile_limit() {
        Ok(limit) => {
            tracing::info!(
                "descriptors: {limit}, of which {} kept for the work",
                server::descriptor_reserve(limit)
            );
            Some(server::connection_budget(limit))
        }
        Err(e) => {
            tracing::warn!("RLIMIT_NOFILE: {e}; connections are not bounded");
            None
        }
    };
    let mut gids = args.allow_gid;
    gids.extend(args.socket_group);
    let helper_dir = args.helper_dir.unwrap_or_else(default_helper_dir);
    let images = container_apiserver::images::ImageOptions {
        unpacker: helper_dir.join("container-unpack"),
        limits: container_image::unpack::Limits {
            layer_bytes: args.image_max_layer_size,
            image_bytes: args.image_max_image_size,
            ratio: args.image_max_ratio.max(1),
            ..Default::default()
        },
        insecure_registries: args.insecure_registries,
    };
    let opts = Options {
        images,
        paths: Paths::new(args.root, args.run_dir),
        helper_dir,
        access: Access {
            uids: args.allow_uid,
            gids,
            socket_group: args.socket_group,
        },
        deadlines: Deadlines::from_quick(std::time::Duration::from_millis(
            args.call_timeout_ms.max(1),
        )),
        limits: Limits {
            admission: Admission::new(
                args.max_pending_hellos,
                Duration::from_millis(args.hello_timeout_ms),
            ),
            max_connections,
        },
        security: container_apiserver::containers::SecurityDefaults {
            no_new_privileges: args.no_new_privileges,
        },
        serial_start: args.serial_start,
        resources: container_apiserver::daemon::ResourceOptions {
            cgroup_parent: args.cgroup_parent,
            userns_default: args.userns_default,
            userns_pool: args.userns_pool.unwrap_or(container_idranges::DEFAULT_POOL),
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(opts)).map_err(|e| anyhow::anyhow!("{e}"))
}
