//! One bridge attachment set up and torn down in a prepared network namespace, by each
//! way a user could get it (`cargo xtask bench`, entry `attach`):
//!
//! * `ip_batch_floor_baseline`: the floor, the same kernel work done by one `ip -batch`
//!   process: veth created with its host end in the host namespace (already enslaved to
//!   the bridge and up) and its peer in the container, address, up, default route, then
//!   delete.
//! * `container_bridge_strategy`: this project's bridge interface strategy
//!   (`interfaces::realize` + `interfaces::remove`) on the netlink connections a sandbox
//!   helper holds for its whole life.
//! * `container_bridge_strategy_fresh_netlink`: the same plus opening both netlink
//!   connections, i.e. what the first attachment of a new helper pays.
//! * `cni_bridge_host_local`: the reference CNI `bridge` plugin (which runs `host-local`
//!   for the address) `ADD` then `DEL`, as processes, the way containerd drives them.
//! * `netavark_internal` / `netavark_nat`: netavark `setup` then `teardown`, as podman
//!   drives it, on an internal network (no firewall work, like ours) and on a network
//!   with NAT (podman's default, iptables rules checked on every setup).
//!
//! Every contender gets its own bridge (made up front, like a network helper does) and
//! its own prepared container namespace, all inside the private namespaces of
//! `container_testkit::isolate`, so nothing reaches the host. A contender whose tool is
//! missing or fails its trial run is skipped, and the reason is appended to the file
//! named by `BENCH_NOTES` (read by xtask for the report).

use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use container_netlink::{NetNs, Netlink};
use container_protocol::network::{Allocation, PluginData, RouteSpec};
use container_sandbox_helper::interfaces;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use ipnet::IpNet;

const GROUP: &str = "attach_bridge";
const CNI_DIR: &str = "/usr/lib/cni";
const IFNAME: &str = "eth0";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

type Result<T> = std::result::Result<T, String>;

/// The bench's "host" (the isolated namespace of this thread) and its tools.
struct Env {
    iso: container_testkit::Isolated,
    rt: tokio::runtime::Runtime,
    host: Netlink,
}

/// A container network namespace, bound under the temporary run dir, unmounted on drop
/// so the temporary tree can go.
struct BoundNs {
    ns: NetNs,
    path: PathBuf,
}

impl Drop for BoundNs {
    fn drop(&mut self) {
        let _ = NetNs::remove_bound(&self.path);
    }
}

impl Env {
    fn netns(&self, name: &str) -> BoundNs {
        let path = self.iso.run_dir().join("netns").join(name);
        let ns = NetNs::create_bound(&path).expect("create container netns");
        BoundNs { ns, path }
    }

    /// A bridge holding `gateway`, up: what the network helper leaves for a strategy.
    fn bridge(&self, name: &str, gateway: &str) -> u32 {
        self.rt.block_on(async {
            let idx = self.host.create_bridge(name, None).await.expect("bridge");
            self.host
                .add_address(idx, gateway.parse().expect("gateway"))
                .await
                .expect("gateway address");
            self.host.set_up(idx).await.expect("bridge up");
            idx
        })
    }

    /// Checks that the container namespace holds `eth0` with `addr` (`present`) or no
    /// `eth0` at all, so a contender that quietly does nothing cannot win.
    fn check(&self, ns: &NetNs, addr: &str, present: bool) -> Result<()> {
        let want: IpNet = addr.parse().expect("address");
        self.rt.block_on(async {
            let inside = Netlink::connect_in(ns).map_err(|e| e.to_string())?;
            let link = inside
                .link_by_name(IFNAME)
                .await
                .map_err(|e| e.to_string())?;
            match (link, present) {
                (None, false) => Ok(()),
                (Some(_), false) => Err(format!("{IFNAME} left behind after tear-down")),
                (None, true) => Err(format!("no {IFNAME} in the container after set-up")),
                (Some(link), true) => {
                    let addrs = inside
                        .addresses(link.index)
                        .await
                        .map_err(|e| e.to_string())?;
                    if addrs.iter().any(|a| a.address == want) {
                        Ok(())
                    } else {
                        Err(format!("{IFNAME} lacks {want} after set-up"))
                    }
                }
            }
        })
    }
}

/// Appends a line to `$BENCH_NOTES` (and stderr): why a contender is not in the table.
fn note(line: &str) {
    eprintln!("attach: {line}");
    if let Some(path) = std::env::var_os("BENCH_NOTES") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "attach: {line}");
        }
    }
}

