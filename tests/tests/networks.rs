//! Networks end to end: the CLI, the apiserver, one helper per network, real bridges,
//! macvlans and nftables rules, all inside the test's private namespace.

use std::process::Command;

use container_tests::{alive, eventually, ip_json, links, World};

fn nft_chains() -> Vec<String> {
    let out = Command::new("nft")
        .args(["-j", "list", "table", "inet", "container"])
        .output()
        .expect("nft");
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    v["nftables"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["chain"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn addresses_of(link: &str) -> Vec<String> {
    ip_json(&["addr", "show", "dev", link])
        .as_array()
        .and_then(|a| a.first().cloned())
        .and_then(|l| l["addr_info"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|a| a["scope"] != "link")
        .filter_map(|a| {
            Some(format!(
                "{}/{}",
                a["local"].as_str()?,
                a["prefixlen"].as_u64()?
            ))
        })
        .collect()
}

fn network<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == name))
        .unwrap_or_else(|| panic!("network {name} not listed: {list}"))
}

fn helper_pid(world: &World, kind: &str, id: &str) -> Option<u64> {
    let status = world.json(&["system", "status", "--format", "json"]);
    status["helpers"]
        .as_array()?
        .iter()
        .find(|h| {
            h["kind"].as_str().map(str::to_lowercase).as_deref() == Some(kind) && h["id"] == id
        })
        .and_then(|h| h["pid"].as_u64())
}

#[test]
fn default_network_exists_from_first_start_and_cannot_be_removed() {
    let mut world = World::new();
    world.start_apiserver();
    let list = world.json(&["network", "ls", "--format", "json"]);
    let default = network(&list, "default");
    assert_eq!(default["plugin"], "bridge");
    assert_eq!(default["subnet"], "10.88.0.0/24");
    assert_eq!(default["builtin"], true);
    let inspect = world.json(&["network", "inspect", "default"]);
    let bridge = inspect[0]["state"]["link"]
        .as_str()
        .expect("bridge name")
        .to_string();
    assert!(
        links().contains(&bridge),
        "bridge {bridge} missing: {:?}",
        links()
    );
    assert!(addresses_of(&bridge).contains(&"10.88.0.1/24".to_string()));
    let err = world.fails(&["network", "rm", "default"]);
    assert!(err.contains("built in"), "{err}");
    assert!(helper_pid(&world, "network", "default").is_some());
}

#[test]
fn bridge_network_create_inspect_and_remove_leave_nothing() {
    let mut world = World::new();
    world.start_apiserver();
    let out = world.ok(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/24",
        "--label",
        "team=a",
        "--opt",
        "mtu=1400",
        "n1",
    ]);
    assert_eq!(out.trim(), "n1");
    let inspect = world.json(&["network", "inspect", "n1"]);
    let n1 = &inspect[0];
    assert_eq!(n1["config"]["plugin"], "bridge");
    assert_eq!(n1["config"]["labels"]["team"], "a");
    let bridge = n1["state"]["link"].as_str().expect("bridge").to_string();
    assert!(bridge.len() <= 15);
    assert_eq!(addresses_of(&bridge), vec!["10.77.0.1/24".to_string()]);
    let mtu = ip_json(&["link", "show", "dev", &bridge])[0]["mtu"].as_u64();
    assert_eq!(mtu, Some(1400));
    assert!(
        nft_chains().iter().any(|c| c.contains("n1")),
        "nft chains: {:?}",
        nft_chains()
    );
    let pid = helper_pid(&world, "network", "n1").expect("n1 helper");

    world.ok(&["network", "rm", "n1"]);
    assert!(!links().contains(&bridge), "bridge left behind");
    assert!(
        !nft_chains().iter().any(|c| c.contains("n1")),
        "chains left behind: {:?}",
        nft_chains()
    );
    assert!(!world.root().join("networks/n1.json").exists());
    assert!(!world.root().join("ipam/n1").exists());
    eventually("n1 helper exited", || !alive(pid as u32));
    let list = world.json(&["network", "ls", "--format", "json"]);
    assert!(list
        .as_array()
        .expect("list")
        .iter()
        .all(|n| n["name"] != "n1"));
}

