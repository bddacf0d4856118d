//! A manifest, index or image config as a registry or an archive sends it.
//!
//! Properties: nothing panics; an index's chosen manifest is one the index lists; a
//! config that parses has one diff ID per digest it names, each a valid digest.

#![no_main]

use container_image::manifest::{self, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((parsed, _media)) = manifest::parse(data, None) {
        if let Parsed::Index(index) = parsed {
            if let Ok((d, _)) = manifest::choose(&index, &manifest::host_platform()) {
                assert!(index.manifests().iter().any(|m| m.digest().to_string() == d.to_string()));
            }
        }
    }
    if let Ok(info) = manifest::parse_config(data) {
        for d in &info.diff_ids {
            assert_eq!(d.hex().len(), 64);
        }
    }
});
