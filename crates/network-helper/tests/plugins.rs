//! Option validation, the `none` plugin, and the binary's start-up.

mod common;

use common::*;
use container_network_helper::{validate, Plugin};
use container_protocol::network::{NetworkRequest, PluginData, PluginKind};

fn err_of(cfg: &container_store::NetworkConfig) -> String {
    validate(cfg).expect_err("should be refused").to_string()
}

#[test]
fn bad_options_are_refused_clearly() {
    assert_eq!(PluginKind::known(), "bridge, macvlan, none, cni");
    let s = Some("10.1.0.0/24");
    assert_eq!(
        err_of(&config("n", "bridge", s, &[("color", "red")])),
        "plugin bridge: unknown option \"color\" (known: bridge, mtu)"
    );
    assert_eq!(
        err_of(&config("n", "bridge", s, &[("mtu", "9x")])),
        "plugin bridge: invalid value \"9x\" for option mtu: must be a number from 68 to 65535"
    );
    assert!(err_of(&config("n", "bridge", s, &[("mtu", "70000")])).contains("\"70000\""));
    assert!(err_of(&config(
        "n",
        "bridge",
        s,
        &[("bridge", "waytoolongbridge0")]
    ))
    .contains("\"waytoolongbridge0\""));
    assert_eq!(
        err_of(&config("n", "macvlan", s, &[])),
        "plugin macvlan: option parent is required"
    );
    assert_eq!(
        err_of(&config("n", "macvlan", s, &[("parent", "eth0"), ("mode", "fast")])),
        "plugin macvlan: invalid value \"fast\" for option mode: must be one of bridge, private, vepa, passthru"
    );
    assert_eq!(
        err_of(&config("n", "none", None, &[("mtu", "1500")])),
        "plugin none: unknown option \"mtu\" (known: none)"
    );
    assert_eq!(
        err_of(&config("n", "cni", None, &[])),
        "plugin cni: option conflist is required"
    );
    assert_eq!(
        err_of(&config(
            "n",
            "cni",
            None,
            &[("conflist", "/nonexistent/x.conflist")]
        )),
        "plugin cni: invalid value \"/nonexistent/x.conflist\" for option conflist: no such file"
    );
    assert_eq!(
        "vxlan".parse::<PluginKind>().unwrap_err().to_string(),
        "unknown network plugin \"vxlan\" (known: bridge, macvlan, none, cni)"
    );
    let mut gw = config("n", "bridge", s, &[]);
    gw.gateway = Some("10.2.0.1".parse().unwrap());
    assert_eq!(
        err_of(&gw),
        "plugin bridge: gateway 10.2.0.1 is not a host address of subnet 10.1.0.0/24"
    );

    // Valid ones pass; a missing subnet is the apiserver's to fill, not validate's.
    validate(&config(
        "n",
        "bridge",
        None,
        &[("mtu", "9000"), ("bridge", "br0")],
    ))
    .unwrap();
    validate(&config(
        "n",
        "macvlan",
        s,
        &[("parent", "eth0"), ("mode", "vepa")],
    ))
    .unwrap();
    validate(&config("n", "none", None, &[])).unwrap();
    let e = Plugin::for_config(&config("n", "bridge", None, &[]))
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "plugin bridge: a bridge network needs a subnet"
    );
}

#[test]
fn bad_conflists_are_refused() {
    let dir = tempfile_dir();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let cases = [
        ("a.conflist", "not json", "not valid JSON"),
        (
            "b.conflist",
            r#"{"name":"x","plugins":[{"type":"bridge"}]}"#,
            "\"cniVersion\"",
        ),
        (
            "c.conflist",
            r#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}"#,
            "\"name\"",
        ),
        (
            "d.conflist",
            r#"{"cniVersion":"1.0.0","name":"x","plugins":[]}"#,
            "empty",
        ),
        (
            "e.conflist",
            r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"ipam":{}}]}"#,
            "\"type\"",
        ),
        (
            "f.conflist",
            r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"../bin/sh"}]}"#,
            "plain binary name",
        ),
    ];
    for (name, text, want) in cases {
        let path = write(name, text);
        let e = err_of(&config("n", "cni", None, &[("conflist", &path)]));
        assert!(e.contains(&path) && e.contains(want), "{name}: {e}");
    }
    let ok = write(
        "ok.conflist",
        r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"bridge"}]}"#,
    );
    validate(&config("n", "cni", None, &[("conflist", &ok)])).unwrap();
    let e = err_of(&config(
        "n",
        "cni",
        None,
        &[("conflist", &ok), ("cni_path", "relative/dir")],
    ));
    assert!(e.contains("not absolute"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nethelper-conflists-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn none_allocates_loopback_only() {
    let env = Env::new();
    let helper = env.helper(&config("lo1", "none", None, &[]));
    env.call(&helper, NetworkRequest::Setup).unwrap();
    let a = allocate(&env, &helper, attachment("lo1", "c1", "eth0")).unwrap();
    assert_eq!(a.plugin().as_str(), "none");
    assert!(a.addresses.is_empty() && a.routes.is_empty() && a.gateways.is_empty());
    assert_eq!(a.data, PluginData::None);
    let mut att = attachment("lo1", "c2", "eth0");
    att.ipv4 = Some("10.0.0.5".parse().unwrap());
    let err = allocate(&env, &helper, att).unwrap_err();
    assert!(
        err.starts_with("network lo1: allocate: plugin none: static address 10.0.0.5"),
        "{err}"
    );
    env.call(&helper, NetworkRequest::Gc { live: vec![] })
        .unwrap();
    env.call(
        &helper,
        NetworkRequest::Release {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            netns: None,
        },
    )
    .unwrap();
    env.call(&helper, NetworkRequest::Teardown).unwrap();
    assert!(
        !env.paths().ipam_network("lo1").unwrap().exists(),
        "none never uses IPAM"
    );
}

#[test]
fn the_binary_refuses_to_start_without_its_config() {
    let env = Env::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_container-network-helper"))
        .args(["--root"])
        .arg(env.iso.root())
        .arg("--run-dir")
        .arg(env.iso.run_dir())
        .args(["--id", "ghost"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("network ghost: load config:"), "{stderr}");

    // And with a config whose options are bad, it says which.
    let paths = env.paths();
    container_store::network::save_network(
        &paths,
        &config("bad", "bridge", Some("10.1.0.0/24"), &[("mtu", "1")]),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_container-network-helper"))
        .args(["--root"])
        .arg(env.iso.root())
        .arg("--run-dir")
        .arg(env.iso.run_dir())
        .args(["--id", "bad"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("network bad: plugin bridge: invalid value \"1\" for option mtu"),
        "{stderr}"
    );
}
