//! Layers from strangers, unpacked by the real confined child (`container-unpack`):
//! what a layer may hold lands inside, and every hostile trick is refused with a clear
//! error while the directory beside the layer stays untouched.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::{gzip, unpacker, zstd, Layer};
use container_image::unpack::{child::unpack_in_child, Limits, Report};

struct Place {
    _iso: container_testkit::Isolated,
    dir: tempfile::TempDir,
}

impl Place {
    fn new() -> Place {
        let iso = container_testkit::isolate().expect("isolate");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("layer")).unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/keep"), "host file").unwrap();
        Place { _iso: iso, dir }
    }
    fn layer(&self) -> std::path::PathBuf {
        self.dir.path().join("layer")
    }
    fn unpack(&self, blob: &[u8], limits: Limits) -> Result<Report, String> {
        let path = self.dir.path().join("blob");
        std::fs::write(&path, blob).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        unpack_in_child(&unpacker(), file, &self.layer(), &limits).map_err(|e| e.to_string())
    }
    /// Nothing beside the layer changed.
    fn outside_untouched(&self) {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path().join("outside"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["keep"]);
        assert_eq!(
            std::fs::read_to_string(self.dir.path().join("outside/keep")).unwrap(),
            "host file"
        );
        let mut top: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(top, vec!["blob", "layer", "outside"]);
    }
}

