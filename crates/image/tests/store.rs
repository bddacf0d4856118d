//! The store: blobs verified as written, images recorded after their layers, shared
//! layers unpacked once, references resolved as Docker resolves them, GC and check.

mod common;

use std::sync::Arc;

use common::{gzip, unpacker, Layer};
use container_image::import;
use container_image::progress::Silent;
use container_image::store::gc::InUse;
use container_image::store::UnpackConfig;
use container_image::{Digest, Reference, Store};

fn store(dir: &std::path::Path) -> Arc<Store> {
    Store::open(
        &dir.join("images"),
        UnpackConfig {
            program: Some(unpacker()),
            limits: Default::default(),
        },
    )
    .unwrap()
}

/// An image of `layers` (tar bytes, gzipped here) put into the store as a registry
/// or an archive would: blobs first. Returns its plan.
fn image(store: &Store, layers: &[Vec<u8>], cmd: &str) -> import::Plan {
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layers {
        let blob = gzip(tar);
        let d = store.put_blob("layer", &blob, None).unwrap();
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.to_string(), "size": blob.len()}));
        diff_ids.push(Digest::of(tar).to_string());
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": [cmd]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let cbytes = serde_json::to_vec(&config).unwrap();
    let c = store.put_blob("config", &cbytes, None).unwrap();
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c.to_string(), "size": cbytes.len()},
        "layers": descs,
    });
    let mbytes = serde_json::to_vec(&m).unwrap();
    let md = store.put_blob("manifest", &mbytes, None).unwrap();
    let parsed: oci_spec::image::ImageManifest = serde_json::from_slice(&mbytes).unwrap();
    import::plan(
        store,
        &md,
        "application/vnd.oci.image.manifest.v1+json",
        &parsed,
    )
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn tmp_is_empty(store: &Store) -> bool {
    std::fs::read_dir(store.dir().join("tmp"))
        .unwrap()
        .next()
        .is_none()
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let want = Digest::of(b"the real thing");
    let mut w = s.blob_writer("layer x", Some(14)).unwrap();
    w.write(b"something else").unwrap();
    let err = w.commit(&s, Some(&want)).unwrap_err().to_string();
    assert!(
        err.contains("digest mismatch") && err.contains(&want.to_string()),
        "{err}"
    );
    assert!(!s.has_blob(&want));
    assert!(s.list_blobs().is_empty() && tmp_is_empty(&s));
    let mut w = s.blob_writer("layer x", Some(4)).unwrap();
    let err = w.write(b"too long").unwrap_err().to_string();
    assert!(err.contains("more than the 4 bytes declared"), "{err}");
    drop(w);
    assert!(tmp_is_empty(&s), "a dropped writer leaves nothing");
}

