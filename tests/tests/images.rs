//! Images end to end: real archives and layouts loaded, real containers run from them
//! on overlayfs, the verbs around them, and the store checked after each.

use container_tests::oci::{busybox_image, layout};
use container_tests::{setup, Setup};

/// A world with the test image loaded from an OCI layout directory as `localhost/bb:1`.
fn with_image() -> (Setup, String) {
    let s = setup();
    let dir = layout(
        &s.world.iso.dir().join("layout"),
        "localhost/bb:1",
        &[busybox_image(&s.world.iso.dir().join("img"))],
    );
    let out = s.world.ok(&["image", "load", "-i", dir.to_str().unwrap()]);
    assert!(out.contains("Loaded image: localhost/bb:1"), "{out}");
    (s, "localhost/bb:1".to_string())
}

fn overlay_mounts() -> usize {
    std::fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(" - overlay "))
        .count()
}

#[test]
fn an_image_runs_with_its_config_and_its_layers_whiteouts_included() {
    let (s, img) = with_image();
    let w = &s.world;
    let before = overlay_mounts();
    // Entrypoint + Cmd; layer 3's opaque /opq shows only its own file.
    let out = w.ok(&["run", "--rm", "--network", "none", &img]);
    assert_eq!(out, "image-cmd\nnew\n");
    // Arguments replace Cmd and keep the Entrypoint.
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "ls /data; cat /srv/marker; test -e /etc/motd || echo motd-gone",
    ]);
    assert_eq!(out, "b\nlayer 3\nmotd-gone\n");
    // --entrypoint '' : the arguments are the command.
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "",
        &img,
        "echo",
        "plain",
    ]);
    assert_eq!(out, "plain\n");
    // Env from the image, -e over it; WorkingDir; -w over it.
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "OVERRIDE=flag",
        &img,
        "echo $FROM_IMAGE $OVERRIDE; pwd",
    ]);
    assert_eq!(out, "yes flag\n/srv\n");
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-w",
        "/tmp",
        &img,
        "pwd",
    ]);
    assert_eq!(out, "/tmp\n");
    // -u names from the image's own /etc/passwd and /etc/group.
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "app",
        &img,
        "id -u; id -g; echo $HOME",
    ]);
    assert_eq!(out, "1000\n1000\n/home/app\n");
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "app:staff",
        &img,
        "id -g",
    ]);
    assert_eq!(out, "50\n");
    assert_eq!(
        overlay_mounts(),
        before,
        "nothing stays mounted on the host's side"
    );
}

