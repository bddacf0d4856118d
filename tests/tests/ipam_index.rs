//! The network helper's IPAM index end to end (issue 16): a helper keeps an index of its
//! network's reservations for its whole life, so the real host-local plugin writing in
//! the same directory while it runs, and a helper SIGKILLed and started again, must
//! never make an address held twice, and what `network inspect` reports (the helper's
//! index) must be what the files say.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

use container_tests::{busybox_rootfs, eventually, World};

const NET: &str = "small";
/// .1 is the gateway and .7 the broadcast: .2 to .6 are the five addresses.
const SUBNET: &str = "10.77.0.0/29";

struct Net {
    w: World,
    rootfs: String,
}

impl Net {
    fn new() -> Net {
        let mut w = World::new();
        let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
        w.start_apiserver();
        w.ok(&["network", "create", "--subnet", SUBNET, NET]);
        Net { w, rootfs }
    }

    fn dir(&self) -> std::path::PathBuf {
        self.w.root().join("ipam").join(NET)
    }

    /// Runs a container on the network; its address.
    fn run(&self, name: &str) -> String {
        self.w.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            NET,
            "--rootfs",
            &self.rootfs,
            "--",
            "sleep",
            "1000",
        ]);
        let held = self.running();
        let id = self.id(name);
        held.iter()
            .find(|(_, holder)| **holder == id)
            .map(|(ip, _)| ip.clone())
            .unwrap_or_else(|| panic!("{name} ({id}) has no address: {held:?}"))
    }

    fn id(&self, name: &str) -> String {
        let v = self.w.json(&["inspect", name]);
        v[0]["config"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("inspect {name}: {v}"))
            .to_string()
    }

    /// Address -> container id of every running container, failing on an address two
    /// containers hold.
    fn running(&self) -> BTreeMap<String, String> {
        let mut held = BTreeMap::new();
        for c in self
            .w
            .json(&["ls", "--format", "json"])
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let id = c["id"].as_str().unwrap_or_default().to_string();
            for a in c["addresses"].as_array().cloned().unwrap_or_default() {
                let ip = a.as_str().unwrap_or_default().to_string();
                if let Some(other) = held.insert(ip.clone(), id.clone()) {
                    panic!("{ip} held by both {other} and {id}");
                }
            }
        }
        held
    }

    /// Address -> holder id, from the reservation files themselves.
    fn on_disk(&self) -> BTreeMap<String, String> {
        std::fs::read_dir(self.dir())
            .expect("reservation directory")
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.parse::<std::net::IpAddr>().ok()?;
                let text = std::fs::read_to_string(e.path()).ok()?;
                Some((name, text.lines().next()?.trim().to_string()))
            })
            .collect()
    }

    /// Address -> holder id, as the helper's index answers (`network inspect`).
    fn indexed(&self) -> BTreeMap<String, String> {
        let v = self.w.json(&["network", "inspect", NET]);
        v[0]["state"]["reservations"]
            .as_array()
            .unwrap_or_else(|| panic!("network inspect {NET}: no reservations in {v}"))
            .iter()
            .map(|r| {
                (
                    r["ip"].as_str().unwrap_or_default().to_string(),
                    r["container_id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The helper's index agrees with the files, and every running container's address
    /// is reserved for it.
    fn assert_true(&self, step: &str) {
        let disk = self.on_disk();
        assert_eq!(self.indexed(), disk, "after {step}: index against files");
        for (ip, id) in self.running() {
            assert_eq!(
                disk.get(&ip),
                Some(&id),
                "after {step}: running {id} holds {ip}, its file says {:?}",
                disk.get(&ip)
            );
        }
    }

    /// host-local ADD or DEL for `id` on this network's directory, as a CNI runtime
    /// sharing it would run it: its address on success, its output on failure.
    fn host_local(&self, command: &str, id: &str) -> Result<String, String> {
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": NET,
            "ipam": {
                "type": "host-local",
                "dataDir": self.w.root().join("ipam"),
                "ranges": [[{"subnet": SUBNET}]],
            }
        });
        let mut child = Command::new("/usr/lib/cni/host-local")
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", "/proc/self/ns/net")
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("host-local (apt-get install containernetworking-plugins)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(conf.to_string().as_bytes())
            .expect("write config");
        let out = child.wait_with_output().expect("host-local");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)));
        }
        if command == "DEL" {
            return Ok(String::new());
        }
        let v: serde_json::Value = serde_json::from_str(&text).expect("host-local result");
        Ok(v["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .expect("an address")
            .to_string())
    }

    fn helper_pid(&self) -> Option<u64> {
        let status = self.w.json(&["system", "status", "--format", "json"]);
        status["helpers"].as_array()?.iter().find_map(|h| {
            (h["kind"].as_str().map(str::to_lowercase).as_deref() == Some("network")
                && h["id"] == NET)
                .then(|| h["pid"].as_u64())
                .flatten()
        })
    }
}

