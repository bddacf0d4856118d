//! Lookups in a temporary directory, next to a "host" directory that links point at.

use std::os::unix::fs::symlink;

use super::*;
use container_protocol::ErrorKind;

struct Fixture {
    _tmp: tempfile::TempDir,
    root_path: PathBuf,
    host: PathBuf,
    root: Root,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root_path = tmp.path().join("root");
    let host = tmp.path().join("host");
    std::fs::create_dir_all(&root_path).unwrap();
    std::fs::create_dir_all(&host).unwrap();
    let root = Root::open(&root_path).unwrap();
    Fixture {
        _tmp: tmp,
        root_path,
        host,
        root,
    }
}

impl Fixture {
    fn host_is_empty(&self) -> bool {
        std::fs::read_dir(&self.host).unwrap().next().is_none()
    }
    /// Where an absolute link to `p` lands inside the root.
    fn inside(&self, p: &Path) -> PathBuf {
        self.root_path.join(p.strip_prefix("/").unwrap())
    }
}

#[test]
fn mkdir_all_creates_parents_and_finds_existing_ones() {
    let f = fixture();
    f.root.mkdir_all(Path::new("/a/b/c"), 0o755).unwrap();
    assert!(f.root_path.join("a/b/c").is_dir());
    f.root.mkdir_all(Path::new("a/b"), 0o755).unwrap();
    f.root.mkdir_all(Path::new("/"), 0o755).unwrap();
    assert_eq!(
        f.root.kind(Path::new("a/b")).unwrap(),
        Some(FileKind::Directory)
    );
    assert_eq!(f.root.kind(Path::new("a/x")).unwrap(), None);
    assert_eq!(f.root.kind(Path::new("nope/x")).unwrap(), None);
}

#[test]
fn an_absolute_link_to_a_host_directory_leads_inside_the_root() {
    let f = fixture();
    symlink(&f.host, f.root_path.join("etc")).unwrap();
    f.root.create_file(Path::new("/etc/hosts"), 0o644).unwrap();
    f.root.mkdir_all(Path::new("/etc/sub"), 0o755).unwrap();
    assert!(f.host_is_empty());
    assert!(f.inside(&f.host).join("hosts").is_file());
    assert!(f.inside(&f.host).join("sub").is_dir());
    assert_eq!(
        f.root.kind(Path::new("etc")).unwrap(),
        Some(FileKind::Symlink)
    );
}

#[test]
fn a_dangling_link_is_created_where_it_leads_inside_the_root() {
    let f = fixture();
    std::fs::create_dir(f.root_path.join("etc")).unwrap();
    let target = f.host.join("missing/hostname");
    symlink(&target, f.root_path.join("etc/hostname")).unwrap();
    f.root
        .create_file(Path::new("etc/hostname"), 0o644)
        .unwrap();
    assert!(f.host_is_empty());
    assert!(f.inside(&target).is_file());
    // A relative link to a missing directory: created relative to the link.
    symlink("../var/lib/x", f.root_path.join("etc/d")).unwrap();
    f.root.mkdir_all(Path::new("etc/d/e"), 0o755).unwrap();
    assert!(f.root_path.join("var/lib/x/e").is_dir());
}

#[test]
fn dot_dot_stops_at_the_root() {
    let f = fixture();
    std::fs::create_dir(f.root_path.join("etc")).unwrap();
    let up = "../".repeat(f.root_path.components().count() + 3);
    let escape = format!("{up}{}", f.host.strip_prefix("/").unwrap().display());
    symlink(format!("{escape}/hosts"), f.root_path.join("etc/hosts")).unwrap();
    f.root.create_file(Path::new("etc/hosts"), 0o644).unwrap();
    f.root
        .mkdir_all(Path::new(&format!("{escape}/made")), 0o755)
        .unwrap();
    assert!(f.host_is_empty());
    assert!(f.inside(&f.host).join("hosts").is_file());
    assert!(f.inside(&f.host).join("made").is_dir());
    // Opening follows the same rules.
    let fd = f
        .root
        .open_at(Path::new("etc/hosts"), OFlag::O_RDONLY)
        .unwrap();
    let st = fstat(&fd).unwrap();
    let inside = std::fs::metadata(f.inside(&f.host).join("hosts")).unwrap();
    assert_eq!(st.st_ino, std::os::unix::fs::MetadataExt::ino(&inside));
}