#[test]
fn images_share_layers_unpacked_once_and_resolve_as_docker_does() {
    let _iso = container_testkit::isolate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let base = Layer::new().file("bin/tool", b"base").tar();
    let a_top = Layer::new().file("etc/a", b"a").tar();
    let b_top = Layer::new().file("etc/b", b"b").tar();
    let pa = image(&s, &[base.clone(), a_top], "a");
    let pb = image(&s, &[base, b_top], "b");
    assert_eq!(
        pa.layers[0].chain_id, pb.layers[0].chain_id,
        "same base, same chain ID"
    );
    let alpine = Reference::parse("localhost:5000/a:1").unwrap();
    let other = Reference::parse("b").unwrap();
    let (ra, rb) = rt().block_on(async {
        tokio::join!(
            import::finish(&s, &pa, std::slice::from_ref(&alpine), None, &Silent),
            import::finish(&s, &pb, std::slice::from_ref(&other), None, &Silent),
        )
    });
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(s.list_layers().len(), 3, "the shared base once");
    assert!(tmp_is_empty(&s));
    assert_eq!(s.resolve("localhost:5000/a:1").unwrap().id, ra.id);
    assert_eq!(s.resolve("b").unwrap().id, rb.id);
    assert_eq!(s.resolve("docker.io/library/b:latest").unwrap().id, rb.id);
    assert_eq!(s.resolve(&rb.id.to_string()).unwrap().id, rb.id);
    assert_eq!(s.resolve(&rb.id.hex()[..12]).unwrap().id, rb.id);
    assert!(s.resolve("b:other").is_err());
    let err = s.resolve("nosuch").unwrap_err();
    assert_eq!(err.kind(), container_protocol::ErrorKind::NotFound);
    // Tag, untag by name, refuse while in use.
    s.tag("b", "b:v2").unwrap();
    let out = s.remove("b:v2", false, &|_| vec![]).unwrap();
    assert_eq!(out, vec!["Untagged: docker.io/library/b:v2".to_string()]);
    let busy = s
        .remove("b", false, &|_| vec!["c1".to_string()])
        .unwrap_err();
    assert!(
        busy.to_string().contains("in use by container c1"),
        "{busy}"
    );
    let out = s.remove("b", true, &|_| vec!["c1".to_string()]).unwrap();
    assert!(out.last().unwrap().starts_with("Deleted: "), "{out:?}");
    // b's own layer stays while a container holds it; the rest of b goes.
    let held = InUse {
        layers: rb.chain_ids().into_iter().collect(),
        ..InUse::default()
    };
    let pruned = rt().block_on(s.prune(false, &held)).unwrap();
    assert_eq!(pruned.layers, 0);
    assert_eq!(
        pruned.blobs, 3,
        "b's manifest, config and top layer: {pruned:?}"
    );
    assert!(s.layer(&rb.layers[1].chain_id).is_some());
    let pruned = rt().block_on(s.prune(false, &InUse::default())).unwrap();
    assert_eq!(pruned.layers, 1, "b's top layer, no longer held");
    assert!(
        s.layer(&ra.layers[0].chain_id).is_some(),
        "a still has the base"
    );
    let pruned = rt().block_on(s.prune(true, &InUse::default())).unwrap();
    assert_eq!(pruned.images, vec![ra.id.to_string()]);
    assert!(s.list_layers().is_empty() && s.list_blobs().is_empty());
}

#[test]
fn check_finds_what_a_crash_or_a_hand_left_and_fix_repairs_it() {
    let _iso = container_testkit::isolate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let p = image(&s, &[Layer::new().file("x", b"x").tar()], "x");
    let r = rt()
        .block_on(import::finish(
            &s,
            &p,
            &[Reference::parse("x").unwrap()],
            None,
            &Silent,
        ))
        .unwrap();
    assert!(rt()
        .block_on(s.check(false, true, &InUse::default()))
        .unwrap()
        .is_empty());
    // An unpack cut short, a layer half there, a blob changed behind our back.
    std::fs::create_dir_all(s.dir().join("tmp/layer-dead/diff")).unwrap();
    std::fs::create_dir_all(s.dir().join("layers").join("f".repeat(64)).join("diff")).unwrap();
    std::fs::write(s.blob_path(&r.id), b"tampered").unwrap();
    let found = rt()
        .block_on(s.check(false, true, &InUse::default()))
        .unwrap();
    let kinds: Vec<&str> = found.iter().map(|f| f.kind.as_str()).collect();
    assert!(
        kinds.contains(&"image") && kinds.contains(&"layer") && kinds.contains(&"blob"),
        "{found:?}"
    );
    let fixed = rt()
        .block_on(s.check(true, true, &InUse::default()))
        .unwrap();
    assert!(fixed.iter().all(|f| f.fixed), "{fixed:?}");
    assert!(rt()
        .block_on(s.check(false, true, &InUse::default()))
        .unwrap()
        .is_empty());
    assert!(
        s.resolve("x").is_err(),
        "the broken image is gone, its tag with it"
    );
    // Reopening empties tmp/ (a crash's leftovers).
    std::fs::create_dir_all(s.dir().join("tmp/blob-dead")).unwrap();
    drop(s);
    let s = store(dir.path());
    assert!(tmp_is_empty(&s));
}