#[test]
fn auto_subnets_skip_other_networks_and_host_routes() {
    let mut world = World::new();
    world.start_apiserver();
    // A route the host already has: its /24 must not be chosen.
    assert!(Command::new("ip")
        .args(["link", "add", "r0", "type", "veth", "peer", "name", "r1"])
        .status()
        .expect("ip")
        .success());
    assert!(Command::new("ip")
        .args(["addr", "add", "10.88.1.1/24", "dev", "r0"])
        .status()
        .expect("ip")
        .success());
    assert!(Command::new("ip")
        .args(["link", "set", "r0", "up"])
        .status()
        .expect("ip")
        .success());
    world.ok(&["network", "create", "auto1"]);
    let list = world.json(&["network", "ls", "--format", "json"]);
    assert_eq!(network(&list, "auto1")["subnet"], "10.88.2.0/24");
}

#[test]
fn bad_input_gets_one_clear_line_and_changes_nothing() {
    let mut world = World::new();
    world.start_apiserver();
    world.ok(&["network", "create", "--subnet", "10.50.0.0/16", "taken"]);
    let cases: &[(&[&str], &str)] = &[
        (&["network", "create", "Bad"], "invalid network name"),
        (&["network", "create", "a/b"], "invalid network name"),
        (&["network", "create", ".."], "invalid network name"),
        (&["network", "create", "x..y"], "'..'"),
        (&["network", "create", &"n".repeat(64)], "63"),
        (&["network", "create", "taken"], "already exists"),
        (
            &["network", "create", "--subnet", "10.50.3.0/24", "ov"],
            "overlaps network taken",
        ),
        (
            &["network", "create", "--subnet", "10.1.2.3/24", "hb"],
            "host bits",
        ),
        (
            &["network", "create", "--subnet", "10.1.2.0/33", "bc"],
            "invalid subnet",
        ),
        (
            &["network", "create", "--subnet", "banana", "bc2"],
            "invalid subnet",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.9.0.0/24",
                "--gateway",
                "10.8.0.1",
                "gw",
            ],
            "not a host address",
        ),
        (
            &["network", "create", "--gateway", "10.8.0.1", "gw2"],
            "needs --subnet",
        ),
        (
            &["network", "create", "--plugin", "weave", "pl"],
            "unknown network plugin",
        ),
        (
            &["network", "create", "--opt", "colour=red", "op"],
            "colour",
        ),
        (&["network", "create", "--opt", "mtu=12", "mt"], "mtu"),
        (
            &["network", "create", "--opt", "novalue", "nv"],
            "KEY=VALUE",
        ),
        (
            &["network", "create", "--plugin", "macvlan", "mv"],
            "parent",
        ),
        (
            &[
                "network",
                "create",
                "--plugin",
                "macvlan",
                "--opt",
                "parent=nosuchnic",
                "mv2",
            ],
            "nosuchnic",
        ),
        (
            &[
                "network",
                "create",
                "--plugin",
                "macvlan",
                "--opt",
                "parent=lo",
                "--opt",
                "mode=sideways",
                "mv3",
            ],
            "sideways",
        ),
        (
            &[
                "network",
                "create",
                "--plugin",
                "none",
                "--subnet",
                "10.3.0.0/24",
                "nn",
            ],
            "takes no --subnet",
        ),
        (&["network", "create", "--plugin", "cni", "cn"], "conflist"),
        (&["network", "rm", "nosuch"], "not found"),
        (&["network", "inspect", "nosuch"], "not found"),
        (&["network", "gc", "nosuch"], "not found"),
    ];
    let before_files: Vec<_> = std::fs::read_dir(world.root().join("networks"))
        .expect("networks dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    let before_links = links();
    let before_chains = nft_chains();
    for (args, expected) in cases {
        let out = world.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {err:?}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {err:?}"
        );
    }
    let after_files: Vec<_> = std::fs::read_dir(world.root().join("networks"))
        .expect("networks dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(before_files, after_files, "no network record may change");
    assert_eq!(before_links, links(), "no link may change");
    assert_eq!(before_chains, nft_chains(), "no nftables chain may change");
}

