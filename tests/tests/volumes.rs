//! Volumes and mounts end to end (issue 12): real binds, volumes and tmpfs mounts in
//! containers, in the test's private namespaces; the volume store on disk; bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use container_tests::oci::{busybox_image, layout};
use container_tests::{eventually, mounts_under, setup, Setup, World};

fn run(w: &World, rootfs: &str, mounts: &[&str], script: &str) -> std::process::Output {
    let mut args = vec!["run", "--rm", "--network", "none", "--rootfs", rootfs];
    args.extend_from_slice(mounts);
    args.extend_from_slice(&["--", "sh", "-c", script]);
    w.cli(&args)
}

fn ok(w: &World, rootfs: &str, mounts: &[&str], script: &str) -> String {
    let out = run(w, rootfs, mounts, script);
    assert!(
        out.status.success(),
        "{mounts:?} {script:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        w.apiserver_log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn data_dir(w: &World, name: &str) -> PathBuf {
    w.root().join("volumes").join(name).join("_data")
}

#[test]
fn binds_are_read_write_or_really_read_only() {
    let s = setup();
    let w = &s.world;
    let host = w.iso.dir().join("share");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let spec = format!("{}:/data", host.display());
    let out = ok(
        w,
        &s.rootfs,
        &["-v", &spec],
        "cat /data/in; echo out > /data/out",
    );
    assert_eq!(out, "from host\n");
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "out\n");
    // :ro is the kernel's: the write fails with EROFS.
    let ro = format!("{spec}:ro");
    let out = run(w, &s.rootfs, &["-v", &ro], "cat /data/in && touch /data/x");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!host.join("x").exists());
    let mount = format!("type=bind,src={},dst=/data,readonly", host.display());
    let out = run(w, &s.rootfs, &["--mount", &mount], "touch /data/y");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
    // A single file binds onto a file; -v makes a missing host directory, as Docker.
    let file = format!("{}:/etc/motd:ro", host.join("in").display());
    assert_eq!(
        ok(w, &s.rootfs, &["-v", &file], "cat /etc/motd"),
        "from host\n"
    );
    let fresh = w.iso.dir().join("made/by/v");
    let spec = format!("{}:/m", fresh.display());
    ok(w, &s.rootfs, &["-v", &spec], "echo z > /m/z");
    assert_eq!(std::fs::read_to_string(fresh.join("z")).unwrap(), "z\n");
    // Nothing of it is mounted on the host.
    assert!(mounts_under(w.iso.dir())
        .iter()
        .all(|m| !m.contains("share")));
}

#[test]
fn a_named_volume_outlives_its_containers_and_is_shared_while_they_run() {
    let s = setup();
    let w = &s.world;
    ok(w, &s.rootfs, &["-v", "keep:/data"], "echo kept > /data/f");
    assert_eq!(
        std::fs::read_to_string(data_dir(w, "keep").join("f")).unwrap(),
        "kept\n"
    );
    assert_eq!(
        ok(w, &s.rootfs, &["-v", "keep:/data"], "cat /data/f"),
        "kept\n"
    );
    // Two running containers see each other's writes.
    for name in ["a", "b"] {
        w.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--rootfs",
            &s.rootfs,
            "-v",
            "keep:/shared",
            "--",
            "sleep",
            "1000",
        ]);
    }
    w.ok(&["exec", "a", "sh", "-c", "echo from-a > /shared/x"]);
    assert_eq!(w.ok(&["exec", "b", "cat", "/shared/x"]), "from-a\n");
    let v = w.json(&["volume", "inspect", "keep"]);
    assert_eq!(v[0]["containers"], serde_json::json!(["a", "b"]));
    assert_eq!(
        v[0]["mountpoint"],
        data_dir(w, "keep").display().to_string()
    );
    // In use, even by a stopped container: refused, and nothing removed.
    w.ok(&["stop", "-t", "0", "a", "b"]);
    let err = w.fails(&["volume", "rm", "keep"]);
    assert!(
        err.contains("volume keep is in use by container a, b"),
        "{err}"
    );
    // prune passes it by.
    w.ok(&["volume", "prune", "-a"]);
    assert!(data_dir(w, "keep").join("x").exists());
    w.ok(&["rm", "a"]);
    // -f removes the containers using it first (Podman's rm -f).
    assert_eq!(w.ok(&["volume", "rm", "-f", "keep"]), "keep\n");
    assert!(!w.root().join("volumes/keep").exists());
    assert!(w.cli(&["inspect", "b"]).status.code() == Some(1));
    let df = w.json(&["system", "df", "--format", "json"]);
    assert_eq!(df["volumes"]["count"], 0, "{df}");
}

