//! `--userns=auto` and mounts end to end (issues 10 and 12): binds, volumes and tmpfs
//! mounts idmapped through the container's ids, an image's overlay from idmapped
//! layers, nothing left mounted after a SIGKILL, and a source the kernel cannot idmap
//! refused before anything is made. Real containers in the test's private namespaces.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use container_tests::oci::{layout, Image, LayerBuilder};
use container_tests::{busybox_rootfs, eventually, mounts_under, setup, Setup, World};

fn data_dir(w: &World, name: &str) -> PathBuf {
    w.root().join("volumes").join(name).join("_data")
}

fn owner(path: &Path) -> (u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.uid(), m.gid())
}

#[test]
fn binds_volumes_and_tmpfs_mounts_are_the_containers_own_under_userns_auto() {
    let Setup { world: w, rootfs } = setup();
    let share = w.iso.dir().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("roots"), "r\n").unwrap();
    std::fs::write(share.join("theirs"), "t\n").unwrap();
    std::os::unix::fs::chown(share.join("theirs"), Some(1000), Some(1000)).unwrap();
    let bind = format!("{}:/data", share.display());
    let ro = format!("{}:/ro:ro", share.display());
    // A single file, bound onto a file.
    let file = format!("{}:/etc/motd:ro", share.join("theirs").display());
    let script = "id -u; stat -c '%u %g' /data/roots /data/theirs /v /t /etc/motd; \
                  echo x > /data/new && echo y > /v/new && touch /t/f && stat -c %u /t/f; \
                  touch /ro/no";
    let out = w.cli(&[
        "run",
        "--rm",
        "--userns",
        "auto",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "-v",
        &bind,
        "-v",
        "vol:/v",
        "-v",
        &ro,
        "-v",
        &file,
        "--tmpfs",
        "/t",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        ["0", "0 0", "1000 1000", "0 0", "0 0", "1000 1000", "0"],
        "root inside; host root's files are its root's, 1000 stays 1000, the volume and \
         the tmpfs are its root's: {stdout}\n{stderr}\n{}",
        w.apiserver_log()
    );
    // `ro` is still the kernel's.
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(!share.join("no").exists());
    // What its root wrote is root's on disk: no chown, no high uid.
    assert_eq!(owner(&share.join("new")), (0, 0));
    assert_eq!(owner(&data_dir(&w, "vol").join("new")), (0, 0));
    assert_eq!(owner(&share.join("theirs")), (1000, 1000));
    assert!(mounts_under(w.iso.dir())
        .iter()
        .all(|m| !m.contains("share")));
}

/// A one-layer image of busybox with `/srv/app` owned by 1000.
fn image(w: &World) -> &'static str {
    let work = w.iso.dir().join("img");
    let tree = busybox_rootfs(&work);
    std::fs::create_dir_all(tree.join("srv/app")).unwrap();
    std::fs::write(tree.join("srv/app/f"), "seed\n").unwrap();
    for p in ["srv/app", "srv/app/f"] {
        std::os::unix::fs::chown(tree.join(p), Some(1000), Some(1000)).unwrap();
    }
    std::fs::write(tree.join("etc/group"), "root:x:0:\n").unwrap();
    let img = Image::new(
        vec![LayerBuilder::default().tree(&tree).tar()],
        serde_json::json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}),
    );
    let dir = layout(&w.iso.dir().join("layout"), "localhost/uns:1", &[img]);
    w.ok(&["image", "load", "-i", dir.to_str().unwrap()]);
    "localhost/uns:1"
}

