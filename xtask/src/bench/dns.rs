//! `dns`: the name server of a bridge network (its network helper, as in production)
//! against aardvark-dns (podman's), both driven by dnsperf with the same query file, in
//! the same run.
//!
//! The set-up is the product's own: the apiserver, a bridge network with DNS on, and K
//! running containers with a name and an alias each, whose records the apiserver sends
//! the network's helper (`NetworkRequest::Names`). aardvark-dns gets the same records
//! in its config directory format (a file named after the network: the gateway on the
//! first line, then `ID IPV4 IPV6 NAME,ALIAS…` a container) and listens on the same
//! gateway address, on another port, with `dns.container` as its search domain. dnsperf
//! runs in the first container's network namespace (nsenter: the host's binary, the
//! container's interface), so both servers see the same source address, the one
//! path (veth, bridge, gateway) a container's queries take.
//!
//! Measured: queries per second and each query's latency (dnsperf -v) at full load
//! (a fixed window of queries outstanding), the latency again at a fixed rate both
//! servers sustain, and a lookup by name from inside a container: a small static client
//! (`dns_lookup.c`) run by `container exec`, timing one query after another.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::report::{Row, Section, Table, Target, Unit};
use super::run::container_cmd;
use super::{stats, sys, Ctx};

const NETWORK: &str = "benchdns";
const SUBNET: &str = "10.96.0.0/24";
const GATEWAY: &str = "10.96.0.1";
const OURS: &str = "container (network helper)";
const THEIRS: &str = "aardvark-dns";
/// aardvark-dns beside our server on the gateway: another port of the same address.
const AARDVARK_PORT: u16 = 5533;
/// Queries dnsperf keeps outstanding at full load, over 4 sockets.
const OUTSTANDING: &str = "64";

fn aardvark_bin() -> Option<&'static str> {
    [
        "/usr/lib/podman/aardvark-dns",
        "/usr/libexec/podman/aardvark-dns",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

/// One server under test: where dnsperf reaches it.
#[derive(Clone, Copy)]
struct Server {
    name: &'static str,
    port: u16,
}

/// User plus system CPU time of a process so far (all its threads), in ns, from
/// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks of 1/100 s).
fn cpu_ns(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its closing paren.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("/proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .context("/proc/PID/stat field")
    };
    // After the name: state is field 3, utime 14, stime 15.
    Ok((ticks(11)? + ticks(12)?) * 1e7)
}

/// What one dnsperf run reported.
struct Perf {
    qps: f64,
    lost: u64,
    codes: String,
    response_size: String,
    /// Each answered query's latency in ns (verbose runs only).
    latencies: Vec<f64>,
    /// The server's CPU time over the run, per answered query, in ns.
    cpu_per_query: f64,
}

/// The network, its containers and aardvark-dns; torn down on drop.
struct World<'a> {
    ctx: &'a Ctx,
    names: Vec<String>,
    /// The first container's workload: dnsperf runs in its network namespace.
    pid: u32,
    /// Each container's address, in `names` order.
    addresses: Vec<String>,
    aardvark_dir: PathBuf,
    /// The network's helper, our server.
    helper_pid: u32,
}

impl Drop for World<'_> {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.aardvark_dir.join("aardvark.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let mut rm = container_cmd(self.ctx, "dns");
        rm.args(["rm", "-f"]).args(&self.names);
        let _ = sys::output(&mut rm);
        let _ = sys::output(container_cmd(self.ctx, "dns").args(["system", "stop"]));
    }
}

