//! The container's generated `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`,
//! written under `<root>/containers/<id>/etc/` and bind-mounted over the container's own
//! at start.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use container_store::write_replace;

pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Where the generated files are.
#[derive(Debug, Clone)]
pub struct EtcFiles {
    pub hosts: PathBuf,
    pub hostname: PathBuf,
    pub resolv_conf: PathBuf,
}

impl EtcFiles {
    pub fn in_dir(dir: &Path) -> EtcFiles {
        EtcFiles {
            hosts: dir.join("hosts"),
            hostname: dir.join("hostname"),
            resolv_conf: dir.join("resolv.conf"),
        }
    }

    /// `(generated file, name under /etc)` pairs.
    pub fn mounts(&self) -> [(&Path, &'static str); 3] {
        [
            (&self.hosts, "hosts"),
            (&self.hostname, "hostname"),
            (&self.resolv_conf, "resolv.conf"),
        ]
    }
}

/// `/etc/hosts`: localhost, the container's own addresses under its hostname, then the
/// caller's extra entries. A container without addresses gets its name on loopback so
/// that resolving its own hostname still works.
pub fn hosts(hostname: &str, own: &[IpAddr], extra: &[(IpAddr, String)]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    if own.is_empty() {
        out.push_str(&format!("127.0.0.1\t{hostname}\n"));
    }
    for ip in own {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    for (ip, names) in extra {
        out.push_str(&format!("{ip}\t{names}\n"));
    }
    out
}

/// `/etc/resolv.conf`: the given servers (with `search` domains: the runtime's, when
/// the servers are the networks' own); without any, the host's servers that a
/// container can reach (a loopback resolver such as systemd-resolved's 127.0.0.53 is
/// the host's own, not the container's), with the host's `search` and `options`.
pub fn resolv_conf(dns: &[IpAddr], search: &[&str], host: Option<&str>) -> String {
    let mut out = String::new();
    if !dns.is_empty() {
        if !search.is_empty() {
            out.push_str(&format!("search {}\n", search.join(" ")));
        }
        for ip in dns {
            out.push_str(&format!("nameserver {ip}\n"));
        }
        return out;
    }
    for line in host.unwrap_or("").lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
                    continue;
                };
                if !ip.is_loopback() {
                    out.push_str(&format!("nameserver {ip}\n"));
                }
            }
            Some("search" | "options") => {
                out.push_str(line.trim());
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// Writes the three files into `dir` (created if missing).
pub fn write(
    dir: &Path,
    hostname: &str,
    own: &[IpAddr],
    extra: &[(IpAddr, String)],
    dns: &[IpAddr],
    search: &[&str],
) -> Result<EtcFiles, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let files = EtcFiles::in_dir(dir);
    let host = std::fs::read_to_string(HOST_RESOLV_CONF).ok();
    let contents = [
        (&files.hosts, hosts(hostname, own, extra)),
        (&files.hostname, format!("{hostname}\n")),
        (
            &files.resolv_conf,
            resolv_conf(dns, search, host.as_deref()),
        ),
    ];
    for (path, text) in contents {
        write_replace(path, text.as_bytes(), 0o644)
            .map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(files)
}

/// Writes `hosts` and `resolv.conf` again into the files the workload has bound (an
/// interface came or went while it runs): in place, since a rename would leave the
/// container's bind mounts on the old files. A reader may see a short file for an
/// instant, as with Docker's updates of a running container's /etc/hosts.
pub fn rewrite_in_place(
    files: &EtcFiles,
    hostname: &str,
    own: &[IpAddr],
    extra: &[(IpAddr, String)],
    dns: &[IpAddr],
    search: &[&str],
) -> Result<(), String> {
    use std::io::Write;
    let host = std::fs::read_to_string(HOST_RESOLV_CONF).ok();
    for (path, text) in [
        (&files.hosts, hosts(hostname, own, extra)),
        (
            &files.resolv_conf,
            resolv_conf(dns, search, host.as_deref()),
        ),
    ] {
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("rewrite {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lists_own_addresses_then_extras() {
        let own: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        let extra = vec![("10.0.0.9".parse().unwrap(), "db db.local".to_string())];
        let text = hosts("web", &own, &extra);
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.0.0.2\tweb\nfd00::2\tweb\n10.0.0.9\tdb db.local\n"));
        assert!(!text.contains("127.0.0.1\tweb"));
    }

    #[test]
    fn hosts_without_addresses_maps_name_to_loopback() {
        assert!(hosts("solo", &[], &[]).contains("127.0.0.1\tsolo\n"));
    }

    #[test]
    fn resolv_conf_prefers_given_servers() {
        let dns: Vec<IpAddr> = vec!["1.1.1.1".parse().unwrap()];
        assert_eq!(
            resolv_conf(&dns, &[], Some("nameserver 9.9.9.9\n")),
            "nameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn resolv_conf_names_the_runtimes_domain_with_network_servers() {
        let dns: Vec<IpAddr> = vec!["10.1.0.1".parse().unwrap()];
        assert_eq!(
            resolv_conf(&dns, &["dns.container"], None),
            "search dns.container\nnameserver 10.1.0.1\n"
        );
    }

    #[test]
    fn resolv_conf_copies_host_but_not_loopback() {
        let host =
            "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch lan\noptions edns0\n";
        assert_eq!(
            resolv_conf(&[], &[], Some(host)),
            "nameserver 192.0.2.1\nsearch lan\noptions edns0\n"
        );
        assert_eq!(resolv_conf(&[], &[], Some("nameserver ::1\n")), "");
        assert_eq!(resolv_conf(&[], &[], None), "");
    }
}