#[test]
fn volumes_are_created_listed_pruned_and_anonymous_ones_go_with_rm_v() {
    let s = setup();
    let w = &s.world;
    assert_eq!(w.ok(&["volume", "create", "v1"]), "v1\n");
    let err = w.fails(&["volume", "create", "v1"]);
    assert!(err.contains("volume v1 already exists"), "{err}");
    w.ok(&["volume", "create", "--label", "k=v", "v2"]);
    assert_eq!(w.ok(&["volume", "ls", "-q"]), "v1\nv2\n");
    assert_eq!(w.json(&["volume", "inspect", "v2"])[0]["labels"]["k"], "v");
    // An anonymous volume: named at create, removed with rm -v.
    w.ok(&[
        "create",
        "--name",
        "anon",
        "--network",
        "none",
        "--rootfs",
        &s.rootfs,
        "-v",
        "/scratch",
        "--",
        "true",
    ]);
    let c = w.json(&["inspect", "anon"]);
    let name = c[0]["config"]["mounts"][0]["source"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(name.len(), 64, "{c}");
    assert!(data_dir(w, &name).is_dir());
    let df = w.json(&["system", "df", "--format", "json"]);
    assert_eq!(
        (
            df["volumes"]["count"].as_u64(),
            df["volumes"]["active"].as_u64()
        ),
        (Some(3), Some(1))
    );
    w.ok(&["rm", "-v", "anon"]);
    assert!(!w.root().join("volumes").join(&name).exists());
    // prune: anonymous unused ones (none left); -a: every unused one.
    w.ok(&["volume", "prune"]);
    assert_eq!(w.ok(&["volume", "ls", "-q"]), "v1\nv2\n");
    let out = w.ok(&["volume", "prune", "-a"]);
    assert!(out.contains("v1\nv2\n"), "{out}");
    assert_eq!(w.ok(&["volume", "ls", "-q"]), "");
    // --rm takes its anonymous volumes too.
    ok(w, &s.rootfs, &["-v", "/anon"], "touch /anon/f");
    assert_eq!(w.ok(&["volume", "ls", "-q"]), "");
    w.ok(&["system", "check"]);
}

#[test]
fn a_new_volume_is_seeded_from_the_image_and_read_only_roots_still_write_to_mounts() {
    let s = setup();
    let w = &s.world;
    let dir = layout(
        &w.iso.dir().join("layout"),
        "localhost/bb:1",
        &[busybox_image(&w.iso.dir().join("img"))],
    );
    w.ok(&["image", "load", "-i", dir.to_str().unwrap()]);
    let img = "localhost/bb:1";
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "seeded:/srv",
        img,
        "cat /srv/marker; echo mine > /srv/mine",
    ]);
    assert_eq!(out, "layer 3\n");
    let data = data_dir(w, "seeded");
    assert_eq!(
        std::fs::read_to_string(data.join("marker")).unwrap(),
        "layer 3\n"
    );
    // Seeded once: a volume with files keeps them (no copy over them).
    std::fs::write(data.join("marker"), "changed\n").unwrap();
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "seeded:/srv",
        img,
        "cat /srv/marker /srv/mine",
    ]);
    assert_eq!(out, "changed\nmine\n");
    // nocopy: an empty volume stays empty.
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "bare:/srv:nocopy",
        img,
        "ls /srv | wc -l",
    ]);
    assert_eq!(out.trim(), "0");
    // With --read-only, a volume and a tmpfs still take writes.
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "-v",
        "rw:/w",
        img,
        "touch /tmp/t && touch /w/w && echo ok; touch /nope 2>&1; true",
    ]);
    assert!(
        out.starts_with("ok\n") && out.contains("Read-only file system"),
        "{out}"
    );
}

#[test]
fn tmpfs_mounts_have_their_size_and_mode() {
    let s = setup();
    let w = &s.world;
    let out = ok(
        w,
        &s.rootfs,
        &["--tmpfs", "/scratch:size=64k,mode=700"],
        "stat -c %a /scratch; dd if=/dev/zero of=/scratch/big bs=1k count=128 2>&1; true",
    );
    assert!(out.starts_with("700\n"), "{out}");
    assert!(out.contains("No space left on device"), "{out}");
    let out = ok(
        w,
        &s.rootfs,
        &["--mount", "type=tmpfs,dst=/t,tmpfs-size=1m", "--read-only"],
        "touch /t/a && echo ok; touch /b 2>&1; grep ' /t ' /proc/mounts",
    );
    assert!(
        out.starts_with("ok\n") && out.contains("Read-only file system"),
        "{out}"
    );
    assert!(out.contains("nosuid,nodev,noexec"), "{out}");
}