#[test]
fn bridge_and_macvlan_networks_live_side_by_side() {
    let mut world = World::new();
    world.start_apiserver();
    // The kernel here has no dummy links: a veth pair stands in for a host NIC.
    assert!(Command::new("ip")
        .args([
            "link",
            "add",
            "hostnic0",
            "type",
            "veth",
            "peer",
            "name",
            "hostnic0p"
        ])
        .status()
        .expect("ip")
        .success());
    world.ok(&[
        "network",
        "create",
        "--plugin",
        "macvlan",
        "--opt",
        "parent=hostnic0",
        "--opt",
        "mode=bridge",
        "--subnet",
        "10.78.0.0/24",
        "mv",
    ]);
    world.ok(&["network", "create", "--subnet", "10.79.0.0/24", "br"]);
    let list = world.json(&["network", "ls", "--format", "json"]);
    assert_eq!(network(&list, "mv")["plugin"], "macvlan");
    assert_eq!(network(&list, "br")["plugin"], "bridge");
    let mv = world.json(&["network", "inspect", "mv"]);
    assert_eq!(mv[0]["state"]["link"], "hostnic0");
    assert!(helper_pid(&world, "network", "mv").is_some());
    assert!(helper_pid(&world, "network", "br").is_some());
    world.ok(&["network", "rm", "mv", "br"]);
    assert!(
        links().contains(&"hostnic0".to_string()),
        "the parent link is the host's: never removed"
    );
}

#[test]
fn a_network_file_from_before_plugins_loads_as_bridge() {
    let mut world = World::new();
    std::fs::create_dir_all(world.root().join("networks")).expect("dir");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/network-legacy.json"),
        world.root().join("networks/legacy.json"),
    )
    .expect("fixture");
    std::fs::write(world.root().join("networks/broken.json"), b"{ not json").expect("broken");
    world.start_apiserver();
    let list = world.json(&["network", "ls", "--format", "json"]);
    assert_eq!(network(&list, "legacy")["plugin"], "bridge");
    assert_eq!(network(&list, "legacy")["subnet"], "10.66.0.0/24");
    assert!(helper_pid(&world, "network", "legacy").is_some());
    assert!(
        world.apiserver_log().contains("broken.json"),
        "a corrupt record is reported by name"
    );
    network(&list, "default");
}

#[test]
fn restarted_apiserver_reconnects_to_live_network_helpers() {
    let mut world = World::new();
    world.start_apiserver();
    world.ok(&["network", "create", "--subnet", "10.61.0.0/24", "keep"]);
    let before = helper_pid(&world, "network", "keep").expect("helper");
    let default_before = helper_pid(&world, "network", "default").expect("helper");
    world.kill_apiserver();
    assert!(alive(before as u32), "helpers outlive the apiserver");
    world.start_apiserver();
    assert_eq!(
        helper_pid(&world, "network", "keep"),
        Some(before),
        "the same helper, reached again"
    );
    assert_eq!(
        helper_pid(&world, "network", "default"),
        Some(default_before)
    );
}

#[test]
fn a_killed_network_helper_is_started_again_only_by_the_next_operation_that_needs_it() {
    let mut world = World::new();
    world.start_apiserver();
    let pid = helper_pid(&world, "network", "default").expect("helper") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    eventually("dead helper leaves the status", || {
        helper_pid(&world, "network", "default").is_none()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        helper_pid(&world, "network", "default").is_none(),
        "nothing respawns it behind our back"
    );
    let inspect = world.json(&["network", "inspect", "default"]);
    let new_pid = inspect[0]["state"]["helper"]["pid"].as_u64().expect("pid");
    assert_ne!(new_pid, pid as u64);
    assert!(world.apiserver_log().contains("exited unexpectedly"));
}

#[test]
fn gc_releases_reservations_written_by_the_real_host_local_plugin() {
    let mut world = World::new();
    world.start_apiserver();
    // host-local pointed at our IPAM directory reserves an address for a container
    // that does not exist here.
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "default",
        "ipam": { "type": "host-local", "dataDir": world.root().join("ipam"), "ranges": [[{"subnet": "10.88.0.0/24"}]] }
    });
    let mut child = Command::new("/usr/lib/cni/host-local")
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "ghost")
        .env("CNI_NETNS", "/proc/self/ns/net")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("host-local (apt-get install containernetworking-plugins)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(conf.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("host-local");
    assert!(
        out.status.success(),
        "host-local ADD: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("result");
    let ip = result["ips"][0]["address"]
        .as_str()
        .expect("ip")
        .split('/')
        .next()
        .expect("ip")
        .to_string();
    assert!(world.root().join("ipam/default").join(&ip).exists());

    let released = world.ok(&["network", "gc", "default"]);
    assert!(
        released.contains(&ip) && released.contains("ghost"),
        "gc output: {released}"
    );
    assert!(!world.root().join("ipam/default").join(&ip).exists());
    assert!(
        world.ok(&["network", "gc"]).trim().is_empty(),
        "nothing left to release"
    );
}
