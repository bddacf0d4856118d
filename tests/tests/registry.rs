//! `image pull` against a real registry (Debian's docker-registry) on 127.0.0.1 in the
//! test's network namespace, fed by skopeo: plain and with htpasswd auth, a multi-arch
//! index, shared layers fetched once, and a pull killed half way.

use container_tests::oci::{busybox_image, layout, Image, LayerBuilder};
use container_tests::registry::Registry;
use container_tests::{setup, Setup};

fn pushed(s: &Setup, reg: &Registry, name: &str, images: Vec<Image>) -> std::path::PathBuf {
    let dir = layout(
        &s.world
            .iso
            .dir()
            .join(format!("layout-{}", name.replace(['/', ':'], "-"))),
        "t",
        &images,
    );
    reg.push(&format!("oci:{}:t", dir.display()), name, images.len() > 1);
    dir
}

#[test]
fn pull_from_a_registry_then_run_and_pull_again_from_the_store() {
    let s = setup();
    let w = &s.world;
    let reg = Registry::start(&w.iso.dir().join("registry"), 5000, None);
    pushed(
        &s,
        &reg,
        "bb:1",
        vec![busybox_image(&w.iso.dir().join("img"))],
    );
    let image = format!("{}/bb:1", reg.addr);
    let out = w.ok(&["image", "pull", &image]);
    assert!(
        out.contains("downloading") || out.contains("unpacking"),
        "plain progress lines: {out}"
    );
    assert!(out.contains("Digest: sha256:"), "{out}");
    assert_eq!(
        w.ok(&["run", "--rm", "--network", "none", &image]),
        "image-cmd\nnew\n"
    );
    // Again: every layer is here.
    let out = w.ok(&["image", "pull", &image]);
    assert!(out.contains("already here"), "{out}");
    // -q: the manifest digest, which pulls by digest too.
    let digest = w.ok(&["image", "pull", "-q", &image]).trim().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    w.ok(&["image", "pull", "-q", &format!("{}/bb@{digest}", reg.addr)]);
    let listed = w.ok(&["image", "ls"]);
    assert!(
        listed.contains(&format!("{}/bb", reg.addr)) && listed.contains(" 1 "),
        "{listed}"
    );
    let missing = w.fails(&["image", "pull", &format!("{}/nosuch:1", reg.addr)]);
    assert!(
        missing.contains("not found") || missing.contains("unknown"),
        "{missing}"
    );
    w.ok(&["system", "check", "--digests"]);
}

#[test]
fn run_pulls_a_missing_image_and_pull_never_refuses() {
    let s = setup();
    let w = &s.world;
    let reg = Registry::start(&w.iso.dir().join("registry"), 5001, None);
    pushed(
        &s,
        &reg,
        "bb:1",
        vec![busybox_image(&w.iso.dir().join("img"))],
    );
    let image = format!("{}/bb:1", reg.addr);
    let err = w.fails(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "none",
        &image,
    ]);
    assert!(err.contains("not found"), "{err}");
    let out = w.cli(&["run", "--rm", "--network", "none", &image, "echo ran"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unable to find image"));
}

#[test]
fn a_multi_arch_index_gives_this_hosts_image_or_the_one_asked_for() {
    let s = setup();
    let w = &s.world;
    let reg = Registry::start(&w.iso.dir().join("registry"), 5002, None);
    let amd = busybox_image(&w.iso.dir().join("img"));
    let mut arm = Image::new(
        vec![LayerBuilder::default()
            .file("arch", b"arm64\n", 0o644)
            .tar()],
        serde_json::json!({"Cmd": ["/arch"]}),
    );
    arm.architecture = "arm64".into();
    pushed(&s, &reg, "multi:1", vec![amd, arm]);
    let image = format!("{}/multi:1", reg.addr);
    w.ok(&["image", "pull", "-q", &image]);
    let v = w.json(&["image", "inspect", &image]);
    assert_eq!(v[0]["platform"]["architecture"], container_image_arch());
    w.ok(&["image", "pull", "-q", "--platform", "linux/arm64", &image]);
    let v = w.json(&["image", "inspect", &image]);
    assert_eq!(v[0]["platform"]["architecture"], "arm64", "{v}");
    let err = w.fails(&["image", "pull", "--platform", "linux/s390x", &image]);
    assert!(err.contains("no image for platform linux/s390x"), "{err}");
}

fn container_image_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => Box::leak(other.to_string().into_boxed_str()),
    }
}