pub fn measure(ctx: &Ctx) -> Section {
    let mut notes = ctx.notes.of("dns");
    let k = if ctx.opts.quick { 8 } else { 50 };
    let mut tables = Vec::new();
    let mut targets = Vec::new();
    if let Err(e) = measure_all(ctx, k, &mut tables, &mut targets, &mut notes) {
        notes.push(format!("not measured: {e:#}"));
    }
    Section {
        title: "Name server".into(),
        method: format!(
            "dnsperf (`-c 4 -T 1 -q {OUTSTANDING}`, UDP) in a container's network namespace \
             against two servers on the gateway of one bridge network with {k} running \
             containers, each with a name and an alias: ours, the network's helper on port \
             53 with the table the apiserver sent it (the production path), and aardvark-dns \
             on port {AARDVARK_PORT} of the same address, its config directory holding the \
             same records (search domain `dns.container` through `-f`). The same query file \
             for both: per container, A of its name and alias, bare and under \
             `dns.container`, AAAA of its name (no address: an empty answer) and PTR of its \
             address; every query is checked to answer NOERROR from both first. Runs \
             alternate between the servers. Latencies are dnsperf's per-query times (`-v`). \
             dnsperf and the kernel's share of each query run on the same two cores as the \
             server, so queries per second measure the three together; the server's own \
             work is its CPU time over each full-load run (`/proc/PID/stat`) per answer. \
             The lookup from inside a container is a static client (`xtask/src/bench/\
             dns_lookup.c`) run by `container exec`: one A query of another container's name \
             to the resolv.conf server, waiting for each answer, timed with CLOCK_MONOTONIC \
             inside the container."
        ),
        tables,
        targets,
        notes,
    }
}