#[test]
fn an_image_runs_under_userns_auto_and_a_sigkilled_sandbox_leaves_nothing_mounted() {
    let Setup { world: w, .. } = setup();
    let img = image(&w);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "u",
        "--userns",
        "auto",
        "--network",
        "none",
        "-v",
        "seeded:/srv/app",
        img,
        "sleep",
        "1000",
    ]);
    let state = w.json(&["inspect", "u"])[0]["state"].clone();
    let start = state["userns"]["start"].as_u64().unwrap();
    let pid = state["pid"].as_u64().unwrap();
    let out = w.ok(&[
        "exec",
        "u",
        "sh",
        "-c",
        "id -u; stat -c %u /etc/passwd /srv/app /srv/app/f; \
         echo mine > /rootfile && echo staff:x:50: >> /etc/group && echo more >> /srv/app/f && echo ok",
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0", "0", "1000", "1000", "ok"],
        "root inside, the image's owners as the image gave them (the volume seeded \
         from it keeps them): {out}"
    );
    // Outside, the workload is the range's first id.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        start >= 65_536
            && uids
                .split_whitespace()
                .skip(1)
                .all(|u| u == start.to_string()),
        "{uids} (range {start})"
    );
    // Its writes land in the upper directory with the container's ids as they are on
    // disk in the layers: its root is 0 there, whatever range it runs under next.
    let upper = w.root().join("containers/u/rootfs/upper");
    assert_eq!(owner(&upper.join("rootfile")), (0, 0));
    assert_eq!(owner(&upper.join("etc/group")), (0, 0));
    assert_eq!(
        std::fs::read_to_string(upper.join("etc/group")).unwrap(),
        "root:x:0:\nstaff:x:50:\n"
    );
    // The volume was seeded with the image's on-disk owners.
    let seeded = data_dir(&w, "seeded");
    assert_eq!(owner(&seeded), (1000, 1000));
    assert_eq!(owner(&seeded.join("f")), (1000, 1000));
    assert_eq!(
        std::fs::read_to_string(seeded.join("f")).unwrap(),
        "seed\nmore\n"
    );
    // A SIGKILL of the sandbox helper: nothing of the container was ever mounted on
    // this side.
    let helper = state["helper_pid"].as_u64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(helper as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("u stopped", || {
        w.json(&["inspect", "u"])[0]["state"]["status"] == "stopped"
    });
    assert!(
        mounts_under(&w.root()).is_empty(),
        "{:?}",
        mounts_under(&w.root())
    );
    w.ok(&["system", "check"]);
    // It starts again, under whatever range it gets, and its files are still its own.
    w.ok(&["start", "u"]);
    let out = w.ok(&["exec", "u", "stat", "-c", "%u", "/rootfile"]);
    assert_eq!(out.trim(), "0");
    w.ok(&["rm", "-f", "u"]);
    assert!(mounts_under(&w.root()).is_empty());
}

/// Everything under `dir`, to tell that bad input changed nothing.
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

/// procfs mounted in the test's own mount namespace, unmounted on drop (before the
/// temporary directory is removed, even when the test fails).
struct ProcMount(PathBuf);

impl ProcMount {
    fn new(at: PathBuf) -> ProcMount {
        std::fs::create_dir_all(&at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(&at)
            .status()
            .unwrap();
        assert!(ok.success(), "mount proc on {}", at.display());
        ProcMount(at)
    }
}

impl Drop for ProcMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_source_the_kernel_cannot_idmap_is_refused_with_exit_125_and_nothing_made() {
    let Setup { world: w, rootfs } = setup();
    // procfs cannot be idmapped; nor can a tree with it mounted below.
    let top = ProcMount::new(w.iso.dir().join("procsrc"));
    let parent = w.iso.dir().join("tree");
    let below = ProcMount::new(parent.join("sub"));
    let before = tree(&w.root());
    let cases = [
        (
            vec!["-v".to_string(), format!("{}:/p", top.0.display())],
            vec![
                format!(
                    "{}: its filesystem (proc) cannot be idmapped",
                    top.0.display()
                ),
                "bind mount on /p".to_string(),
            ],
        ),
        (
            vec![
                "--mount".to_string(),
                format!("type=bind,src={},dst=/t", parent.display()),
            ],
            vec![format!(
                "{} mounted below it (proc) cannot be idmapped",
                below.0.display()
            )],
        ),
    ];
    for (flags, wants) in &cases {
        let mut args = vec![
            "run",
            "--rm",
            "--name",
            "bad",
            "--userns",
            "auto",
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
        for want in wants {
            assert!(
                err.contains(want.as_str()),
                "{flags:?}: want {want:?} in {err}"
            );
        }
        assert_eq!(tree(&w.root()), before, "{flags:?} changed the state");
    }
    // The same sources without a user namespace of its own are plain binds.
    let spec = format!("{}:/p", top.0.display());
    w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "-v",
        &spec,
        "--",
        "true",
    ]);
}