#[test]
fn a_registry_with_htpasswd_wants_a_login() {
    let s = setup();
    let w = &s.world;
    let reg = Registry::start(
        &w.iso.dir().join("registry"),
        5003,
        Some(("tester", "s3cret")),
    );
    pushed(
        &s,
        &reg,
        "private:1",
        vec![busybox_image(&w.iso.dir().join("img"))],
    );
    let image = format!("{}/private:1", reg.addr);
    let docker_config = w.iso.dir().join("docker");
    let cli = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut c = w
            .cli_command(args)
            .env("DOCKER_CONFIG", &docker_config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    let out = cli(&["image", "pull", &image], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("registry login"), "{err}");
    let out = cli(
        &[
            "registry",
            "login",
            "-u",
            "tester",
            "--password-stdin",
            &reg.addr,
        ],
        "wrong\n",
    );
    assert!(!out.status.success(), "a wrong password is refused");
    assert!(!docker_config.join("config.json").exists());
    let out = cli(
        &[
            "registry",
            "login",
            "-u",
            "tester",
            "--password-stdin",
            &reg.addr,
        ],
        "s3cret\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = std::fs::read_to_string(docker_config.join("config.json")).unwrap();
    assert!(cfg.contains(&reg.addr), "{cfg}");
    let out = cli(&["image", "pull", "-q", &image], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["registry", "logout", &reg.addr], "");
    assert!(out.status.success());
    let out = cli(&["image", "pull", &image], "");
    assert!(!out.status.success(), "logged out again");
}

#[test]
fn concurrent_pulls_of_images_sharing_a_layer_fetch_it_once() {
    let s = setup();
    let w = &s.world;
    let reg = Registry::start(&w.iso.dir().join("registry"), 5004, None);
    let base = LayerBuilder::default()
        .file("big", &pseudo_random(8 << 20, 1), 0o644)
        .tar();
    let a = Image::new(
        vec![
            base.clone(),
            LayerBuilder::default().file("a", b"a", 0o644).tar(),
        ],
        serde_json::json!({"Cmd": ["/a"]}),
    );
    let b = Image::new(
        vec![base, LayerBuilder::default().file("b", b"b", 0o644).tar()],
        serde_json::json!({"Cmd": ["/b"]}),
    );
    let dir = pushed(&s, &reg, "a:1", vec![a]);
    pushed(&s, &reg, "b:1", vec![b]);
    let pulls: Vec<_> = ["a:1", "b:1"]
        .iter()
        .map(|n| {
            w.cli_command(&["image", "pull", "-q", &format!("{}/{n}", reg.addr)])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in pulls {
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let base_blob = base_layer_digest(&dir);
    assert_eq!(
        reg.blob_gets(&base_blob),
        1,
        "the shared layer was fetched once"
    );
    let layers = std::fs::read_dir(w.root().join("images/layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 3, "base once, and each top");
}

/// The first layer's blob digest in the layout's (only) manifest.
fn base_layer_digest(dir: &std::path::Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(m)).unwrap()).unwrap();
    manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Incompressible bytes (xorshift), so a layer is as big on the wire as on disk.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A pull whose apiserver is SIGKILLed while a layer is being unpacked, and one killed
/// at a random moment of the download: `system check` is clean afterwards, and the
/// next pull succeeds.
#[test]
fn a_pull_killed_half_way_leaves_a_consistent_store() {
    let mut s = setup();
    let reg = Registry::start(&s.world.iso.dir().join("registry"), 5005, None);
    let big = Image::new(
        vec![
            LayerBuilder::default()
                .file("one", &pseudo_random(12 << 20, 2), 0o644)
                .tar(),
            LayerBuilder::default()
                .file("two", &pseudo_random(12 << 20, 3), 0o644)
                .tar(),
        ],
        serde_json::json!({"Cmd": ["/one"]}),
    );
    pushed(&s, &reg, "big:1", vec![big]);
    let image = format!("{}/big:1", reg.addr);

    // At a fault point: the first layer unpacked, not yet renamed in.
    s.world.kill_apiserver();
    s.world
        .start_apiserver_with(&[("CONTAINER_FAULT", "apiserver:image-before-layer-commit")]);
    let out = s.world.cli(&["image", "pull", "-q", &image]);
    assert!(!out.status.success(), "the apiserver died mid-pull");
    container_tests::eventually("the apiserver killed at its fault point", || {
        !s.world.apiserver_alive()
    });
    s.world.start_apiserver();
    s.world.ok(&["system", "check", "--digests"]);
    assert!(s
        .world
        .fails(&["image", "inspect", &image])
        .contains("not found"));

    // At a random moment of the download: once a blob is being written.
    let mut pull = s
        .world
        .cli_command(&["image", "pull", "-q", &image])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let tmp = s.world.root().join("images/tmp");
    container_tests::eventually("a download under way", || {
        std::fs::read_dir(&tmp)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    });
    s.world.kill_apiserver();
    let _ = pull.wait();
    s.world.start_apiserver();
    s.world.ok(&["system", "check", "--digests"]);
    let out = s.world.ok(&["image", "pull", "-q", &image]);
    assert!(out.starts_with("sha256:"), "{out}");
    s.world.ok(&["system", "check", "--digests"]);
}
