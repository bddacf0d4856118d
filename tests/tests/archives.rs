//! `image load` of real archives (podman save in both formats, skopeo's
//! docker-archive, our own save, a pipe), `image save` read back by podman, and broken
//! archives refused with nothing left behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use container_tests::oci::{busybox_image, layout};
use container_tests::{setup, Setup};

/// podman with a store of the test's own (vfs, in its temporary directory).
struct Podman(PathBuf);

impl Podman {
    fn new(dir: &Path) -> Podman {
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        Podman(dir.to_path_buf())
    }
    fn run(&self, args: &[&str]) -> String {
        let d = &self.0;
        let out = Command::new("podman")
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ])
            .args(args)
            .output()
            .expect("podman (apt-get install podman)");
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The test image as an OCI layout, and podman holding it as localhost/bb:1.
fn sources(s: &Setup) -> (PathBuf, Podman) {
    let dir = layout(
        &s.world.iso.dir().join("layout"),
        "localhost/bb:1",
        &[busybox_image(&s.world.iso.dir().join("img"))],
    );
    let podman = Podman::new(&s.world.iso.dir().join("podman"));
    // Into podman's store through skopeo's docker-archive (podman's oci: transport
    // names an image after its directory's path).
    let staged = s.world.iso.dir().join("staged.tar");
    skopeo_archive(&dir, &staged, "localhost/bb:1");
    podman.run(&["load", "-q", "-i", staged.to_str().unwrap()]);
    std::fs::remove_file(&staged).unwrap();
    (dir, podman)
}

fn skopeo_archive(layout: &Path, archive: &Path, name: &str) {
    let out = Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}", layout.display()))
        .arg(format!("docker-archive:{}:{name}", archive.display()))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn loads_and_runs(s: &Setup, archive: &Path, name: &str) {
    let w = &s.world;
    let out = w.ok(&["image", "load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.contains(&format!("Loaded image: {name}")),
        "{}: {out}",
        archive.display()
    );
    assert_eq!(
        w.ok(&["run", "--rm", "--network", "none", name]),
        "image-cmd\nnew\n",
        "{}",
        archive.display()
    );
    w.ok(&["image", "rm", name]);
    w.ok(&["image", "prune"]);
    w.ok(&["system", "check", "--digests"]);
}

#[test]
fn podman_save_in_both_formats_loads_and_runs() {
    let s = setup();
    let (_, podman) = sources(&s);
    let dir = s.world.iso.dir();
    let docker = dir.join("docker-archive.tar");
    let oci = dir.join("oci-archive.tar");
    podman.run(&[
        "save",
        "-q",
        "--format",
        "docker-archive",
        "-o",
        docker.to_str().unwrap(),
        "localhost/bb:1",
    ]);
    podman.run(&[
        "save",
        "-q",
        "--format",
        "oci-archive",
        "-o",
        oci.to_str().unwrap(),
        "localhost/bb:1",
    ]);
    loads_and_runs(&s, &docker, "localhost/bb:1");
    loads_and_runs(&s, &oci, "localhost/bb:1");
}

#[test]
fn skopeos_docker_archive_a_layout_and_a_pipe_load_too() {
    let s = setup();
    let (layout_dir, _) = sources(&s);
    let archive = s.world.iso.dir().join("skopeo.tar");
    skopeo_archive(&layout_dir, &archive, "localhost/sk:2");
    loads_and_runs(&s, &archive, "localhost/sk:2");
    loads_and_runs(&s, &layout_dir, "localhost/bb:1");
    let out = s
        .world
        .cli_command(&["image", "load"])
        .stdin(std::fs::File::open(&archive).unwrap())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Loaded image: localhost/sk:2"),
        "{out:?}"
    );
}