/// Runs `cmd` with `stdin` as its input; its output only matters when it fails.
fn run(cmd: &mut Command, stdin: &str) -> Result<()> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {:?}: {e}", cmd.get_program()))?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .map_err(|e| format!("write stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} {}: {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A trial set-up and tear-down, checked, before anything is timed.
fn trial(
    env: &Env,
    ns: &NetNs,
    addr: &str,
    setup: &mut dyn FnMut() -> Result<()>,
    teardown: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    setup()?;
    let checked = env.check(ns, addr, true);
    teardown()?;
    checked?;
    env.check(ns, addr, false)
}

fn main() {
    // First, before any thread exists: every thread and process the bench starts
    // inherits these namespaces.
    let iso = container_testkit::isolate().expect("isolate (run as root: cargo xtask bench)");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let host = rt.block_on(async { Netlink::connect() }).expect("netlink");
    let env = Env { iso, rt, host };

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group(GROUP);
    // Flat: iterations take milliseconds to tens of them (kernel device deletion waits
    // for RCU), so equal-sized samples are enough and keep the run within minutes.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    ip_floor(&env, &mut group);
    ours(&env, &mut group, false);
    ours(&env, &mut group, true);
    netns_teardown(&env, &mut group);
    cni(&env, &mut group);
    match netavark_binary() {
        Some(bin) => {
            netavark(&env, &mut group, &bin, true);
            netavark(&env, &mut group, &bin, false);
        }
        None => note("netavark: not installed (no netavark on PATH or in /usr/lib/podman)"),
    }
    group.finish();
    c.final_summary();
}

/// `ip -batch` run inside the container namespace: from there one netlink socket
/// reaches both sides, since the host end is created in the host namespace by
/// IFLA_NET_NS_FD (`netns PATH`) and enslaved by index (`master ifN`). One process,
/// one request per step. (The peer cannot be created "up": the kernel refuses to open
/// a veth end before its pair is linked, so `link set eth0 up` is its own step.)
fn ip_floor(env: &Env, group: &mut BenchmarkGroup<'_, WallTime>) {
    let bridge = env.bridge("brfloor", "10.88.4.1/24");
    let c = env.netns("floor");
    let host_ns = format!("/proc/{}/ns/net", std::process::id());
    let setup = format!(
        "link add vethfloor netns {host_ns} master if{bridge} up type veth peer name {IFNAME}\n\
         addr add 10.88.4.2/24 dev {IFNAME}\n\
         link set {IFNAME} up\n\
         route add default via 10.88.4.1 dev {IFNAME}\n"
    );
    // Deleting one end takes the pair, as every contender's tear-down does.
    let teardown = format!("link del {IFNAME}\n");
    let both = format!("{setup}{teardown}");
    let fd = c.ns.as_raw_fd();
    let ip = move |script: &str| {
        let mut cmd = Command::new("ip");
        cmd.args(["-batch", "-"]);
        // SAFETY: setns is async-signal-safe and only moves the child.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        run(&mut cmd, script)
    };
    if let Err(e) = trial(env, &c.ns, "10.88.4.2/24", &mut || ip(&setup), &mut || {
        ip(&teardown)
    }) {
        note(&format!("ip_batch_floor_baseline: skipped: {e}"));
        return;
    }
    group.bench_function("ip_batch_floor_baseline", |b| {
        b.iter(|| ip(&both).expect("ip -batch"))
    });
}

fn ours(env: &Env, group: &mut BenchmarkGroup<'_, WallTime>, fresh: bool) {
    let (bridge, octet, name) = if fresh {
        ("brfresh", 5, "container_explicit_delete_fresh_netlink")
    } else {
        ("brours", 1, "container_explicit_delete")
    };
    env.bridge(bridge, &format!("10.88.{octet}.1/24"));
    let c = env.netns(bridge);
    let addr = format!("10.88.{octet}.2/24");
    let gateway: IpAddr = format!("10.88.{octet}.1").parse().expect("gateway");
    // What the network helper's bridge plugin hands out: address, gateway, default
    // route, no MAC or MTU of its own.
    let alloc = Allocation {
        network: "bench".into(),
        container_id: format!("bench-{bridge}"),
        ifname: IFNAME.into(),
        addresses: vec![addr.parse().expect("address")],
        gateways: vec![gateway],
        routes: vec![RouteSpec {
            dest: "0.0.0.0/0".parse().expect("default"),
            gateway: Some(gateway),
        }],
        mac: None,
        mtu: None,
        dns: vec![],
        data: PluginData::Bridge {
            bridge: bridge.into(),
        },
    };
    let inside = env
        .rt
        .block_on(async { Netlink::connect_in(&c.ns) })
        .map(Some)
        .expect("netlink inside");
    let once = |inside: Option<&Netlink>| {
        env.rt.block_on(async {
            let fresh_conns;
            let (host, inside) = match inside {
                Some(inside) => (&env.host, inside),
                None => {
                    fresh_conns = (
                        Netlink::connect().map_err(|e| e.to_string())?,
                        Netlink::connect_in(&c.ns).map_err(|e| e.to_string())?,
                    );
                    (&fresh_conns.0, &fresh_conns.1)
                }
            };
            let report = interfaces::realize(host, &c.ns, inside, &alloc, true)
                .await
                .map_err(|e| e.to_string())?;
            interfaces::remove(host, &report)
                .await
                .map_err(|e| e.to_string())
        })
    };
    let conns = if fresh { None } else { inside.as_ref() };
    // The trial checks the interface between the two calls, so it drives them apart.
    let report = std::cell::RefCell::new(None);
    let checked = trial(
        env,
        &c.ns,
        &addr,
        &mut || {
            let r = env.rt.block_on(interfaces::realize(
                &env.host,
                &c.ns,
                inside.as_ref().expect("inside"),
                &alloc,
                true,
            ));
            *report.borrow_mut() = Some(r.map_err(|e| e.to_string())?);
            Ok(())
        },
        &mut || {
            let r = report.borrow_mut().take().expect("report");
            env.rt
                .block_on(interfaces::remove(&env.host, &r))
                .map_err(|e| e.to_string())
        },
    );
    if let Err(e) = checked {
        note(&format!("{name}: skipped: {e}"));
        return;
    }
    group.bench_function(name, |b| b.iter(|| once(conns).expect("attach")));
}

/// What the product does: the bridge strategy's set-up, and the container's end torn
/// down by removing its namespace (the sandbox helper no longer deletes the veth
/// itself). The kernel then deletes the veth pair in its namespace-cleanup worker,
/// batched, and nobody waits for the device unregistration (the ~all of `remove`'s
/// time). Each iteration also creates the namespace, which the other rows get for free.
fn netns_teardown(env: &Env, group: &mut BenchmarkGroup<'_, WallTime>) {
    const NAME: &str = "container_bridge_strategy";
    env.bridge("brwhatif", "10.88.7.1/24");
    let gateway: IpAddr = "10.88.7.1".parse().expect("gateway");
    let alloc = Allocation {
        network: "bench".into(),
        container_id: "bench-whatif".into(),
        ifname: IFNAME.into(),
        addresses: vec!["10.88.7.2/24".parse().expect("address")],
        gateways: vec![gateway],
        routes: vec![RouteSpec {
            dest: "0.0.0.0/0".parse().expect("default"),
            gateway: Some(gateway),
        }],
        mac: None,
        mtu: None,
        dns: vec![],
        data: PluginData::Bridge {
            bridge: "brwhatif".into(),
        },
    };
    // A new container id each time, as in production: the previous pair's host end may
    // still await the kernel's cleanup worker under its (id-derived) name.
    let serial = std::cell::Cell::new(0u64);
    let once = || -> Result<()> {
        let c = env.netns("whatif");
        serial.set(serial.get() + 1);
        let alloc = Allocation {
            container_id: format!("bench-whatif-{}", serial.get()),
            ..alloc.clone()
        };
        env.rt.block_on(async {
            let inside = Netlink::connect_in(&c.ns).map_err(|e| e.to_string())?;
            interfaces::realize(&env.host, &c.ns, &inside, &alloc, true)
                .await
                .map_err(|e| e.to_string())
                .map(|_| ())
        })
        // Dropping `c` and the connection releases the last references: the
        // namespace dies and takes the veth pair with it.
    };
    if let Err(e) = once() {
        note(&format!("{NAME}: skipped: {e}"));
        return;
    }
    group.bench_function(NAME, |b| b.iter(|| once().expect("what-if")));
}

fn cni(env: &Env, group: &mut BenchmarkGroup<'_, WallTime>) {
    let plugin = Path::new(CNI_DIR).join("bridge");
    if !plugin.exists() || !Path::new(CNI_DIR).join("host-local").exists() {
        note("cni_bridge_host_local: skipped: containernetworking-plugins not installed");
        return;
    }
    env.bridge("brcni", "10.88.2.1/24");
    let c = env.netns("cni");
    let data_dir = env.iso.dir().join("cni-ipam");
    // Like ours: gateway on the bridge, default route, no masquerade (that is network-
    // wide firewall work, which the sandbox strategy does not do either).
    let config = format!(
        r#"{{"cniVersion":"1.0.0","name":"benchcni","type":"bridge","bridge":"brcni",
"isGateway":true,"isDefaultGateway":true,"ipMasq":false,"hairpinMode":false,
"ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.88.2.0/24","gateway":"10.88.2.1"}}]]}}}}"#,
        data_dir.display()
    );
    let netns = c.path.display().to_string();
    let call = |command: &str| {
        run(
            Command::new(&plugin)
                .env_clear()
                .env("PATH", PATH)
                .env("CNI_COMMAND", command)
                .env("CNI_CONTAINERID", "bench-cni")
                .env("CNI_NETNS", &netns)
                .env("CNI_IFNAME", IFNAME)
                .env("CNI_PATH", CNI_DIR),
            &config,
        )
    };
    // host-local hands out the range start, .2, first.
    if let Err(e) = trial(env, &c.ns, "10.88.2.2/24", &mut || call("ADD"), &mut || {
        call("DEL")
    }) {
        note(&format!("cni_bridge_host_local: skipped: {e}"));
        return;
    }
    group.bench_function("cni_bridge_host_local", |b| {
        b.iter(|| {
            call("ADD").expect("CNI ADD");
            call("DEL").expect("CNI DEL");
        })
    });
}