#[test]
fn what_a_layer_may_hold_lands_inside_it() {
    let p = Place::new();
    let tar = Layer::new()
        .dir("etc/", 0o755)
        .file("etc/hostname", b"box\n")
        .file_mode("bin/su", b"#!", 0o4755)
        .owned("home/app/data", b"mine", 1000, 1001)
        .symlink("bin/sh", "/bin/busybox")
        .symlink("lib", "usr/lib")
        .hardlink("bin/su2", "bin/su")
        .special("run/fifo", tar::EntryType::Fifo)
        .special("dev/sda", tar::EntryType::Block)
        .with_xattrs(
            "bin/ping",
            b"ping",
            &[
                ("user.note", b"x"),
                ("trusted.evil", b"y"),
                ("user.overlay.opaque", b"y"),
            ],
        )
        .file("/abs/file", b"leading slash dropped")
        .file("gone/.wh.old", b"")
        .file("fresh/.wh..wh..opq", b"")
        .dir("ro/", 0o555)
        .file("ro/inside", b"written into a read-only directory")
        .file("etc/hostname", b"later entry wins\n")
        .tar();
    let report = p.unpack(&gzip(&tar), Limits::default()).expect("unpack");
    let l = p.layer();
    assert_eq!(
        std::fs::read_to_string(l.join("etc/hostname")).unwrap(),
        "later entry wins\n"
    );
    let su = std::fs::metadata(l.join("bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(su.nlink(), 2, "hard link");
    let data = std::fs::metadata(l.join("home/app/data")).unwrap();
    assert_eq!((data.uid(), data.gid()), (1000, 1001));
    assert_eq!(
        std::fs::read_link(l.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        std::fs::read_link(l.join("lib")).unwrap(),
        Path::new("usr/lib")
    );
    assert!(std::fs::symlink_metadata(l.join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(!l.join("dev/sda").exists(), "device nodes are not created");
    assert_eq!(report.skipped_devices, 1);
    assert_eq!(
        report.skipped_xattrs, 2,
        "trusted.* and user.overlay.* skipped"
    );
    assert_eq!(
        std::fs::read_to_string(l.join("abs/file")).unwrap(),
        "leading slash dropped"
    );
    let wh = std::fs::symlink_metadata(l.join("gone/old")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "overlay whiteout"
    );
    assert!(!l.join("gone/.wh.old").exists());
    assert_eq!(
        xattr(&l.join("fresh"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        xattr(&l.join("bin/ping"), "user.note").as_deref(),
        Some(&b"x"[..])
    );
    assert_eq!(xattr(&l.join("bin/ping"), "trusted.evil"), None);
    assert_eq!(
        std::fs::metadata(l.join("ro"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o555
    );
    assert!(l.join("ro/inside").exists());
    assert_eq!((report.whiteouts, report.opaque_dirs), (1, 1));
    assert_eq!(
        report.diff_id,
        Some(container_image::Digest::of(&tar)),
        "diff ID over the uncompressed tar"
    );
    p.outside_untouched();
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings and buffer.
    let rc = unsafe { libc_lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (rc >= 0).then(|| buf[..rc as usize].to_vec())
}

extern "C" {
    #[link_name = "lgetxattr"]
    fn libc_lgetxattr(
        path: *const i8,
        name: *const i8,
        value: *mut std::ffi::c_void,
        size: usize,
    ) -> isize;
}

#[test]
fn every_compression_gives_the_same_layer() {
    let tar = Layer::new().file("a/b", b"hello").tar();
    for (what, blob) in [
        ("plain", tar.clone()),
        ("gzip", gzip(&tar)),
        ("zstd", zstd(&tar)),
    ] {
        let p = Place::new();
        let r = p
            .unpack(&blob, Limits::default())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            std::fs::read_to_string(p.layer().join("a/b")).unwrap(),
            "hello",
            "{what}"
        );
        assert_eq!(r.diff_id, Some(container_image::Digest::of(&tar)), "{what}");
    }
}

#[test]
fn hostile_layers_are_refused_and_nothing_outside_changes() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "traversal",
            Layer::new().file("../outside/pwned", b"x").tar(),
            "outside the layer",
        ),
        (
            "deep traversal",
            Layer::new().file("a/../../outside/pwned", b"x").tar(),
            "outside the layer",
        ),
        (
            "symlink then write through it (absolute)",
            Layer::new()
                .symlink("evil", "/outside")
                .file("evil/pwned", b"x")
                .tar(),
            "symlink on the way",
        ),
        (
            "symlink then write through it (relative)",
            Layer::new()
                .symlink("evil", "../outside")
                .file("evil/pwned", b"x")
                .tar(),
            "symlink on the way",
        ),
        (
            "symlink to the host's /etc, then a directory through it",
            Layer::new()
                .symlink("etc", "/etc")
                .dir("etc/cron.d/", 0o755)
                .tar(),
            "symlink on the way",
        ),
        (
            "hard link out",
            Layer::new().hardlink("h", "../outside/keep").tar(),
            "outside the layer",
        ),
        (
            "hard link through a symlink",
            Layer::new()
                .symlink("s", "../outside")
                .hardlink("h", "s/keep")
                .tar(),
            "symlink on the way",
        ),
        (
            "hard link to a host path",
            Layer::new().hardlink("h", "/etc/passwd").tar(),
            "hard link target",
        ),
        (
            "whiteout outside",
            Layer::new().file("../.wh.keep", b"").tar(),
            "outside the layer",
        ),
        (
            "whiteout through a symlink",
            Layer::new()
                .symlink("s", "../outside")
                .file("s/.wh.keep", b"")
                .tar(),
            "symlink on the way",
        ),
        (
            "opaque marker through a symlink",
            Layer::new()
                .symlink("s", "/outside")
                .file("s/.wh..wh..opq", b"")
                .tar(),
            "symlink on the way",
        ),
        (
            "not a tar",
            b"this is not a tar archive at all, just some bytes".repeat(20),
            "tar",
        ),
    ];
    for (what, tar, want) in cases {
        let p = Place::new();
        let err = p
            .unpack(&gzip(&tar), Limits::default())
            .err()
            .unwrap_or_else(|| panic!("{what}: unpacked"));
        assert!(err.contains(want), "{what}: {err}");
        p.outside_untouched();
    }
}

#[test]
fn a_decompression_bomb_stops_at_the_ratio_and_a_big_layer_at_its_size() {
    let zeros = vec![0u8; 24 << 20];
    let bomb = gzip(&Layer::new().file("zeros", &zeros).tar());
    assert!(bomb.len() < 1 << 20, "a bomb: {} bytes", bomb.len());
    let p = Place::new();
    let err = p.unpack(&bomb, Limits::default()).unwrap_err();
    assert!(err.contains("decompresses more than 250 times"), "{err}");
    let written: u64 = std::fs::metadata(p.layer().join("zeros"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(written < 16 << 20, "stopped early: {written} bytes written");
    p.outside_untouched();

    let p = Place::new();
    let limits = Limits {
        layer_bytes: 1 << 20,
        ..Limits::default()
    };
    let big = Layer::new().file("big", &vec![7u8; 2 << 20]).tar();
    let err = p.unpack(&big, limits).unwrap_err();
    assert!(
        err.contains("larger than the limit of 1048576 bytes"),
        "{err}"
    );
    p.outside_untouched();
}

/// The child, caught while it waits for its input: confined as `child.rs` says.
#[test]
fn the_unpacker_holds_only_what_writing_a_layer_needs() {
    let p = Place::new();
    let mut child = std::process::Command::new(unpacker())
        .arg("--dir")
        .arg(p.layer())
        .arg("--limits")
        .arg(serde_json::to_string(&Limits::default()).unwrap())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        if s.lines().any(|l| l.starts_with("NoNewPrivs:\t1")) {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "child never confined itself"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .map(|l| u64::from_str_radix(l[k.len()..].trim(), 16).unwrap())
            .unwrap()
    };
    let kept = container_image::unpack::child::kept_mask();
    assert_eq!(field("CapEff:"), kept);
    assert_eq!(field("CapPrm:"), kept);
    assert_eq!(field("CapBnd:"), kept);
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/root")).unwrap(),
        p.layer()
    );
    for ns in ["net", "mnt", "ipc", "uts"] {
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let its = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_ne!(ours, its, "{ns} namespace of its own");
    }
    drop(child.stdin.take());
    let _ = child.wait();
}
