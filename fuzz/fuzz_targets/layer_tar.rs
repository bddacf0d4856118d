//! A layer's bytes (tar, maybe compressed) unpacked by the same rules as the confined
//! unpacker, in process, into a scratch directory beside a sentinel directory.
//!
//! Properties: nothing panics; whatever the input, nothing appears or changes outside
//! the layer directory.

#![no_main]

use std::sync::OnceLock;

use container_image::unpack::{apply, Limits};
use libfuzzer_sys::fuzz_target;

fn base() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("scratch")).path()
}

fuzz_target!(|data: &[u8]| {
    let base = base();
    let layer = base.join("layer");
    let _ = std::fs::remove_dir_all(&layer);
    std::fs::create_dir_all(&layer).unwrap();
    std::fs::create_dir_all(base.join("outside")).unwrap();
    let root = container_rootfs::Root::open(&layer).unwrap();
    let limits = Limits {
        layer_bytes: 4 << 20,
        image_bytes: 4 << 20,
        ratio: 100,
        entries: 10_000,
    };
    let _ = apply(&root, data, limits);
    let names: Vec<_> = std::fs::read_dir(base).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names.len(), 2, "only layer/ and outside/: {names:?}");
    assert!(std::fs::read_dir(base.join("outside")).unwrap().next().is_none());
});
