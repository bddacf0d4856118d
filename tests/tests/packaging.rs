//! The systemd unit the apiserver ships with.

use std::process::Command;

use container_tests::bin;

#[test]
fn systemd_unit_verifies_and_keeps_helpers_alive_across_restarts() {
    let unit_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/systemd/container-apiserver.service"
    );
    let unit = std::fs::read_to_string(unit_path).expect("unit file");
    let keys: Vec<(&str, &str)> = unit
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    assert!(
        keys.contains(&("Type", "notify")),
        "the apiserver reports readiness with sd_notify"
    );
    assert!(
        keys.contains(&("KillMode", "process")),
        "helpers must survive an apiserver restart"
    );

    // systemd-analyze checks that ExecStart exists: point it at the binary just built.
    let dir = tempfile_dir();
    let path = dir.join("container-apiserver.service");
    let rewritten = unit.replace(
        "/usr/local/bin/container-apiserver",
        bin("container-apiserver").to_str().expect("utf-8 path"),
    );
    std::fs::write(&path, rewritten).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd) must be installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on unknown keys and bad values; only its silence means a clean unit.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("container-apiserver.service"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("container-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