#[test]
fn a_symlinked_target_lands_inside_the_root_and_the_host_path_is_untouched() {
    let s = setup();
    let w = &s.world;
    let rootfs = Path::new(&s.rootfs);
    // The host path the links name, under the test's own directory.
    let host = w.iso.dir().join("host-target");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("hosts"), "host's own\n").unwrap();
    std::os::unix::fs::symlink(&host, rootfs.join("mnt")).unwrap();
    std::os::unix::fs::symlink("/../../../../etc", rootfs.join("escape")).unwrap();
    std::os::unix::fs::symlink(host.join("hosts"), rootfs.join("etc/hosts")).unwrap();
    let out = ok(
        w,
        &s.rootfs,
        &["-v", "trap:/mnt", "--tmpfs", "/escape/inner"],
        "echo in > /mnt/f; echo x > /escape/inner/f; cat /etc/hosts | head -1",
    );
    assert!(!out.contains("host's own"), "{out}");
    // The volume got the write; the host directory the link names did not.
    assert_eq!(
        std::fs::read_to_string(data_dir(w, "trap").join("f")).unwrap(),
        "in\n"
    );
    let names: Vec<_> = std::fs::read_dir(&host)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("hosts")]);
    assert_eq!(
        std::fs::read_to_string(host.join("hosts")).unwrap(),
        "host's own\n"
    );
    // The link was followed inside the root: the mount point was made there.
    assert!(rootfs.join(host.strip_prefix("/").unwrap()).is_dir());
    assert!(rootfs.join("etc/inner").is_dir());
    assert!(!Path::new("/etc/inner").exists());
}

#[test]
fn an_rslave_bind_receives_mounts_made_on_the_host_after_it() {
    let s = setup();
    let w = &s.world;
    let src = w.iso.dir().join("prop");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let sh = |cmd: &str| {
        let st = Command::new("sh").args(["-c", cmd]).status().unwrap();
        assert!(st.success(), "{cmd}");
    };
    let p = src.display().to_string();
    sh(&format!("mount --bind {p} {p} && mount --make-shared {p}"));
    let spec = format!("{p}:/p:rslave");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "prop",
        "--network",
        "none",
        "--rootfs",
        &s.rootfs,
        "-v",
        &spec,
        "--",
        "sleep",
        "1000",
    ]);
    sh(&format!(
        "mount -t tmpfs tmpfs {p}/sub && echo late > {p}/sub/f"
    ));
    assert_eq!(w.ok(&["exec", "prop", "cat", "/p/sub/f"]), "late\n");
    // The default, rprivate, does not.
    let spec = format!("{p}:/p");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "priv",
        "--network",
        "none",
        "--rootfs",
        &s.rootfs,
        "-v",
        &spec,
        "--",
        "sleep",
        "1000",
    ]);
    sh(&format!(
        "mkdir -p {p}/two && mount -t tmpfs tmpfs {p}/two && echo x > {p}/two/f"
    ));
    assert!(!w.cli(&["exec", "priv", "cat", "/p/two/f"]).status.success());
    w.ok(&["rm", "-f", "prop", "priv"]);
    sh(&format!("umount {p}/two; umount {p}/sub; umount {p}"));
}

#[test]
fn a_sigkilled_sandbox_leaves_nothing_mounted() {
    let s = setup();
    let w = &s.world;
    let host = w.iso.dir().join("bound");
    std::fs::create_dir(&host).unwrap();
    let spec = format!("{}:/b", host.display());
    w.ok(&[
        "run",
        "-d",
        "--name",
        "victim",
        "--network",
        "none",
        "--rootfs",
        &s.rootfs,
        "-v",
        &spec,
        "-v",
        "vol:/v",
        "--tmpfs",
        "/t",
        "--",
        "sleep",
        "1000",
    ]);
    let before = mounts_under(&w.root());
    let pid = w.json(&["inspect", "victim"])[0]["state"]["helper_pid"]
        .as_u64()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("victim stopped", || {
        w.json(&["inspect", "victim"])[0]["state"]["status"] == "stopped"
    });
    // The container's mounts were only ever in its own namespace.
    assert!(before.iter().all(|m| !m.contains("_data")), "{before:?}");
    assert!(mounts_under(&w.root()).iter().all(|m| !m.contains("_data")));
    assert!(mounts_under(&host).is_empty());
    w.ok(&["system", "check"]);
}