fn netavark_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NETAVARK") {
        return Some(PathBuf::from(path));
    }
    let mut dirs: Vec<PathBuf> = std::env::split_paths(PATH).collect();
    dirs.extend(
        ["/usr/libexec/podman", "/usr/lib/podman"]
            .iter()
            .map(PathBuf::from),
    );
    dirs.into_iter()
        .map(|d| d.join("netavark"))
        .find(|p| p.exists())
}

/// netavark's network options, as podman writes them for one container on one network.
fn netavark_options(container: &str, ip: &str, bridge: &str, octet: u8, internal: bool) -> String {
    let id = format!("{:064x}", u64::from(octet));
    format!(
        r#"{{"container_id":"{container}","container_name":"{container}",
"networks":{{"bench":{{"interface_name":"{IFNAME}","static_ips":["{ip}"]}}}},
"network_info":{{"bench":{{"name":"bench","id":"{id}","driver":"bridge",
"network_interface":"{bridge}","subnets":[{{"subnet":"10.88.{octet}.0/24","gateway":"10.88.{octet}.1"}}],
"ipv6_enabled":false,"internal":{internal},"dns_enabled":false}}}}}}"#,
    )
}

fn netavark(env: &Env, group: &mut BenchmarkGroup<'_, WallTime>, bin: &Path, internal: bool) {
    let (name, bridge, octet) = if internal {
        ("netavark_internal", "brnvint", 6u8)
    } else {
        ("netavark_nat", "brnvnat", 3u8)
    };
    let config = env.iso.dir().join(format!("netavark-{bridge}"));
    let _ = std::fs::create_dir_all(&config);
    let call = |command: &str, ns: &Path, options: &str| {
        run(
            Command::new(bin)
                .env_clear()
                .env("PATH", PATH)
                .arg("--config")
                .arg(&config)
                .arg(command)
                .arg(ns),
            options,
        )
    };
    // An anchor container keeps the bridge (and NAT rules) alive, as other containers on
    // the network would: otherwise every tear-down would delete the bridge, work that
    // no other contender does.
    let anchor = env.netns(&format!("{bridge}a"));
    let anchor_opts = netavark_options(
        "benchanchor",
        &format!("10.88.{octet}.250"),
        bridge,
        octet,
        internal,
    );
    if let Err(e) = call("setup", &anchor.path, &anchor_opts) {
        note(&format!("{name}: skipped: anchor setup: {e}"));
        return;
    }
    let c = env.netns(bridge);
    let opts = netavark_options(
        "benchcontainer",
        &format!("10.88.{octet}.2"),
        bridge,
        octet,
        internal,
    );
    let checked = trial(
        env,
        &c.ns,
        &format!("10.88.{octet}.2/24"),
        &mut || call("setup", &c.path, &opts),
        &mut || call("teardown", &c.path, &opts),
    );
    match checked {
        Ok(()) => {
            group.bench_function(name, |b| {
                b.iter(|| {
                    call("setup", &c.path, &opts).expect("netavark setup");
                    call("teardown", &c.path, &opts).expect("netavark teardown");
                })
            });
        }
        Err(e) => note(&format!("{name}: skipped: {e}")),
    }
    let _ = call("teardown", &anchor.path, &anchor_opts);
}