fn measure_all(
    ctx: &Ctx,
    k: usize,
    tables: &mut Vec<Table>,
    targets: &mut Vec<Target>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let aardvark = aardvark_bin().context("aardvark-dns not installed (Debian aardvark-dns)")?;
    if !Path::new("/usr/bin/dnsperf").exists() {
        bail!("dnsperf not installed (Debian dnsperf)");
    }
    let rootfs = rootfs_with_client(ctx)?;
    let world = World::start(ctx, k, &rootfs)?;
    world.start_aardvark(aardvark)?;
    let queries = world.query_file()?;
    let servers = [
        Server {
            name: THEIRS,
            port: AARDVARK_PORT,
        },
        Server {
            name: OURS,
            port: 53,
        },
    ];
    for s in servers {
        let check = world.check(s, &queries)?;
        notes.push(format!(
            "{}: every query of the file answered ({}), average response {} bytes",
            s.name, check.codes, check.response_size
        ));
    }

    let quick = ctx.opts.quick;
    let (rounds, secs) = if quick { (1, 2) } else { (3, 10) };
    // Full load: qps of each run, latencies of all of them.
    let mut qps: [Vec<f64>; 2] = Default::default();
    let mut lat: [Vec<f64>; 2] = Default::default();
    let mut lost = [0u64; 2];
    let mut cpu: [Vec<f64>; 2] = Default::default();
    for round in 0..rounds {
        // Alternate who goes first: neither always runs on a warmer (or busier) machine.
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let p = world.dnsperf(servers[i], &queries, secs, None)?;
            qps[i].push(p.qps);
            lost[i] += p.lost;
            cpu[i].push(p.cpu_per_query);
            lat[i].extend(p.latencies);
        }
    }
    let med_qps = [stats::median(&qps[0]), stats::median(&qps[1])];
    let rate = ((med_qps[0].min(med_qps[1]) * 0.5) as u64).clamp(1000, 20_000);
    let mut fixed: [Vec<f64>; 2] = Default::default();
    let fixed_secs = if quick { 2 } else { 5 };
    for round in 0..rounds {
        let order: [usize; 2] = if round % 2 == 0 { [1, 0] } else { [0, 1] };
        for i in order {
            let p = world.dnsperf(servers[i], &queries, fixed_secs, Some(rate))?;
            lost[i] += p.lost;
            fixed[i].extend(p.latencies);
        }
    }

    let per_query = |v: &[f64]| v.iter().map(|q| 1e9 / q).collect::<Vec<f64>>();
    tables.push(Table {
        title: format!(
            "Time per query at full load (1 / queries per second; {rounds} runs of {secs} s each):"
        ),
        rows: servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Row::from_samples(s.name, Unit::Nanos, &per_query(&qps[i])).extra(format!(
                    "{:.0} queries/s (median of the runs), {} lost",
                    med_qps[i], lost[i]
                ))
            })
            .collect(),
        baseline: Some(THEIRS.into()),
    });
    tables.push(Table {
        title: "The server's CPU time per answered query at full load (user + system, all its threads, from /proc):".into(),
        rows: servers
            .iter()
            .enumerate()
            .map(|(i, s)| Row::from_samples(s.name, Unit::Nanos, &cpu[i]))
            .collect(),
        baseline: Some(THEIRS.into()),
    });
    let p99 = |v: &[f64]| stats::percentile(v, 99.0);
    let latency_rows = |lat: &[Vec<f64>; 2]| -> Vec<Row> {
        servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Row::single(format!("{} p99", s.name), Unit::Nanos, p99(&lat[i])).extra(format!(
                    "median {}, p90 {}, {} answers",
                    Unit::Nanos.human(stats::median(&lat[i])),
                    Unit::Nanos.human(stats::percentile(&lat[i], 90.0)),
                    lat[i].len()
                ))
            })
            .collect()
    };
    tables.push(Table {
        title: "p99 latency of a query at full load:".into(),
        rows: latency_rows(&lat),
        baseline: Some(format!("{THEIRS} p99")),
    });
    tables.push(Table {
        title: format!(
            "p99 latency of a query at a fixed {rate} queries/s (`-Q`), both keeping up:"
        ),
        rows: latency_rows(&fixed),
        baseline: Some(format!("{THEIRS} p99")),
    });

    let n = ctx.opts.iterations(1000);
    let target_name = format!("{}.dns.container", world.names[k - 1]);
    let mut lookup_rows = Vec::new();
    let mut ours_lookup = None;
    for s in servers {
        match world.lookups(&target_name, n, s.port) {
            Ok(samples) => {
                if s.name == OURS {
                    ours_lookup = Some(stats::median(&samples));
                }
                lookup_rows.push(Row::from_samples(s.name, Unit::Nanos, &samples));
            }
            Err(e) => notes.push(format!("{}: lookups from a container: {e:#}", s.name)),
        }
    }
    tables.push(Table {
        title: format!(
            "A lookup by name from inside a container ({n} lookups of `{target_name}`, one after another):"
        ),
        rows: lookup_rows,
        baseline: Some(THEIRS.into()),
    });

    let ratio = med_qps[1] / med_qps[0];
    targets.push(Target {
        what: "at least 2× aardvark-dns's queries/s".into(),
        measured: format!(
            "{ratio:.2} × aardvark-dns ({:.0} against {:.0} queries/s)",
            med_qps[1], med_qps[0]
        ),
        met: Some(ratio.is_finite() && ratio >= 2.0),
    });
    targets.push(Target::ratio_at_most(
        "p99 no worse than aardvark-dns's, at full load",
        Some(p99(&lat[1])),
        Some(p99(&lat[0])),
        1.0,
        "aardvark-dns",
    ));
    targets.push(Target::ratio_at_most(
        &format!("p99 no worse than aardvark-dns's, at {rate} queries/s"),
        Some(p99(&fixed[1])),
        Some(p99(&fixed[0])),
        1.0,
        "aardvark-dns",
    ));
    targets.push(Target {
        what: "a lookup by name from inside a container under 1 ms median".into(),
        measured: ours_lookup
            .map(|m| Unit::Nanos.human(m))
            .unwrap_or_else(|| "not measured".into()),
        met: ours_lookup.map(|m| m < 1e6),
    });
    Ok(())
}

/// The shared busybox root filesystem, with the lookup client (static) in its /bin.
fn rootfs_with_client(ctx: &Ctx) -> Result<PathBuf> {
    let rootfs = sys::rootfs(&ctx.state)?;
    let src = crate::workspace().join("xtask/src/bench/dns_lookup.c");
    let bin = rootfs.join("bin/dns-lookup");
    sys::output(
        Command::new("gcc")
            .args(["-static", "-O2", "-o"])
            .arg(&bin)
            .arg(&src),
    )
    .context("build the lookup client (gcc, libc6-dev)")?;
    Ok(rootfs)
}

