//! Completion scripts and man pages, generated from the CLI's own flags: the bash
//! script loads in bash, completes commands statically and container, network and
//! image names by asking the apiserver.

use std::process::Command;

use container_tests::{bin, bin_dir, busybox_rootfs, World};

/// What bash offers for `words` (the last one being completed), with the script loaded.
fn complete(w: &World, script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|s| format!("'{s}'")).collect();
    let program = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; _container_names container '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words.get(words.len().wrapping_sub(2)).copied().unwrap_or(""),
    );
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .env("PATH", path)
        .env("CONTAINER_RUN_DIR", w.run_dir())
        .env("CONTAINER_ROOT", w.root())
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn the_bash_script_loads_and_completes_commands_flags_and_names() {
    let mut w = World::new();
    w.start_apiserver();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    let script = w.iso.dir().join("container.bash");
    let out = Command::new(bin("container"))
        .args(["completion", "bash"])
        .output()
        .expect("completion");
    assert!(out.status.success());
    std::fs::write(&script, &out.stdout).expect("write");

    let a = w.ok(&[
        "create",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "--",
        "true",
    ]);
    let b = w.ok(&[
        "create",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "--",
        "true",
    ]);
    let mut ids = vec![a.trim().to_string(), b.trim().to_string()];
    ids.sort();
    w.ok(&["network", "create", "--subnet", "10.77.0.0/24", "blue"]);

    assert_eq!(complete(&w, &script, &["container", "stop", ""]), ids);
    assert_eq!(
        complete(&w, &script, &["container", "rm", &ids[0][..3]]).len(),
        { ids.iter().filter(|i| i.starts_with(&ids[0][..3])).count() }
    );
    assert_eq!(
        complete(&w, &script, &["container", "network", "rm", ""]),
        ["blue", "default"]
    );
    // `network connect|disconnect NET CONTAINER`: a network, then a container.
    assert_eq!(
        complete(&w, &script, &["container", "network", "connect", ""]),
        ["blue", "default"]
    );
    assert_eq!(
        complete(
            &w,
            &script,
            &[
                "container",
                "network",
                "connect",
                "--alias",
                "x",
                "blue",
                ""
            ]
        ),
        ids
    );
    assert_eq!(
        complete(
            &w,
            &script,
            &["container", "network", "disconnect", "-f", "blue", ""]
        ),
        ids
    );
    assert!(
        complete(&w, &script, &["container", "network", "con"]).contains(&"connect".to_string())
    );
    // Commands and flags: clap's static completion.
    assert!(complete(&w, &script, &["container", "ru"]).contains(&"run".to_string()));
    assert!(
        complete(&w, &script, &["container", "run", "--rest"]).contains(&"--restart".to_string())
    );
    // No apiserver: no names, and no error in the user's command line.
    w.ok(&["system", "stop"]);
    w.kill_apiserver();
    assert!(complete(&w, &script, &["container", "stop", ""]).is_empty());
}

#[test]
fn man_pages_for_every_command_and_scripts_for_every_shell() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bin("container"))
        .arg("__man")
        .arg(dir.path())
        .output()
        .expect("man");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "container",
        "container-run",
        "container-network-create",
        "container-network-connect",
        "container-network-disconnect",
        "container-image-pull",
        "container-events",
    ] {
        let text = std::fs::read_to_string(dir.path().join(format!("{page}.1"))).expect(page);
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: {text}"
        );
    }
    let run = std::fs::read_to_string(dir.path().join("container-run.1")).expect("run");
    assert!(run.contains("restart"), "the page documents the flags");
    assert!(
        !dir.path().join("container-__complete.1").exists(),
        "hidden commands have no page"
    );
    for shell in ["zsh", "fish"] {
        let out = Command::new(bin("container"))
            .args(["completion", shell])
            .output()
            .expect("completion");
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    let out = Command::new(bin("container"))
        .args(["completion", "tcsh"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}
