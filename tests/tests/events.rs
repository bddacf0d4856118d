//! `container events`: what the apiserver did, as it does it, to every subscriber, in
//! order; the past from `--since`; filters; `--until` ends the stream.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use container_tests::{busybox_rootfs, World};

fn actions(lines: &str) -> Vec<(String, String, String)> {
    lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            (
                v["type"].as_str().unwrap_or_default().to_string(),
                v["action"].as_str().unwrap_or_default().to_string(),
                v["id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_run_rm_is_seen_live_by_two_subscribers_and_after_the_fact_with_since() {
    let mut w = World::new();
    w.start_apiserver();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    let subscribe = |args: &[&str]| {
        let mut cmd = w.cli_command(&[&["events", "--format", "json"], args].concat());
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        cmd.spawn().expect("events")
    };
    let mut all = subscribe(&[]);
    let mut dies = subscribe(&["--filter", "event=die"]);
    // Subscribed once they are connected: an event before that is not theirs to see.
    // `system status` answers only after earlier connections were admitted.
    std::thread::sleep(std::time::Duration::from_millis(300));

    w.ok(&["network", "create", "--subnet", "10.71.0.0/24", "ev"]);
    let id = w.ok(&[
        "run",
        "-d",
        "--network",
        "ev",
        "--rootfs",
        &rootfs,
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    let id = id.trim().to_string();
    w.ok(&["wait", &id]);
    w.ok(&["rm", &id]);
    w.ok(&["network", "rm", "ev"]);

    let read = |child: &mut std::process::Child, n: usize| {
        let out = child.stdout.take().expect("piped");
        let mut lines = String::new();
        let mut reader = BufReader::new(out);
        for _ in 0..n {
            reader.read_line(&mut lines).expect("read an event");
        }
        let _ = child.kill();
        let _ = child.wait();
        lines
    };
    let seen = actions(&read(&mut all, 6));
    let expected = [
        ("network", "create", "ev"),
        ("container", "create", id.as_str()),
        ("container", "start", id.as_str()),
        ("container", "die", id.as_str()),
        ("container", "destroy", id.as_str()),
        ("network", "destroy", "ev"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(
        actions(&read(&mut dies, 1)),
        vec![("container".into(), "die".into(), id.clone())]
    );

    // The past, from the ring, ended by --until.
    let past = w.ok(&[
        "events",
        "--format",
        "json",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        &format!("container={}", &id[..8]),
    ]);
    let past_lines: Vec<_> = past.lines().collect();
    assert_eq!(actions(&past), expected[1..5].to_vec());
    let die: serde_json::Value = serde_json::from_str(past_lines[2]).expect("json");
    assert_eq!(die["attributes"]["exitCode"], "3", "{die}");
    // The human form says the same thing on one line each.
    let human = w.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        "type=network",
    ]);
    let words: Vec<Vec<&str>> = human.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(words.len(), 2, "{human}");
    assert_eq!(
        &words[0][1..],
        ["network", "create", "ev", "(plugin=bridge)"]
    );
    assert!(
        words[0][0].ends_with('Z') && words[0][0].contains('T'),
        "{human}"
    );
}

#[test]
fn bad_event_arguments_are_refused_by_name() {
    let mut w = World::new();
    w.start_apiserver();
    for (args, named) in [
        (&["events", "--since", "yesterday"][..], "\"yesterday\""),
        (&["events", "--until", "2024-02-30"][..], "\"2024-02-30\""),
        (&["events", "--filter", "colour=red"][..], "colour"),
        (&["events", "--filter", "type=volume"][..], "volume"),
        (&["events", "--filter", "event"][..], "KEY=VALUE"),
    ] {
        let out = w.cli(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{args:?}: {err}");
    }
}
