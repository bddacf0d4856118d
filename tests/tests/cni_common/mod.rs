//! Calling a CNI plugin exactly as libcni does: a fresh environment with the `CNI_*`
//! variables, the network configuration on stdin, the result or error on stdout.

#![allow(dead_code)]

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

pub const VERSIONS: &[&str] = &["0.3.1", "0.4.0", "1.0.0", "1.1.0"];
pub const REFERENCE: &str = "/usr/lib/cni";

pub fn ours() -> PathBuf {
    container_testkit::bin("container-cni")
}

/// What a plugin answered.
#[derive(Debug)]
pub struct Reply {
    pub ok: bool,
    pub stdout: Value,
    pub raw: String,
    pub stderr: String,
}

impl Reply {
    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(self.ok, "plugin failed: {} {}", self.raw, self.stderr);
        self.stdout
    }

    /// The spec's error object: `code`, `msg`, maybe `details`, and nothing else.
    #[track_caller]
    pub fn error(self, code: u64) -> Value {
        assert!(!self.ok, "plugin succeeded: {}", self.raw);
        let e = &self.stdout;
        assert_eq!(e["code"], code, "{e}");
        assert!(e["msg"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
        assert!(e["cniVersion"].is_string(), "{e}");
        for k in e.as_object().expect("error object").keys() {
            assert!(
                ["cniVersion", "code", "msg", "details"].contains(&k.as_str()),
                "unexpected key {k} in {e}"
            );
        }
        self.stdout
    }
}

/// One call.
#[derive(Clone, Debug)]
pub struct Call<'a> {
    pub command: &'a str,
    pub container: &'a str,
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
    pub args: Option<&'a str>,
}

