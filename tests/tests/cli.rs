//! The command line as a user's shell sees it: pipes, tables, files, exit codes.

use std::os::unix::process::ExitStatusExt;
use std::process::{Output, Stdio};

use container_tests::{busybox_rootfs, World};

struct Setup {
    world: World,
    rootfs: String,
}

fn setup() -> Setup {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    world.start_apiserver();
    Setup { world, rootfs }
}

/// The CLI with its stdout on a pipe whose reader is already gone (`| head -1`).
fn into_closed_pipe(world: &World, args: &[&str]) -> Output {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    world
        .cli_command(args)
        .stdout(Stdio::from(write))
        .output()
        .expect("run container")
}

/// Issue 18 item 8: a closed pipe ends the CLI as it ends coreutils: by SIGPIPE (the
/// shell's 141), with nothing on stderr: no panic, no backtrace, no "Broken pipe".
#[test]
fn a_closed_pipe_ends_the_cli_quietly() {
    let s = setup();
    let w = &s.world;
    w.ok(&[
        "run", "-d", "--name", "talk", "--rootfs", &s.rootfs, "--", "echo", "hello",
    ]);
    w.ok(&["wait", "talk"]);
    for args in [
        &["ls", "-a"][..],
        &["logs", "talk"],
        &["logs", "-n", "1", "talk"],
    ] {
        let out = into_closed_pipe(w, args);
        assert_eq!(
            out.status.signal(),
            Some(nix::libc::SIGPIPE),
            "container {args:?}: {:?}",
            out.status
        );
        assert!(
            out.stderr.is_empty(),
            "container {args:?} said: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Issue 19 item 10: a 70,000-character cell made `ls` panic (a `format!` width past
/// 65,535) for everyone. The table cuts long cells, as Docker cuts its command column;
/// `--no-trunc` shows them whole.
#[test]
fn ls_cuts_long_cells_and_shows_them_whole_on_request() {
    let s = setup();
    let w = &s.world;
    let long = "x".repeat(70_000);
    w.ok(&[
        "create", "--name", "wide", "--rootfs", &s.rootfs, "--", "echo", &long,
    ]);
    let table = w.ok(&["ls", "-a"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("wide"))
        .unwrap_or_else(|| panic!("no row for wide: {table}"));
    assert!(row.contains("echo xxx") && row.contains('…'), "{row}");
    assert!(row.chars().count() < 200, "cut to a readable width: {row}");
    let whole = w.ok(&["ls", "-a", "--no-trunc"]);
    assert!(whole.contains(&format!("echo {long}")));
    let header = whole.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("ID") && header.contains("COMMAND"),
        "{header}"
    );
}

/// Issue 17 item 10: ids came from reading /dev/urandom by hand, and were all zeros
/// when it could not be read, so the second unnamed container clashed with the first.
/// With /dev/urandom unreadable (in this test's own mount namespace) ids stay random.
#[test]
fn ids_are_random_without_dev_urandom() {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    nix::mount::mount(
        Some("/dev/null"),
        "/dev/urandom",
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .expect("bind /dev/null over /dev/urandom");
    world.start_apiserver();
    let a = world.ok(&["create", "--rootfs", &rootfs, "--", "true"]);
    let b = world.ok(&["create", "--rootfs", &rootfs, "--", "true"]);
    let (a, b) = (a.trim(), b.trim());
    assert_eq!(a.len(), 12, "{a}");
    assert_ne!(a, b);
    assert_ne!(a, "000000000000");
}

fn config_file(world: &World, name: &str, json: &str) -> String {
    let path = world.iso.dir().join(name);
    std::fs::write(&path, json).expect("write config");
    path.display().to_string()
}

/// Issue 19 item 8: `linux.netDevices` (OCI's position, seed 003) was ignored and
/// unknown keys were dropped silently; a typo must not pass for a setting.
#[test]
fn create_config_reads_linux_net_devices_and_names_unknown_keys() {
    let s = setup();
    let w = &s.world;
    let ip = |args: &[&str]| {
        let ok = std::process::Command::new("ip")
            .args(args)
            .status()
            .expect("ip");
        assert!(ok.success(), "ip {args:?}");
    };
    ip(&["link", "add", "nd0", "type", "veth", "peer", "name", "nd0p"]);

    let typo = config_file(
        w,
        "typo.json",
        &format!(
            r#"{{"id": "typo", "rootfs": "{}", "process": {{"args": ["true"]}},
                "linux": {{"netdevices": {{"nd0": {{"name": "data0"}}}}}}}}"#,
            s.rootfs
        ),
    );
    let err = w.fails(&["create", "--config", &typo]);
    assert!(err.contains("unknown key linux.netdevices"), "{err}");
    assert!(
        w.ok(&["ls", "-a", "-q"]).trim().is_empty(),
        "nothing created"
    );

    let oci = config_file(
        w,
        "oci.json",
        &format!(
            r#"{{"id": "oci", "rootfs": "{}", "network": "none",
                "process": {{"args": ["cat", "/proc/net/dev"]}},
                "linux": {{"netDevices": {{"nd0": {{"name": "data0"}}}}}}}}"#,
            s.rootfs
        ),
    );
    w.ok(&["create", "--config", &oci]);
    let out = w.ok(&["start", "-a", "oci"]);
    assert!(
        out.contains("data0:"),
        "the device is in the container: {out}"
    );
}

