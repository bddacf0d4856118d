//! What a running container holds exclusively on the host: published host ports, net
//! devices, MAC addresses on a network. Claimed when it starts and released when it
//! stops (as Docker does), so a stopped or created container blocks nobody.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use container_protocol::network::{PortMap, PortProtocol};

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    HostPort {
        protocol: PortProtocol,
        /// `None`: every address of the host.
        ip: Option<IpAddr>,
        port: u16,
    },
    NetDevice(String),
    Mac {
        network: String,
        mac: [u8; 6],
    },
}

impl Claim {
    pub fn port(p: &PortMap) -> Claim {
        Claim::HostPort {
            protocol: p.protocol,
            ip: p.host_ip,
            port: p.host_port,
        }
    }

    fn clashes(&self, other: &Claim) -> bool {
        match (self, other) {
            (
                Claim::HostPort { protocol, ip, port },
                Claim::HostPort {
                    protocol: p2,
                    ip: ip2,
                    port: port2,
                },
            ) => protocol == p2 && port == port2 && (ip.is_none() || ip2.is_none() || ip == ip2),
            (a, b) => a == b,
        }
    }

    fn describe(&self) -> String {
        match self {
            Claim::HostPort { protocol, ip, port } => {
                let proto = match protocol {
                    PortProtocol::Tcp => "tcp",
                    PortProtocol::Udp => "udp",
                };
                match ip {
                    Some(ip) => format!("host port {ip}:{port}/{proto}"),
                    None => format!("host port {port}/{proto}"),
                }
            }
            Claim::NetDevice(d) => format!("net device {d}"),
            Claim::Mac { network, mac } => format!(
                "MAC address {} on network {network}",
                mac.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            ),
        }
    }
}

#[derive(Default)]
pub struct Claims {
    held: Mutex<HashMap<String, Vec<Claim>>>,
}

impl Claims {
    /// Claims all of `wanted` for `container`, or none: the error names the first clash
    /// and who holds it.
    pub fn claim(&self, container: &str, wanted: Vec<Claim>) -> Result<(), ApiError> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for (holder, claims) in held.iter().filter(|(h, _)| h.as_str() != container) {
            if let Some(c) = wanted.iter().find(|w| claims.iter().any(|c| c.clashes(w))) {
                return Err(ApiError::Conflict(format!(
                    "container {container}: {} is in use by container {holder}",
                    c.describe()
                )));
            }
        }
        if !wanted.is_empty() {
            held.insert(container.to_string(), wanted);
        }
        Ok(())
    }

    pub fn release(&self, container: &str) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(container);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(ip: Option<&str>, port: u16) -> Claim {
        Claim::HostPort {
            protocol: PortProtocol::Tcp,
            ip: ip.map(|i| i.parse().unwrap()),
            port,
        }
    }

    #[test]
    fn claims_clash_across_containers_only_and_go_with_release() {
        let c = Claims::default();
        c.claim("a", vec![port(None, 8080), Claim::NetDevice("nic1".into())])
            .unwrap();
        c.claim("a", vec![port(None, 8080)]).unwrap();
        let e = c
            .claim("b", vec![port(Some("127.0.0.1"), 8080)])
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("host port 127.0.0.1:8080/tcp is in use by container a"),
            "{e}"
        );
        c.claim("b", vec![port(Some("127.0.0.1"), 8081)]).unwrap();
        c.claim("c", vec![port(Some("127.0.0.2"), 8081)]).unwrap();
        c.release("a");
        c.claim("b", vec![port(None, 8080)]).unwrap();
    }
}
