//! The stable stand-in for the image fuzz targets (`fuzz/fuzz_targets/image_*`,
//! `layer_tar`): fixed-seed pseudo-random edits of valid manifests, indexes, configs,
//! references and layers, fed to the same parsers and unpack rules. Nothing may panic,
//! and no layer may write outside its directory. The seed is printed; a failure
//! replays with it.

mod common;

use common::{gzip, Layer};
use container_image::manifest::{self, Parsed};
use container_image::unpack::{apply, Limits};
use container_image::Reference;

/// xorshift64*, as `tests/tests/bad_input.rs`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// A few byte-level edits: flips, interesting bytes, inserts, deletes, splices.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + self.below(8) {
            let at = self.below(v.len() + 1);
            match self.below(6) {
                0 if !v.is_empty() => {
                    let i = at.min(v.len() - 1);
                    v[i] ^= 1 << self.below(8);
                }
                1 if !v.is_empty() => {
                    let i = at.min(v.len() - 1);
                    v[i] = [0, 0xff, b'/', b'.', b'"', b':', b'0', b'{'][self.below(8)];
                }
                2 => v.insert(at, self.next() as u8),
                3 if !v.is_empty() => {
                    v.remove(at.min(v.len() - 1));
                }
                4 => {
                    for b in ["../", "/", ".wh.", "sha256:", "\u{0}", "\"manifests\":[]"]
                        [self.below(6)]
                    .bytes()
                    .rev()
                    {
                        v.insert(at, b);
                    }
                }
                _ if v.len() > 2 => v.truncate(self.below(v.len())),
                _ => {}
            }
        }
        v
    }
}

const SEED: u64 = 0x1dea_5eed_2026;

fn json_seeds() -> Vec<Vec<u8>> {
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    vec![
        serde_json::json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": [
            {"mediaType": manifest::OCI_MANIFEST, "digest": d('a'), "size": 5, "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": manifest::OCI_MANIFEST, "digest": d('b'), "size": 5, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]}),
        serde_json::json!({"schemaVersion": 2, "mediaType": manifest::DOCKER_MANIFEST,
            "config": {"mediaType": manifest::DOCKER_CONFIG, "digest": d('c'), "size": 10},
            "layers": [{"mediaType": manifest::DOCKER_LAYER, "digest": d('e'), "size": 3}]}),
        serde_json::json!({"architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "x"], "Env": ["A=1"], "User": "app", "WorkingDir": "/w"},
            "rootfs": {"type": "layers", "diff_ids": [d('f')]}}),
    ]
    .into_iter()
    .map(|v| serde_json::to_vec(&v).unwrap())
    .collect()
}

#[test]
fn manifest_and_config_parsers_survive_pseudo_random_json() {
    println!("seed {SEED:#x}");
    let mut rng = Rng(SEED);
    let seeds = json_seeds();
    for _ in 0..5000 {
        let pick = rng.below(seeds.len());
        let input = rng.mutate(&seeds[pick]);
        if let Ok((Parsed::Index(i), _)) = manifest::parse(&input, None) {
            if let Ok((d, _)) = manifest::choose(&i, &manifest::host_platform()) {
                assert!(i
                    .manifests()
                    .iter()
                    .any(|m| m.digest().to_string() == d.to_string()));
            }
        }
        if let Ok(info) = manifest::parse_config(&input) {
            let _ = container_image::config::RunConfig::from_image_config(&info.config);
        }
    }
}

#[test]
fn reference_parser_survives_pseudo_random_names() {
    let mut rng = Rng(SEED ^ 1);
    let seeds = [
        "alpine",
        "localhost:5000/a/b:c",
        "quay.io/x/y@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "a__b/c-d.e:1.0",
    ];
    for _ in 0..20000 {
        let pick = rng.below(seeds.len());
        let input = rng.mutate(seeds[pick].as_bytes());
        let Ok(text) = std::str::from_utf8(&input) else {
            continue;
        };
        if let Ok(r) = Reference::parse(text) {
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r, "{text:?}");
            assert!(
                r.repository.split('/').all(|c| !c.is_empty() && c != ".."),
                "{text:?}"
            );
        }
    }
}

/// In process (the rules, without the child's confinement, which is tested apart):
/// every mutated layer leaves the directory beside it untouched.
#[test]
fn unpack_rules_survive_pseudo_random_layers() {
    let _iso = container_testkit::isolate().unwrap();
    let mut rng = Rng(SEED ^ 2);
    let tars = [
        Layer::new()
            .dir("a/", 0o755)
            .file("a/b", b"bee")
            .symlink("a/l", "../../x")
            .hardlink("h", "a/b")
            .tar(),
        Layer::new()
            .file("x/.wh.y", b"")
            .file("x/.wh..wh..opq", b"")
            .file("/abs", b"z")
            .tar(),
        Layer::new()
            .symlink("s", "/")
            .file("t", &[7u8; 3000])
            .special("f", tar::EntryType::Fifo)
            .tar(),
    ];
    let base = tempfile::tempdir().unwrap();
    let outside = base.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep"), "k").unwrap();
    let limits = Limits {
        layer_bytes: 1 << 20,
        image_bytes: 1 << 20,
        ratio: 100,
        entries: 1000,
    };
    for i in 0..400 {
        let pick = rng.below(tars.len());
        let raw = rng.mutate(&tars[pick]);
        let input = if i % 3 == 0 { gzip(&raw) } else { raw };
        let layer = base.path().join("layer");
        let _ = std::fs::remove_dir_all(&layer);
        std::fs::create_dir(&layer).unwrap();
        let root = container_rootfs::Root::open(&layer).unwrap();
        let _ = apply(&root, input.as_slice(), limits);
        let mut names: Vec<_> = std::fs::read_dir(base.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        assert_eq!(names, vec!["layer", "outside"], "iteration {i}");
        let inside: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(inside, vec!["keep"], "iteration {i}");
        assert_eq!(std::fs::read_to_string(outside.join("keep")).unwrap(), "k");
    }
}