fn ip(last: u8) -> String {
    format!("10.77.0.{last}")
}

/// host-local allocates and releases while the helper's index is live: the helper skips
/// what it took, continues its round-robin and finds what it freed. Then the other way:
/// host-local, told nothing, skips the helper's.
#[test]
fn host_local_and_the_running_helper_share_a_network_both_ways() {
    let n = Net::new();
    assert_eq!(n.run("a"), ip(2));
    assert_eq!(n.host_local("ADD", "hl-1"), Ok(ip(3)));
    assert_eq!(n.host_local("ADD", "hl-2"), Ok(ip(4)));
    n.assert_true("host-local's two ADDs");

    // Past host-local's two, from the cursor it left.
    assert_eq!(n.run("b"), ip(5));
    n.host_local("DEL", "hl-1").expect("host-local DEL");
    n.assert_true("host-local's DEL");
    assert_eq!(n.run("c"), ip(6));
    // Wrapped round to the address host-local freed: an index that missed the DEL
    // would call the network full here.
    assert_eq!(n.run("d"), ip(3));
    let full = n.w.fails(&[
        "run",
        "-d",
        "--name",
        "e",
        "--network",
        NET,
        "--rootfs",
        &n.rootfs,
        "--",
        "sleep",
        "1000",
    ]);
    assert!(full.contains("no free address"), "{full}");
    n.assert_true("a full network");

    // The other way: the helper releases b's address and host-local, which reads the
    // directory, takes exactly that one and finds no other.
    n.w.ok(&["rm", "-f", "b"]);
    assert_eq!(n.host_local("ADD", "hl-3"), Ok(ip(5)));
    let refused = n.host_local("ADD", "hl-4");
    assert!(refused.is_err(), "host-local found room: {refused:?}");
    n.assert_true("host-local filling the network");

    let disk = n.on_disk();
    let holders: BTreeSet<&str> = disk.values().map(String::as_str).collect();
    assert_eq!(disk.len(), 5, "{disk:?}");
    assert_eq!(holders.len(), 5, "an address per holder: {disk:?}");
    for name in ["a", "c", "d"] {
        assert!(holders.contains(n.id(name).as_str()), "{name}: {disk:?}");
    }
    assert!(
        holders.contains("hl-2") && holders.contains("hl-3"),
        "{disk:?}"
    );
    n.w.ok(&["rm", "-f", "a", "c", "d"]);
}

/// A helper SIGKILLed mid-life leaves its index with it; the next operation starts a new
/// helper, which reads the directory whole (what host-local did meanwhile included,
/// GC'd as the reservation of a container that is not live) and hands out exactly the
/// addresses nobody holds.
#[test]
fn a_killed_network_helper_rebuilds_its_index_from_the_directory() {
    let n = Net::new();
    let a = n.run("a");
    let b = n.run("b");
    n.assert_true("two runs");
    let old = n.helper_pid().expect("the network's helper");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the helper");
    eventually("the killed helper leaves the status", || {
        n.helper_pid().is_none()
    });
    // While no helper runs: another writer takes the next address.
    let ghost = n.host_local("ADD", "ghost").expect("host-local ADD");
    assert!(n.on_disk().contains_key(&ghost));

    // The next run starts a helper (set-up and GC first: the ghost is not live).
    let c = n.run("c");
    let new = n.helper_pid().expect("a new helper");
    assert_ne!(new, old);
    assert!(
        !n.on_disk().values().any(|h| h == "ghost"),
        "GC at the helper's start releases host-local's reservation of nobody live"
    );
    n.assert_true("the new helper's first allocation");

    // Every address but the three held is handed out once, then the network is full.
    let d = n.run("d");
    let e = n.run("e");
    let all: BTreeSet<&String> = [&a, &b, &c, &d, &e].into_iter().collect();
    assert_eq!(all.len(), 5, "an address handed out twice: {all:?}");
    let full = n.w.fails(&[
        "run",
        "-d",
        "--name",
        "f",
        "--network",
        NET,
        "--rootfs",
        &n.rootfs,
        "--",
        "sleep",
        "1000",
    ]);
    assert!(full.contains("no free address"), "{full}");
    n.assert_true("a full network");
    n.w.ok(&["rm", "-f", "a", "b", "c", "d", "e"]);
}