#[test]
fn image_save_is_read_by_podman_and_by_load() {
    let s = setup();
    let (layout_dir, _) = sources(&s);
    let w = &s.world;
    w.ok(&["image", "load", "-i", layout_dir.to_str().unwrap()]);
    w.ok(&["image", "tag", "localhost/bb:1", "localhost/copy:9"]);
    let saved = w.iso.dir().join("saved.tar");
    w.ok(&[
        "image",
        "save",
        "-o",
        saved.to_str().unwrap(),
        "localhost/bb:1",
        "localhost/copy:9",
    ]);
    let other = Podman::new(&w.iso.dir().join("podman2"));
    let out = other.run(&["load", "-q", "-i", saved.to_str().unwrap()]);
    assert!(
        out.contains("localhost/bb:1") && out.contains("localhost/copy:9"),
        "{out}"
    );
    let id = w.json(&["image", "inspect", "localhost/bb:1"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    w.ok(&["image", "rm", "-f", &id]);
    w.ok(&["image", "prune", "-a"]);
    let out = w.ok(&["image", "load", "-i", saved.to_str().unwrap()]);
    assert!(
        out.contains("localhost/bb:1") && out.contains("localhost/copy:9"),
        "{out}"
    );
    assert_eq!(
        w.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "localhost/copy:9",
            "echo copy"
        ]),
        "copy\n"
    );
}

#[test]
fn broken_archives_are_refused_and_leave_nothing() {
    let s = setup();
    let (layout_dir, _) = sources(&s);
    let w = &s.world;
    let dir = w.iso.dir();
    let garbage = dir.join("garbage.tar");
    std::fs::write(&garbage, b"not a tar at all".repeat(100)).unwrap();
    let err = w.fails(&["image", "load", "-i", garbage.to_str().unwrap()]);
    assert!(err.contains("image load"), "{err}");
    // A layout whose layer blob was changed: the digest says so.
    let tampered = dir.join("tampered");
    Command::new("cp")
        .arg("-a")
        .arg(&layout_dir)
        .arg(&tampered)
        .status()
        .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tampered.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tampered.join("blobs/sha256").join(&m)).unwrap())
            .unwrap();
    let layer = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    std::fs::write(tampered.join("blobs/sha256").join(&layer), b"evil bytes").unwrap();
    let err = w.fails(&["image", "load", "-i", tampered.to_str().unwrap()]);
    assert!(err.contains("digest mismatch"), "{err}");
    // A layout whose index names a manifest that is not there.
    std::fs::remove_file(tampered.join("blobs/sha256").join(&m)).unwrap();
    let err = w.fails(&["image", "load", "-i", tampered.to_str().unwrap()]);
    assert!(err.contains("image load"), "{err}");
    assert!(w.ok(&["image", "ls", "-q"]).is_empty());
    assert!(std::fs::read_dir(w.root().join("images/tmp"))
        .unwrap()
        .next()
        .is_none());
    w.ok(&["system", "check", "--digests"]);
}

/// Hostile layers through the whole path (load, the confined unpacker): refused with
/// the rule that stopped them, nothing written outside the store, the store clean.
#[test]
fn hostile_layers_in_an_archive_are_refused_and_write_nothing_outside() {
    use container_tests::oci::{Image, LayerBuilder};
    let s = setup();
    let w = &s.world;
    let outside = w.iso.dir().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let target = outside.display().to_string();
    let zeros = vec![0u8; 40 << 20];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "traversal",
            LayerBuilder::default()
                .raw_file("../../../../../../../../outside-pwned", b"x")
                .tar(),
            "outside the layer",
        ),
        (
            "symlink escape",
            LayerBuilder::default()
                .symlink("evil", &target)
                .file("evil/pwned", b"x", 0o644)
                .tar(),
            "symlink on the way",
        ),
        (
            "decompression bomb",
            LayerBuilder::default().file("zeros", &zeros, 0o644).tar(),
            "decompression bomb",
        ),
    ];
    for (what, tar, want) in cases {
        let dir = layout(
            &w.iso
                .dir()
                .join(format!("hostile-{}", what.replace(' ', "-"))),
            "localhost/hostile:1",
            &[Image::new(vec![tar], serde_json::json!({"Cmd": ["/x"]}))],
        );
        let err = w.fails(&["image", "load", "-i", dir.to_str().unwrap()]);
        assert!(err.contains(want), "{what}: {err}");
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "{what}: wrote outside"
        );
        assert!(
            !w.iso.dir().join("outside-pwned").exists()
                && !std::path::Path::new("/outside-pwned").exists(),
            "{what}"
        );
        w.ok(&["system", "check"]);
    }
}