#[test]
fn loops_and_wrong_kinds_are_refused() {
    let f = fixture();
    symlink("/a", f.root_path.join("a")).unwrap();
    let err = f.root.mkdir_all(Path::new("a/b"), 0o755).unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    let err = f.root.create_file(Path::new("a"), 0o644).unwrap_err();
    assert!(err.to_string().contains("symlinks"), "{err}");

    std::fs::write(f.root_path.join("file"), "").unwrap();
    let err = f.root.mkdir_all(Path::new("/file/sub"), 0o755).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: /file: not a directory", f.root_path.display())
    );
    std::fs::create_dir(f.root_path.join("dir")).unwrap();
    let err = f.root.create_file(Path::new("dir"), 0o644).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: /dir: is a directory", f.root_path.display())
    );
    let err = f.root.create_file(Path::new("/"), 0o644).unwrap_err();
    assert!(err.to_string().ends_with("not a file name"), "{err}");
    assert!(f.host_is_empty());
}

#[test]
fn magic_links_are_refused() {
    // The host's own root, whose /proc has magic links that jump anywhere.
    let root = Root::open(Path::new("/")).unwrap();
    let err = root
        .open_at(Path::new("/proc/self/root/etc"), OFlag::O_PATH)
        .unwrap_err();
    assert!(err.to_string().contains("a link into /proc"), "{err}");
}

#[test]
fn read_refuses_more_than_the_limit_and_what_is_not_a_file() {
    let f = fixture();
    std::fs::write(f.root_path.join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    let data = f.root.read(Path::new("/passwd"), 1024).unwrap();
    assert!(data.starts_with(b"root:"));
    let err = f.root.read(Path::new("/passwd"), 4).unwrap_err();
    assert!(err.to_string().contains("larger than 4 bytes"), "{err}");
    let err = f.root.read(Path::new("/"), 1024).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let err = f.root.read(Path::new("/nope"), 1024).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[test]
fn reopen_opens_what_a_path_descriptor_names() {
    let f = fixture();
    std::fs::write(f.root_path.join("x"), "data").unwrap();
    let fd = f.root.open_at(Path::new("x"), OFlag::O_PATH).unwrap();
    let real = reopen(fd.as_fd(), OFlag::O_RDONLY).unwrap();
    assert_eq!(std::fs::read_to_string(raw_path(&real)).unwrap(), "data");
}

fn raw_path(fd: &OwnedFd) -> PathBuf {
    let mut buf = [0u8; 32];
    PathBuf::from(raw::fd_path(fd.as_raw_fd(), &mut buf).to_str().unwrap())
}

#[test]
fn strict_lookups_refuse_any_link_on_the_way() {
    let f = fixture();
    std::fs::create_dir_all(f.root_path.join("real/dir")).unwrap();
    symlink("real", f.root_path.join("rel")).unwrap();
    symlink(&f.host, f.root_path.join("abs")).unwrap();
    assert!(f
        .root
        .open_strict(Path::new("real/dir"), OFlag::O_PATH)
        .is_ok());
    assert!(f
        .root
        .open_strict(Path::new("/real/../real/dir"), OFlag::O_PATH)
        .is_ok());
    for through in ["rel/dir", "abs", "abs/x", "real/../rel"] {
        let err = f
            .root
            .open_strict(Path::new(through), OFlag::O_PATH)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{through}: {err}");
        assert!(
            err.to_string().contains("symlink on the way"),
            "{through}: {err}"
        );
    }
    let err = f
        .root
        .open_strict(Path::new("missing"), OFlag::O_PATH)
        .unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENOENT));
    assert!(f.host_is_empty());
}