#[test]
fn a_containers_changes_stay_in_its_upper_directory_and_go_with_it() {
    let (s, img) = with_image();
    let w = &s.world;
    w.ok(&[
        "run",
        "--name",
        "c1",
        "--network",
        "none",
        &img,
        "echo changed > /etc/motd; rm /bin/ls; mkdir /new",
    ]);
    assert_eq!(w.ok(&["wait", "c1"]).trim(), "0");
    // The next container of the image sees the image, not c1's changes.
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "test -e /bin/ls && test ! -e /etc/motd && test ! -e /new && echo pristine",
    ]);
    assert_eq!(out, "pristine\n");
    // c1 keeps its changes across a restart, as a Docker container does.
    let upper = w.root().join("containers/c1/rootfs/upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("etc/motd")).unwrap(),
        "changed\n"
    );
    // In use: rm refused without -f.
    let err = w.fails(&["image", "rm", &img]);
    assert!(err.contains("in use by container c1"), "{err}");
    w.ok(&["rm", "c1"]);
    assert!(!w.root().join("containers/c1").exists());
    let out = w.ok(&["image", "rm", &img]);
    assert!(
        out.contains("Untagged: localhost/bb:1") && out.contains("Deleted: sha256:"),
        "{out}"
    );
    let out = w.ok(&["image", "prune"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    let layers = std::fs::read_dir(w.root().join("images/layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 0, "prune took the layers");
    w.ok(&["system", "check", "--digests"]);
}

/// A `--rm` container's overlay is `volatile` (its end pays no sync of the host's
/// filesystem); a kept one is not, and the one mount a start prepares is the one its
/// process runs in, start after start.
#[test]
fn a_removed_at_exit_container_is_mounted_volatile_and_a_kept_one_restarts_in_its_changes() {
    let (s, img) = with_image();
    let w = &s.world;
    let root_mount = "grep ' / / ' /proc/self/mountinfo";
    let out = w.ok(&["run", "--rm", "--network", "none", &img, root_mount]);
    // Older kernels show `,volatile`, newer ones `,fsync=volatile`.
    assert!(
        out.contains(" - overlay ") && out.contains("volatile"),
        "{out}"
    );
    let script = format!("{root_mount}; echo run >> /kept");
    let out = w.ok(&["run", "--name", "k", "--network", "none", &img, &script]);
    assert!(out.contains(" - overlay "), "{out}");
    assert!(!out.contains("volatile"), "a kept container syncs: {out}");
    assert_eq!(w.ok(&["wait", "k"]).trim(), "0");
    w.ok(&["start", "k"]);
    assert_eq!(w.ok(&["wait", "k"]).trim(), "0");
    let upper = w.root().join("containers/k/rootfs/upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("kept")).unwrap(),
        "run\nrun\n"
    );
    // Nothing of either is left mounted where the helper and the test live.
    assert_eq!(overlay_mounts(), 0);
    w.ok(&["rm", "k"]);
}

/// `stop` without `-s` sends the image's StopSignal (SIGUSR1 here), as Docker does.
#[test]
fn stop_sends_the_images_stop_signal() {
    let (s, img) = with_image();
    let w = &s.world;
    w.ok(&[
        "run",
        "-d",
        "--name",
        "sig",
        "--network",
        "none",
        &img,
        "trap 'exit 7' USR1; while :; do sleep 0.1; done",
    ]);
    w.ok(&["stop", "-t", "10", "sig"]);
    let v = w.json(&["inspect", "sig"]);
    assert_eq!(v[0]["state"]["exit_code"], 7, "{v}");
    w.ok(&["rm", "sig"]);
}

/// Bad input to the image verbs: one line each, nothing changed.
#[test]
fn bad_image_input_is_refused_in_one_line() {
    let (s, img) = with_image();
    let w = &s.world;
    let before = w.ok(&["image", "ls"]);
    for (args, want) in [
        (
            vec!["image", "pull", "Not/Valid"],
            "repository name must be lowercase",
        ),
        (
            vec!["image", "pull", "--platform", "linux", "x"],
            "invalid platform",
        ),
        (
            vec!["image", "pull", "alpine@sha256:abc"],
            "invalid image reference",
        ),
        (
            vec!["run", "--pull", "sometimes", &img],
            "not a pull policy",
        ),
        (
            vec![
                "run",
                "--rm",
                "--pull",
                "never",
                "--network",
                "none",
                "localhost/nosuch:1",
            ],
            "not found",
        ),
        (
            vec!["create", "--pull", "never", "localhost/nosuch:1"],
            "not found",
        ),
        (
            vec![
                "image",
                "tag",
                &img,
                "x@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            ],
            "digest",
        ),
        (vec!["image", "tag", "nosuch", "x:1"], "not found"),
        (vec!["image", "rm", "nosuch"], "not found"),
        (vec!["image", "inspect", "nosuch"], "not found"),
        (
            vec!["image", "load", "-i", "/nonexistent/archive.tar"],
            "No such file",
        ),
        (
            vec!["image", "save", "-o", "/nonexistent/dir/out.tar", &img],
            "create",
        ),
        (vec!["run", "--rm", "--rootfs", "/tmp", &img, "true"], ""),
        (
            vec!["run", "--rm", "--network", "none", "--entrypoint", "", &img],
            "no command specified",
        ),
        (
            vec![
                "registry",
                "login",
                "-u",
                "x",
                "--password-stdin",
                "bad host!",
            ],
            "",
        ),
    ] {
        let out = w.cli(&args);
        assert!(
            !out.status.success() || want.is_empty(),
            "{args:?} succeeded"
        );
        if out.status.success() {
            continue;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line: {err}"
        );
    }
    assert_eq!(w.ok(&["image", "ls"]), before);
    w.ok(&["system", "check"]);
}

#[test]
fn tag_and_remove_are_image_events() {
    let (s, image) = with_image();
    let w = &s.world;
    w.ok(&["image", "tag", &image, "localhost/bb:2"]);
    w.ok(&["image", "rm", "localhost/bb:2"]);
    w.ok(&["image", "rm", &image]);
    let events = w.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        "type=image",
    ]);
    let actions: Vec<&str> = events
        .lines()
        .map(|l| l.split(' ').nth(2).unwrap_or_default())
        .collect();
    assert_eq!(actions, ["tag", "untag", "untag", "delete"], "{events}");
    assert!(
        events.contains("image tag localhost/bb:1 (target=localhost/bb:2)"),
        "{events}"
    );
}
