//! A CNI conflist as `network create --plugin cni --opt conflist=FILE` reads it.
//! `Conflist::load` takes a path, so each input is written to one scratch file.
//!
//! Properties: nothing panics; a list that loads names a plain binary for each plugin
//! (never a path that could leave CNI_PATH).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use container_network_helper::plugins::cni::Conflist;
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("container-fuzz-{}.conflist", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("write scratch conflist");
    if let Ok(list) = Conflist::load(path) {
        assert!(!list.name.is_empty() && !list.cni_version.is_empty());
        assert!(!list.plugins.is_empty());
        for conf in &list.plugins {
            let t = conf
                .get("type")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            assert!(
                !t.is_empty() && !t.contains('/') && t != "." && t != "..",
                "{t:?}"
            );
        }
        let _ = list.supports_check();
    }
});
