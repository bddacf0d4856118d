//! Issue 14: `container-cni` under real runtimes: this project's own `--plugin cni`
//! networks, and containerd's `ctr run --cni`.

mod cni_common;

use cni_common::*;
use container_tests::{netns_mounts, setup, World};
use serde_json::json;

fn conflist(world: &World, name: &str, bridge: &str, subnet: &str) -> (String, std::path::PathBuf) {
    let data = world.root().join("cni-ipam");
    let list = json!({
        "cniVersion": "1.1.0",
        "name": name,
        "plugins": [{
            "type": "container-cni",
            "bridge": bridge,
            "isGateway": true,
            "isDefaultGateway": true,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": data},
        }],
    });
    let path = world.iso.dir().join(format!("{name}.conflist"));
    std::fs::write(&path, list.to_string()).expect("write conflist");
    (path.display().to_string(), data.join(name))
}

/// The same binary serves this project: a `--plugin cni` network whose conflist names
/// `container-cni` gives two containers addresses that reach each other, CHECKs them,
/// and gives the addresses back at `rm`.
#[test]
fn network_create_plugin_cni_with_container_cni() {
    let s = setup();
    let w = &s.world;
    let (conflist, dir) = conflist(w, "ours", "cniours0", "10.81.0.0/24");
    let cni_path = format!("{}:{REFERENCE}", container_testkit::bin_dir().display());
    w.ok(&[
        "network",
        "create",
        "--plugin",
        "cni",
        "--opt",
        &format!("conflist={conflist}"),
        "--opt",
        &format!("cni_path={cni_path}"),
        "ours",
    ]);
    for name in ["a", "b"] {
        w.run_sleeping(name, "ours", &s.rootfs, 600);
    }
    let holders: Vec<String> = reservations(&dir).into_iter().map(|(_, h)| h).collect();
    assert_eq!(holders.len(), 2, "{holders:?}");
    let addr_of = |name: &str| {
        let out = w.ok(&["exec", name, "--", "ip", "-4", "-o", "addr", "show", "eth0"]);
        let cidr = out
            .split_whitespace()
            .skip_while(|t| *t != "inet")
            .nth(1)
            .unwrap_or_else(|| panic!("no address on {name}'s eth0: {out}"))
            .to_string();
        cidr.split('/').next().expect("ip").to_string()
    };
    let b = addr_of("b");
    assert!(b.starts_with("10.81.0."), "{b}");
    w.ok(&["exec", "a", "--", "ping", "-c", "1", "-W", "5", &b]);
    let check = w.cli(&["system", "check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    w.ok(&["rm", "-f", "a", "b"]);
    assert!(reservations(&dir).is_empty(), "{:?}", reservations(&dir));
    assert!(our_host_ends().is_empty(), "{:?}", our_host_ends());
    w.ok(&["network", "rm", "ours"]);
}

/// A netns is bind-mounted only where something opens it by path: a container on a
/// bridge has none (its helper's descriptor holds it), one on a CNI network has one,
/// and connecting the first to a CNI network binds its netns then. Every mount is
/// gone with the containers.
#[test]
fn a_netns_is_bound_only_for_a_cni_network() {
    let s = setup();
    let w = &s.world;
    let (conflist, dir) = conflist(w, "pathed", "cnipath0", "10.82.0.0/24");
    let cni_path = format!("{}:{REFERENCE}", container_testkit::bin_dir().display());
    w.ok(&[
        "network",
        "create",
        "--plugin",
        "cni",
        "--opt",
        &format!("conflist={conflist}"),
        "--opt",
        &format!("cni_path={cni_path}"),
        "pathed",
    ]);
    w.ok(&["network", "create", "--subnet", "10.83.0.0/24", "plain"]);
    w.run_sleeping("held", "plain", &s.rootfs, 600);
    let netns_of = |name: &str| {
        let j = w.json(&["inspect", name]);
        j[0]["state"]["netns"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let mount_of = |name: &str| w.run_dir().join("netns").join(name);
    let helper = w.json(&["inspect", "held"])[0]["state"]["helper_pid"].clone();
    assert_eq!(
        netns_of("held"),
        format!(
            "/proc/{helper}/fd/{}",
            netns_of("held").rsplit('/').next().unwrap()
        ),
    );
    assert!(netns_mounts(w).is_empty(), "{:?}", netns_mounts(w));
    assert!(!mount_of("held").exists());

    w.run_sleeping("pathed1", "pathed", &s.rootfs, 600);
    assert_eq!(
        netns_of("pathed1"),
        mount_of("pathed1").display().to_string()
    );
    assert_eq!(netns_mounts(w).len(), 1, "{:?}", netns_mounts(w));

    w.ok(&["network", "connect", "pathed", "held"]);
    assert_eq!(netns_of("held"), mount_of("held").display().to_string());
    assert_eq!(netns_mounts(w).len(), 2, "{:?}", netns_mounts(w));
    let addrs = w.ok(&["exec", "held", "--", "ip", "-4", "-o", "addr"]);
    assert!(
        addrs.contains("10.83.0.") && addrs.contains("10.82.0."),
        "{addrs}"
    );
    // The CNI attachment is given back by its DEL, with the path it was added with.
    w.ok(&["network", "disconnect", "pathed", "held"]);
    assert_eq!(reservations(&dir).len(), 1, "{:?}", reservations(&dir));

    w.ok(&["rm", "-f", "held", "pathed1"]);
    assert!(netns_mounts(w).is_empty(), "{:?}", netns_mounts(w));
    assert!(reservations(&dir).is_empty(), "{:?}", reservations(&dir));
    assert!(our_host_ends().is_empty(), "{:?}", our_host_ends());
}

/// What the containerd test started, stopped whatever happens to the test: the tasks,
/// the `ctr run` clients, containerd and the shims serving this test's socket.
struct Containerd {
    socket: std::path::PathBuf,
    daemon: std::process::Child,
    runs: Vec<std::process::Child>,
}

impl Containerd {
    fn ctr(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("ctr (apt-get install containerd)")
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Pids of the shims serving this test's containerd (by its socket, so another
    /// test's or the host's are never touched).
    fn shims(&self) -> Vec<i32> {
        let sock = self.socket.display().to_string();
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("containerd-shim") && cmd.contains(&sock) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for t in ["t1", "t2"] {
            let _ = self.ctr(&["task", "kill", "-s", "KILL", t]);
        }
        for r in &mut self.runs {
            let _ = r.kill();
            let _ = r.wait();
        }
        for t in ["t1", "t2"] {
            let _ = self.ctr(&["task", "delete", "-f", t]);
            let _ = self.ctr(&["container", "delete", t]);
        }
        let shims = self.shims();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        for pid in shims {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn mount_over(src: Option<&std::path::Path>, target: &str, fstype: Option<&str>) {
    use nix::mount::{mount, MsFlags};
    let flags = if src.is_some() {
        MsFlags::MS_BIND
    } else {
        MsFlags::empty()
    };
    mount(src, target, fstype, flags, None::<&str>)
        .unwrap_or_else(|e| panic!("mount over {target}: {e}"));
}

/// containerd's own CNI client: `ctr run --cni` with our conflist in a private
/// /etc/cni/net.d and our binary in a private /opt/cni/bin (mounted in this test's mount
/// namespace only), containerd started in the test's namespaces with a temporary root
/// and state. Two tasks get addresses from our IPAM and ping each other; when they end,
/// ctr's DEL releases both reservations and their links.
#[test]
fn containerd_ctr_run_cni_uses_container_cni() {
    let iso = container_testkit::isolate().expect("isolate");
    let dir = iso.dir().to_path_buf();
    // Everything containerd, its shims, runc and libcni write outside the paths given
    // to them (/run/containerd, libcni's cache in /var/lib/cni) lands in tmpfs.
    mount_over(None, "/run", Some("tmpfs"));
    mount_over(None, "/var/lib", Some("tmpfs"));
    mount_over(None, "/opt", Some("tmpfs"));
    let bin = dir.join("cni-bin");
    let netd = dir.join("net.d");
    std::fs::create_dir_all(&bin).expect("bin dir");
    std::fs::create_dir_all(&netd).expect("net.d");
    std::fs::create_dir_all("/opt/cni/bin").expect("/opt/cni/bin");
    std::fs::copy(ours(), bin.join("container-cni")).expect("copy container-cni");
    std::fs::copy(format!("{REFERENCE}/loopback"), bin.join("loopback")).expect("loopback");
    mount_over(Some(&bin), "/opt/cni/bin", None);
    mount_over(Some(&netd), "/etc/cni/net.d", None);
    let data = dir.join("ipam");
    let list = json!({
        // containerd 1.6's libcni speaks up to 1.0.0.
        "cniVersion": "1.0.0",
        "name": "ctrnet",
        "plugins": [{
            "type": "container-cni",
            "bridge": "ctrbr0",
            "isGateway": true,
            "isDefaultGateway": true,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.82.0.0/24"}]], "dataDir": data},
        }],
    });
    std::fs::write(netd.join("10-ctrnet.conflist"), list.to_string()).expect("conflist");

    let socket = dir.join("containerd.sock");
    let config = dir.join("containerd.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = {:?}\n",
            dir.join("containerd/root").display().to_string(),
            dir.join("containerd/state").display().to_string(),
            socket.display().to_string(),
        ),
    )
    .expect("containerd config");
    let log = std::fs::File::create(dir.join("containerd.log")).expect("log");
    let daemon = std::process::Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("containerd (apt-get install containerd)");
    let mut ctrd = Containerd {
        socket,
        daemon,
        runs: Vec::new(),
    };
    let log = || std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default();
    container_tests::eventually("containerd answers", || {
        ctrd.ctr(&["version"]).status.success()
    });

    // busybox as an OCI archive, imported as ctr imports any image.
    let rootfs = container_tests::busybox_rootfs(&dir.join("img"));
    let image = container_tests::oci::Image::new(
        vec![container_tests::oci::LayerBuilder::default()
            .tree(&rootfs)
            .tar()],
        json!({"Cmd": ["sh"], "Env": ["PATH=/bin"]}),
    );
    let layout =
        container_tests::oci::layout(&dir.join("layout"), "docker.io/library/bb:1", &[image]);
    let archive = dir.join("bb.tar");
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .expect("tar");
    assert!(tar.success());
    ctrd.ok(&["image", "import", archive.to_str().expect("path")]);
    let images = ctrd.ok(&["image", "ls", "-q"]);
    assert!(images.contains("docker.io/library/bb:1"), "{images}");

    let cgroups = container_testkit::CgroupParent::new();
    for t in ["t1", "t2"] {
        let run = std::process::Command::new("ctr")
            .arg("--address")
            .arg(&ctrd.socket)
            .args(["run", "--cni", "--rm", "--cgroup"])
            .arg(format!("/{}/{t}", cgroups.name()))
            .args(["docker.io/library/bb:1", t, "sleep", "600"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{t}.log"))).expect("log"))
            .spawn()
            .expect("ctr run");
        ctrd.runs.push(run);
    }
    let addr_of = |t: &str| -> String {
        let mut found = String::new();
        container_tests::eventually(&format!("{t} has an address"), || {
            let out = ctrd.ctr(&[
                "task",
                "exec",
                "--exec-id",
                &format!("ip-{t}"),
                t,
                "ip",
                "-4",
                "-o",
                "addr",
                "show",
                "eth0",
            ]);
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(cidr) = text.split_whitespace().skip_while(|w| *w != "inet").nth(1) {
                found = cidr.split('/').next().unwrap_or("").to_string();
            }
            !found.is_empty()
        });
        found
    };
    let (a, b) = (addr_of("t1"), addr_of("t2"));
    assert!(
        a.starts_with("10.82.0.") && b.starts_with("10.82.0.") && a != b,
        "{a} {b}"
    );
    let mut holders: Vec<String> = reservations(&data.join("ctrnet"))
        .into_iter()
        .map(|(_, h)| h)
        .collect();
    holders.sort();
    assert_eq!(holders, vec!["default-t1", "default-t2"], "{}", log());
    ctrd.ok(&[
        "task",
        "exec",
        "--exec-id",
        "ping",
        "t1",
        "ping",
        "-c",
        "1",
        "-W",
        "5",
        &b,
    ]);
    ctrd.ok(&[
        "task",
        "exec",
        "--exec-id",
        "ping",
        "t2",
        "ping",
        "-c",
        "1",
        "-W",
        "5",
        &a,
    ]);

    // The tasks end; each `ctr run --rm` runs CNI DEL and removes its container.
    for t in ["t1", "t2"] {
        ctrd.ok(&["task", "kill", "-s", "KILL", t]);
    }
    let mut runs = std::mem::take(&mut ctrd.runs);
    for r in &mut runs {
        r.wait().expect("ctr run");
    }
    assert!(
        reservations(&data.join("ctrnet")).is_empty(),
        "{:?} {}",
        reservations(&data.join("ctrnet")),
        std::fs::read_to_string(dir.join("t1.log")).unwrap_or_default()
    );
    assert!(our_host_ends().is_empty(), "{:?}", our_host_ends());
}