/// Everything under `<root>`, to tell that bad input changed nothing.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        out.push(p.display().to_string());
        if p.is_dir() && !p.is_symlink() {
            out.extend(tree(&p));
        }
    }
    out.sort();
    out
}

#[test]
fn bad_mounts_get_one_clear_line_exit_125_and_change_nothing() {
    let Setup { world: w, rootfs } = setup();
    let host = w.iso.dir().join("h");
    std::fs::create_dir(&host).unwrap();
    let h = host.display().to_string();
    let missing = w.iso.dir().join("missing").display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["-v".into(), "rel/dir:/d".into()], "is relative"),
        (vec!["-v".into(), "./dir:/d".into()], "is relative"),
        (vec!["-v".into(), format!("{h}:d")], "\"d\" is not absolute"),
        (vec!["-v".into(), format!("{h}:")], "empty container path"),
        (vec!["-v".into(), format!("{h}:/")], "is the root"),
        (vec!["-v".into(), format!("{h}:/proc/x")], "inside /proc"),
        (vec!["-v".into(), format!("{h}:/sys")], "inside /sys"),
        (
            vec!["-v".into(), format!("{h}:/d:ro,rw")],
            "ro and rw both given",
        ),
        (
            vec!["-v".into(), format!("{h}:/d:bogus")],
            "unknown option \"bogus\"",
        ),
        (
            vec!["-v".into(), "bad..name:/d".into()],
            "invalid volume name \"bad..name\"",
        ),
        (
            vec!["-v".into(), "v@x:/d".into()],
            "invalid volume name \"v@x\"",
        ),
        (
            vec![
                "--mount".into(),
                format!("type=bind,src={h},dst=/d,colour=red"),
            ],
            "unknown key \"colour\"",
        ),
        (
            vec!["--mount".into(), format!("type=bind,src={missing},dst=/d")],
            "does not exist",
        ),
        (
            vec!["--mount".into(), "type=tmpfs,dst=/t,tmpfs-size=abc".into()],
            "tmpfs size \"abc\"",
        ),
        (
            vec![
                "--mount".into(),
                "type=volume,src=v,dst=/d,volume-opt=type=nfs".into(),
            ],
            "need both type= and device=",
        ),
        (
            vec![
                "--mount".into(),
                "type=volume,src=v,dst=/d,volume-opt=size=1m".into(),
            ],
            "option \"size\" is not one of the local driver's",
        ),
        (
            vec!["--mount".into(), "type=volume,src=a/b,dst=/d".into()],
            "invalid volume name \"a/b\"",
        ),
        (
            vec!["--tmpfs".into(), "rel".into()],
            "\"rel\" is not absolute",
        ),
        (
            vec!["--tmpfs".into(), "/t:size=abc".into()],
            "tmpfs size \"abc\"",
        ),
        (
            vec![
                "-v".into(),
                format!("{h}:/d"),
                "--tmpfs".into(),
                "/d".into(),
            ],
            "two mounts on /d",
        ),
    ];
    let before = tree(&w.root());
    for (flags, want) in &cases {
        let mut args: Vec<&str> = vec![
            "create",
            "--name",
            "bad",
            "--network",
            "none",
            "--rootfs",
            &rootfs,
        ];
        args.extend(flags.iter().map(String::as_str));
        args.extend(["--", "true"]);
        let out = w.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{flags:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{flags:?}: {err}");
        assert!(err.contains(want), "{flags:?}: want {want:?} in {err}");
        assert_eq!(tree(&w.root()), before, "{flags:?} changed the state");
    }
    for (args, want) in [
        (vec!["volume", "create", "a/b"], "invalid volume name"),
        (
            vec!["volume", "create", "-o", "type=nfs", "x"],
            "need both type= and device=",
        ),
        (vec!["volume", "create", "-d", "nfs", "x"], "driver \"nfs\""),
    ] {
        let out = w.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(tree(&w.root()), before, "{args:?} changed the state");
    }
    assert!(!Path::new(&missing).exists());
}