impl<'a> Call<'a> {
    pub fn new(command: &'a str, container: &'a str, netns: Option<&'a Path>) -> Call<'a> {
        Call {
            command,
            container,
            netns,
            ifname: "eth0",
            args: None,
        }
    }
}

pub fn command(plugin: &Path, call: &Call<'_>) -> Command {
    let mut cmd = Command::new(plugin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", call.container)
        .env(
            "CNI_NETNS",
            call.netns
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        )
        .env("CNI_IFNAME", call.ifname)
        .env(
            "CNI_PATH",
            format!("{}:{REFERENCE}", container_testkit::bin_dir().display()),
        );
    if let Some(args) = call.args {
        cmd.env("CNI_ARGS", args);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

pub fn run_raw(mut cmd: Command, stdin: &[u8]) -> Reply {
    let mut child = cmd.spawn().expect("spawn plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("plugin output");
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    Reply {
        ok: out.status.success(),
        stdout: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn call(plugin: &Path, call: &Call<'_>, conf: &Value) -> Reply {
    run_raw(command(plugin, call), conf.to_string().as_bytes())
}

/// The network configuration libcni hands one plugin of a conflist: the plugin's own
/// keys plus the list's `cniVersion` and `name`.
pub fn plugin_conf(
    version: &str,
    name: &str,
    data_dir: &Path,
    bridge: &str,
    subnet: &str,
) -> Value {
    json!({
        "cniVersion": version,
        "name": name,
        "type": "container-cni",
        "bridge": bridge,
        "isGateway": true,
        "isDefaultGateway": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": subnet}]],
            "dataDir": data_dir,
        }
    })
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn cidr(s: &str) -> IpAddr {
    let (ip, prefix) = s
        .split_once('/')
        .unwrap_or_else(|| panic!("{s} is no CIDR"));
    let ip: IpAddr = ip.parse().unwrap_or_else(|_| panic!("{s}: bad address"));
    let prefix: u8 = prefix.parse().unwrap_or_else(|_| panic!("{s}: bad prefix"));
    assert!(prefix <= if ip.is_ipv4() { 32 } else { 128 }, "{s}");
    ip
}

fn keys_within(v: &Value, allowed: &[&str]) {
    for k in v
        .as_object()
        .unwrap_or_else(|| panic!("{v} is no object"))
        .keys()
    {
        assert!(allowed.contains(&k.as_str()), "unexpected key {k} in {v}");
    }
}

/// A result in the shape SPEC.md gives for `version` (and, before 1.0.0, the shape of
/// the 0.3.1/0.4.0 spec: addresses carry their family in `version`).
#[track_caller]
pub fn check_result_shape(r: &Value, version: &str) {
    keys_within(r, &["cniVersion", "interfaces", "ips", "routes", "dns"]);
    assert_eq!(r["cniVersion"], version, "{r}");
    let v11 = version == "1.1.0";
    let old = version.starts_with("0.");
    let interfaces = r["interfaces"].as_array().expect("interfaces");
    for i in interfaces {
        let mut allowed = vec!["name", "mac", "sandbox"];
        if v11 {
            allowed.extend(["mtu", "socketPath", "pciID"]);
        }
        keys_within(i, &allowed);
        assert!(i["name"].as_str().is_some_and(|n| !n.is_empty()), "{i}");
        assert!(i["mac"].as_str().is_some_and(is_mac), "{i}");
        if let Some(s) = i.get("sandbox") {
            assert!(s.is_string(), "{i}");
        }
        if let Some(m) = i.get("mtu") {
            assert!(m.as_u64().is_some_and(|m| m > 0), "{i}");
        }
    }
    for ip in r["ips"].as_array().expect("ips") {
        let mut allowed = vec!["address", "gateway", "interface"];
        if old {
            allowed.push("version");
        }
        keys_within(ip, &allowed);
        let addr = cidr(ip["address"].as_str().expect("address"));
        if old {
            let family = if addr.is_ipv4() { "4" } else { "6" };
            assert_eq!(ip["version"], family, "{ip}");
        }
        if let Some(gw) = ip.get("gateway") {
            let gw: IpAddr = gw.as_str().expect("gateway").parse().expect("gateway ip");
            assert_eq!(gw.is_ipv4(), addr.is_ipv4(), "{ip}");
        }
        if let Some(i) = ip.get("interface") {
            let i = i.as_u64().expect("interface index") as usize;
            assert!(i < interfaces.len(), "{ip}");
            assert!(
                interfaces[i].get("sandbox").is_some(),
                "points at a host interface: {ip}"
            );
        }
    }
    if let Some(routes) = r.get("routes") {
        for route in routes.as_array().expect("routes") {
            let mut allowed = vec!["dst", "gw"];
            if v11 {
                allowed.extend(["mtu", "advmss", "priority", "table", "scope"]);
            }
            keys_within(route, &allowed);
            cidr(route["dst"].as_str().expect("dst"));
            if let Some(gw) = route.get("gw") {
                gw.as_str().expect("gw").parse::<IpAddr>().expect("gw ip");
            }
        }
    }
    if let Some(dns) = r.get("dns") {
        keys_within(dns, &["nameservers", "domain", "search", "options"]);
    }
}

/// The reservation files of a network's directory: `ip -> (container, ifname)`.
pub fn reservations(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<IpAddr>().is_err() {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let holder = text.split("\r\n").next().unwrap_or("").to_string();
        out.push((name, holder));
    }
    out.sort();
    out
}

/// `ip -j` run inside the netns bound at `ns`.
pub fn ip_in(ns: &Path, args: &[&str]) -> Value {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["ip", "-j"])
        .args(args)
        .output()
        .expect("nsenter ip");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Names of the links in the netns bound at `ns`.
pub fn links_in(ns: &Path) -> Vec<String> {
    names(&ip_in(ns, &["link", "show"]))
}

pub fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["ifname"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Host links this plugin made (`cni` + 12 hex digits).
pub fn our_host_ends() -> Vec<String> {
    names(&container_tests::ip_json(&["link", "show"]))
        .into_iter()
        .filter(|n| n.len() == 15 && n.starts_with("cni"))
        .collect()
}

/// A network namespace bound at `<dir>/netns/<name>`, as a runtime makes one.
pub fn netns(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join("netns").join(name);
    container_netlink::NetNs::create_bound(&path).expect("create netns");
    path
}
