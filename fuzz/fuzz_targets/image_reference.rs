//! An image reference as a user or an archive's annotations give it.
//!
//! Properties: nothing panics; a reference that parses prints to a form that parses
//! back to itself, and names no path that could climb (`..`, empty components).

#![no_main]

use container_image::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Reference::parse(text) {
        let again = Reference::parse(&r.to_string()).expect("a printed reference parses");
        assert_eq!(again, r);
        assert!(r.repository.split('/').all(|c| !c.is_empty() && c != ".." && c != "."));
    }
});
