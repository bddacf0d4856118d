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