impl<'a> World<'a> {
    fn start(ctx: &'a Ctx, k: usize, rootfs: &Path) -> Result<World<'a>> {
        let cli = || container_cmd(ctx, "dns");
        sys::output(cli().args(["system", "start"]))?;
        let mut world = World {
            ctx,
            names: Vec::new(),
            pid: 0,
            addresses: Vec::new(),
            aardvark_dir: ctx.state.join("aardvark"),
            helper_pid: 0,
        };
        sys::output(cli().args(["network", "create", "--subnet", SUBNET, NETWORK]))?;
        for i in 0..k {
            let name = format!("dns-{i}");
            sys::output(
                cli()
                    .args(["run", "-d", "--network", NETWORK, "--name", &name])
                    .args(["--network-alias", &format!("alias-{i}")])
                    .arg("--rootfs")
                    .arg(rootfs)
                    .args(["--", "sleep", "100000"]),
            )?;
            world.names.push(name);
        }
        let out = sys::output(cli().args(["ls", "--format", "json"]))?;
        let list: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("`container ls --format json`")?;
        for name in &world.names {
            let c = list
                .as_array()
                .and_then(|a| a.iter().find(|c| c["id"] == name.as_str()))
                .with_context(|| format!("{name} is not in `container ls`"))?;
            let ip = c["addresses"][0]
                .as_str()
                .with_context(|| format!("{name} has no address: {c}"))?;
            world.addresses.push(ip.to_string());
            if world.pid == 0 {
                world.pid = c["pid"]
                    .as_u64()
                    .with_context(|| format!("{name} has no pid: {c}"))?
                    as u32;
            }
        }
        let out = sys::output(cli().args(["system", "status", "--format", "json"]))?;
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("`container system status`")?;
        world.helper_pid = status["helpers"]
            .as_array()
            .and_then(|h| h.iter().find(|h| h["id"] == NETWORK))
            .and_then(|h| h["pid"].as_u64())
            .with_context(|| format!("no helper of {NETWORK} in {status}"))?
            as u32;
        Ok(world)
    }

    fn server_pid(&self, s: Server) -> Result<u32> {
        if s.port == AARDVARK_PORT {
            let pid = std::fs::read_to_string(self.aardvark_dir.join("aardvark.pid"))?;
            pid.trim().parse().context("aardvark.pid")
        } else {
            Ok(self.helper_pid)
        }
    }

    /// The same records in aardvark-dns's format; it daemonizes and writes its pid file.
    fn start_aardvark(&self, bin: &str) -> Result<()> {
        std::fs::create_dir_all(&self.aardvark_dir)?;
        let mut config = format!("{GATEWAY}\n");
        for (i, (name, ip)) in self.names.iter().zip(&self.addresses).enumerate() {
            // ID, IPv4, IPv6 (none: empty between two spaces), names.
            config.push_str(&format!("{name} {ip}  {name},alias-{i}\n"));
        }
        std::fs::write(self.aardvark_dir.join(NETWORK), config)?;
        sys::output(
            Command::new(bin)
                .arg("--config")
                .arg(&self.aardvark_dir)
                .args(["-p", &AARDVARK_PORT.to_string()])
                .args(["-f", ".dns.container", "run"]),
        )?;
        Ok(())
    }

    fn query_file(&self) -> Result<PathBuf> {
        let mut text = String::new();
        for (i, (name, ip)) in self.names.iter().zip(&self.addresses).enumerate() {
            let ptr: Vec<&str> = ip.split('.').rev().collect();
            text.push_str(&format!(
                "{name} A\nalias-{i}.dns.container A\n{name}.dns.container A\nalias-{i} A\n\
                 {name} AAAA\n{}.in-addr.arpa PTR\n",
                ptr.join(".")
            ));
        }
        let path = self.ctx.state.join("dns-queries.txt");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    fn dnsperf(&self, s: Server, queries: &Path, secs: u64, rate: Option<u64>) -> Result<Perf> {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/proc/{}/ns/net", self.pid))
            .args(["--", "dnsperf", "-s", GATEWAY, "-p", &s.port.to_string()])
            .arg("-d")
            .arg(queries)
            .args(["-c", "4", "-T", "1", "-q", OUTSTANDING, "-t", "2", "-v"])
            .args(["-l", &secs.to_string()]);
        if let Some(r) = rate {
            cmd.args(["-Q", &r.to_string()]);
        }
        let pid = self.server_pid(s)?;
        let before = cpu_ns(pid)?;
        let out = sys::output(&mut cmd).with_context(|| format!("dnsperf against {}", s.name))?;
        let cpu = cpu_ns(pid)? - before;
        let mut p = perf(&String::from_utf8_lossy(&out.stdout))?;
        p.cpu_per_query = cpu / p.latencies.len().max(1) as f64;
        Ok(p)
    }

    /// Every query of the file once, answered NOERROR (retried while the server starts).
    fn check(&self, s: Server, queries: &Path) -> Result<Perf> {
        let mut last = String::new();
        for _ in 0..20 {
            let mut cmd = Command::new("nsenter");
            cmd.arg(format!("--net=/proc/{}/ns/net", self.pid))
                .args(["--", "dnsperf", "-s", GATEWAY, "-p", &s.port.to_string()])
                .arg("-d")
                .arg(queries)
                .args(["-n", "1", "-t", "1", "-v"]);
            let out = sys::output(&mut cmd)?;
            let p = perf(&String::from_utf8_lossy(&out.stdout))?;
            let all = self.names.len() * 6;
            if p.lost == 0
                && p.latencies.len() == all
                && p.codes.starts_with("NOERROR")
                && !p.codes.contains(',')
            {
                return Ok(p);
            }
            last = format!(
                "{} lost, {} answered, codes {}",
                p.lost,
                p.latencies.len(),
                p.codes
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        bail!(
            "{}: the query file is not answered NOERROR throughout: {last}",
            s.name
        )
    }

    fn lookups(&self, name: &str, n: usize, port: u16) -> Result<Vec<f64>> {
        let out = sys::output(container_cmd(self.ctx, "dns").args([
            "exec",
            &self.names[0],
            "/bin/dns-lookup",
            name,
            &n.to_string(),
            &port.to_string(),
        ]))?;
        let samples: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if samples.len() != n {
            bail!("{} lookups timed, {n} asked", samples.len());
        }
        Ok(samples)
    }
}

/// dnsperf's summary, and with `-v` each answer's latency (`> NOERROR name A 0.000123`;
/// a lost query is `> T name A`).
fn perf(text: &str) -> Result<Perf> {
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|v| v.trim().to_string())
    };
    let qps: f64 = field("Queries per second:")
        .and_then(|v| v.parse().ok())
        .with_context(|| {
            format!(
                "no qps in dnsperf's output: {}",
                text.lines().take(30).collect::<Vec<_>>().join(" | ")
            )
        })?;
    let lost: u64 = field("Queries lost:")
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let latencies = text
        .lines()
        .filter_map(|l| l.strip_prefix("> "))
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|s| s.parse::<f64>().ok())
        .map(|s| (s * 1e9).round())
        .collect();
    Ok(Perf {
        qps,
        lost,
        codes: field("Response codes:").unwrap_or_default(),
        response_size: field("Average packet size:")
            .and_then(|v| v.split("response").nth(1).map(|r| r.trim().to_string()))
            .unwrap_or_default(),
        latencies,
        cpu_per_query: f64::NAN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnsperf_output_is_read() {
        let text = "[Status] Sending queries\n> NOERROR dns-0 A 0.000123\n> T dns-1 A\n\
                    > NXDOMAIN x A 0.001000\n\nStatistics:\n\n  Queries sent:         3\n\
                    \x20 Queries lost:         1 (33.33%)\n\n\
                    \x20 Response codes:       NOERROR 1 (50.00%), NXDOMAIN 1 (50.00%)\n\
                    \x20 Average packet size:  request 27, response 41\n\
                    \x20 Queries per second:   18045.694638\n";
        let p = perf(text).unwrap();
        assert_eq!(p.qps, 18045.694638);
        assert_eq!(p.lost, 1);
        assert_eq!(p.response_size, "41");
        assert!(p.codes.starts_with("NOERROR 1"));
        assert_eq!(p.latencies, vec![123_000.0, 1_000_000.0]);
        assert!(perf("no summary").is_err());
    }

    #[test]
    fn own_cpu_time_is_read() {
        let pid = std::process::id();
        let a = cpu_ns(pid).unwrap();
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_ns(pid).unwrap() >= a);
    }
}