#[test]
fn a_volume_create_killed_half_way_leaves_no_volume() {
    let mut w = World::new();
    let log = w.iso.dir().join("faults.log").display().to_string();
    w.start_apiserver_with(&[
        (
            container_protocol::fault::FAULT_ENV,
            "apiserver:volume-before-rename",
        ),
        (container_protocol::fault::FAULT_LOG_ENV, &log),
    ]);
    let out = w.cli(&["volume", "create", "half"]);
    assert!(!out.status.success());
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("volume-before-rename"));
    // What it left is under .tmp/, never listed.
    assert!(!w.root().join("volumes/half").exists());
    assert_eq!(
        std::fs::read_dir(w.root().join("volumes/.tmp"))
            .unwrap()
            .count(),
        1
    );
    w.kill_apiserver();
    w.start_apiserver();
    assert_eq!(
        std::fs::read_dir(w.root().join("volumes/.tmp"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(w.ok(&["volume", "ls", "-q"]), "");
    w.ok(&["system", "check"]);
    assert_eq!(w.ok(&["volume", "create", "half"]), "half\n");
}

#[test]
fn system_prune_volumes_takes_unused_anonymous_volumes_and_keeps_named_ones() {
    let s = setup();
    let w = &s.world;
    w.ok(&[
        "create",
        "--name",
        "c",
        "--network",
        "none",
        "--rootfs",
        &s.rootfs,
        "-v",
        "/anon",
        "-v",
        "named:/n",
        "--",
        "true",
    ]);
    let out = w.json(&["system", "prune", "--volumes", "--format", "json"]);
    assert_eq!(out["containers"], serde_json::json!(["c"]), "{out}");
    assert_eq!(out["volumes"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(w.ok(&["volume", "ls", "-q"]), "named\n");
}

/// The local driver's options: a tmpfs volume (its size enforced, its options in the
/// container's mount table and nowhere on the host's), a bind volume (`type=none,o=bind`)
/// whose writes land in its host path, one made on first use by `--mount volume-opt=`,
/// `o=ro`; bad options refused by `volume create` with nothing made.
#[test]
fn local_driver_options_make_tmpfs_and_bind_volumes() {
    let s = setup();
    let w = &s.world;
    w.ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=64k,mode=750",
        "tv",
    ]);
    let inspect = w.ok(&["volume", "inspect", "tv"]);
    assert!(inspect.contains("size=64k"), "{inspect}");
    let out = ok(
        w,
        &s.rootfs,
        &["-v", "tv:/data"],
        "stat -c %a /data; grep ' /data ' /proc/mounts; dd if=/dev/zero of=/data/big bs=1k count=128 2>&1; true",
    );
    assert!(out.starts_with("750\n"), "{out}");
    assert!(
        out.contains("tmpfs /data tmpfs") && out.contains("nosuid,nodev"),
        "{out}"
    );
    assert!(out.contains("No space left on device"), "{out}");
    // Mounted in the container's namespace only: nothing here, nothing in _data.
    let left = mounts_under(&w.root());
    assert!(left.is_empty(), "{left:?}");
    assert!(std::fs::read_dir(data_dir(w, "tv"))
        .unwrap()
        .next()
        .is_none());

    let host = w.iso.dir().join("bound");
    std::fs::create_dir(&host).unwrap();
    let device = format!("device={}", host.display());
    w.ok(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        &device,
        "-o",
        "o=bind",
        "bv",
    ]);
    ok(w, &s.rootfs, &["-v", "bv:/b"], "echo through > /b/f");
    assert_eq!(
        std::fs::read_to_string(host.join("f")).unwrap(),
        "through\n"
    );

    let out = ok(
        w,
        &s.rootfs,
        &[
            "--mount",
            "type=volume,src=fresh,dst=/f,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=ro",
        ],
        "touch /f/x 2>&1; true",
    );
    assert!(out.contains("Read-only file system"), "{out}");
    let inspect = w.ok(&["volume", "inspect", "fresh"]);
    assert!(inspect.contains("\"type\": \"tmpfs\""), "{inspect}");

    let before = w.ok(&["volume", "ls", "-q"]);
    for (opts, want) in [
        (vec!["-o", "type=tmpfs"], "need both type= and device="),
        (
            vec!["-o", "type=proc", "-o", "device=proc"],
            "shows the host",
        ),
        (
            vec![
                "-o",
                "type=none",
                "-o",
                "device=/nonexistent-x",
                "-o",
                "o=bind",
            ],
            "does not exist",
        ),
        (vec!["-o", "flavour=x"], "option \"flavour\""),
    ] {
        let mut args = vec!["volume", "create"];
        args.extend(opts);
        args.push("badv");
        let out = w.cli(&args);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(want) && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    assert_eq!(w.ok(&["volume", "ls", "-q"]), before);
}