/// Issue 19 item 15: a file without `networks` joins the default network, as the flags
/// do; `{"network": "none"}` is loopback only; a relative rootfs is the caller's.
#[test]
fn create_config_networks_and_rootfs_as_the_flags_have_them() {
    let s = setup();
    let w = &s.world;
    let plain = config_file(
        w,
        "plain.json",
        r#"{"id": "plain", "rootfs": "rootfs", "process": {"args": ["true"]}}"#,
    );
    // Relative to where the user runs the CLI, not to the apiserver's directory.
    let out = w
        .cli_command(&["create", "--config", &plain])
        .current_dir(w.iso.dir())
        .output()
        .expect("create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = w.json(&["inspect", "plain"]);
    assert_eq!(
        record[0]["config"]["rootfs"].as_str(),
        Some(s.rootfs.as_str())
    );
    assert_eq!(
        record[0]["config"]["networks"][0]["network"].as_str(),
        Some("default"),
        "{record}"
    );

    let none = config_file(
        w,
        "none.json",
        &format!(
            r#"{{"id": "lonely", "rootfs": "{}", "network": "none", "process": {{"args": ["true"]}}}}"#,
            s.rootfs
        ),
    );
    w.ok(&["create", "--config", &none]);
    let record = w.json(&["inspect", "lonely"]);
    assert_eq!(record[0]["config"]["networks"], serde_json::json!([]));
}

/// Issue 19 item 18: an env-file line `export D=4` set the key `export D`. As Docker
/// and compose read such a file, `export ` is dropped; comments and blank lines skipped.
#[test]
fn env_file_lines_may_start_with_export() {
    let s = setup();
    let w = &s.world;
    let file = w.iso.dir().join("env");
    std::fs::write(&file, "# settings\n\nexport D=4\n  export   F=6\nE=5\n").expect("env file");
    let out = w.ok(&[
        "run",
        "--rm",
        "--env-file",
        &file.display().to_string(),
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "echo \"$D $E $F\"",
    ]);
    assert_eq!(out.trim(), "4 5 6");
}

/// Issue 19 item 18: `inspect a nosuch` printed nothing for `a`. As Docker: `a`'s record,
/// `nosuch` reported as not found, exit 1.
#[test]
fn inspect_prints_what_it_finds_and_reports_the_rest() {
    let s = setup();
    let w = &s.world;
    w.ok(&["create", "--name", "a", "--rootfs", &s.rootfs, "--", "true"]);
    let out = w.cli(&["inspect", "a", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(records.as_array().map(Vec::len), Some(1), "{records}");
    assert_eq!(records[0]["config"]["id"].as_str(), Some("a"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nosuch not found") && err.lines().count() == 1,
        "{err}"
    );
}

/// Issue 19 item 18: `--network n1 --network n1` gave two interfaces on one network. The
/// CLI refuses it, and so does the apiserver, which a client may reach without the CLI.
#[test]
fn a_network_is_joined_once() {
    use container_protocol::api::{ApiRequest, ApiResponse, SERVICE};
    use container_protocol::Client;

    let s = setup();
    let w = &s.world;
    w.ok(&["network", "create", "--subnet", "10.93.0.0/24", "n1"]);
    let err = w.fails(&[
        "create",
        "--network",
        "n1",
        "--network",
        "n1,ip=10.93.0.9",
        "--rootfs",
        &s.rootfs,
        "--",
        "true",
    ]);
    assert!(err.contains("--network n1 is given twice"), "{err}");
    let dup = config_file(
        w,
        "dup.json",
        r#"{"process": {"args": ["true"]}, "networks": ["n1", {"network": "n1"}]}"#,
    );
    let err = w.fails(&["create", "--config", &dup]);
    assert!(err.contains("given twice"), "{err}");

    let config: container_store::container::ContainerConfig = serde_json::from_str(&format!(
        r#"{{"id": "twice", "rootfs": "{}", "process": {{"args": ["true"]}},
            "networks": [{{"network": "n1"}}, {{"network": "n1"}}]}}"#,
        s.rootfs
    ))
    .expect("config");
    let rt = container_tests::runtime();
    let reply = rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(w.socket())
            .await
            .expect("connect");
        let client: Client<ApiRequest, ApiResponse> = Client::connect(stream, SERVICE, "apiserver")
            .await
            .expect("hello");
        client
            .call(ApiRequest::ContainerCreate {
                config: Box::new(config),
            })
            .await
    });
    let err = reply.expect_err("the apiserver refuses a network joined twice");
    assert!(
        err.to_string().contains("network n1 is given twice"),
        "{err}"
    );
    assert!(
        w.ok(&["ls", "-a", "-q"]).trim().is_empty(),
        "nothing created"
    );
}
