//! The network configuration on stdin: the reference `bridge` plugin's keys and an
//! `ipam` section in host-local's shape. Keys other plugins or libcni add are ignored, as
//! the reference plugins ignore them.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use container_ipam::RangeSet;
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{CniError, INVALID_CONFIG, UNSUPPORTED_FIELD};
use crate::version::Version;

/// host-local's default `dataDir`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";
/// The reference bridge plugin's default bridge name.
pub const DEFAULT_BRIDGE: &str = "cni0";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    name: Option<String>,
    bridge: Option<String>,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    is_default_gateway: bool,
    #[serde(default)]
    ip_masq: bool,
    #[serde(default)]
    hairpin_mode: bool,
    #[serde(default)]
    promisc_mode: bool,
    mtu: Option<u32>,
    vlan: Option<u32>,
    vlan_trunk: Option<Value>,
    #[serde(rename = "macspoofchk")]
    mac_spoof_chk: Option<bool>,
    ipam: Option<RawIpam>,
    dns: Option<Value>,
    prev_result: Option<Value>,
    #[serde(default)]
    runtime_config: RuntimeConfig,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
    #[serde(rename = "cni.dev/attachments")]
    attachments: Option<Vec<Attachment>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    #[serde(rename = "type")]
    kind: Option<String>,
    ranges: Option<Vec<Vec<RawRange>>>,
    // host-local's older single-range form.
    subnet: Option<IpNet>,
    range_start: Option<IpAddr>,
    range_end: Option<IpAddr>,
    gateway: Option<IpAddr>,
    #[serde(default)]
    routes: Vec<Route>,
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRange {
    subnet: IpNet,
    range_start: Option<IpAddr>,
    range_end: Option<IpAddr>,
    gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Default, Deserialize)]
struct RuntimeConfig {
    /// The `ips` capability: static addresses, `10.1.0.5/24` or bare.
    #[serde(default)]
    ips: Vec<String>,
    /// The `mac` capability.
    mac: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// A configuration checked whole: what ADD, DEL, CHECK, STATUS and GC act on.
#[derive(Debug)]
pub struct NetConf {
    pub version: Version,
    pub name: String,
    pub bridge: String,
    pub is_gateway: bool,
    pub is_default_gateway: bool,
    pub ip_masq: bool,
    pub hairpin: bool,
    pub promisc: bool,
    pub mtu: Option<u32>,
    pub ranges: Vec<RangeSet>,
    pub routes: Vec<Route>,
    pub data_dir: PathBuf,
    pub dns: Option<Value>,
    pub prev_result: Option<Value>,
    pub static_ips: Vec<IpAddr>,
    pub mac: Option<[u8; 6]>,
    /// GC's list; `None` when neither key was sent.
    pub valid_attachments: Option<HashSet<Attachment>>,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(INVALID_CONFIG, msg)
}

fn unsupported(msg: impl Into<String>) -> CniError {
    CniError::new(UNSUPPORTED_FIELD, msg)
}

impl NetConf {
    pub fn dir(&self) -> PathBuf {
        self.data_dir.join(&self.name)
    }

    /// Builds from the decoded stdin; `version` was checked by the caller.
    pub fn from_value(v: Value, version: Version) -> Result<NetConf, CniError> {
        let raw: Raw = serde_json::from_value(v)
            .map_err(|e| invalid("network configuration is malformed").details(e.to_string()))?;
        let name = raw
            .name
            .ok_or_else(|| invalid("network configuration has no \"name\""))?;
        container_ipam::validate_network_name(&name).map_err(|e| {
            invalid(format!(
                "network name {name:?} cannot name an IPAM directory"
            ))
            .details(e.to_string())
        })?;
        if raw.vlan.is_some_and(|v| v != 0) || raw.vlan_trunk.is_some() {
            return Err(unsupported(
                "\"vlan\" and \"vlanTrunk\" are not supported: this kernel has no 802.1Q (8021q) support",
            ));
        }
        if raw.mac_spoof_chk == Some(true) {
            return Err(unsupported("\"macspoofchk\" is not supported"));
        }
        let bridge = raw.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.into());
        container_netlink::valid_ifname(&bridge)
            .map_err(|e| invalid("\"bridge\" is not an interface name").details(e.to_string()))?;
        if raw.mtu == Some(0) {
            return Err(invalid("\"mtu\" must be positive"));
        }
        let ipam = raw
            .ipam
            .ok_or_else(|| invalid("network configuration has no \"ipam\" section"))?;
        match ipam.kind.as_deref() {
            None | Some("host-local") | Some("container-cni") => {}
            Some(other) => {
                return Err(unsupported(format!(
                    "ipam type {other:?}: container-cni does its own IPAM, in host-local's shape (type \"host-local\")"
                )))
            }
        }
        let mut ranges = Vec::new();
        if let Some(sets) = ipam.ranges {
            for (i, set) in sets.into_iter().enumerate() {
                let mut set = set.into_iter();
                let Some(r) = set.next() else {
                    return Err(invalid(format!("ipam.ranges[{i}] is empty")));
                };
                if set.next().is_some() {
                    return Err(unsupported(format!(
                        "ipam.ranges[{i}] holds more than one range; container-cni takes one range per range set"
                    )));
                }
                ranges.push(range_set(r.subnet, r.range_start, r.range_end, r.gateway));
            }
        }
        if let Some(subnet) = ipam.subnet {
            ranges.push(range_set(
                subnet,
                ipam.range_start,
                ipam.range_end,
                ipam.gateway,
            ));
        }
        if ranges.is_empty() {
            return Err(invalid("ipam has no \"ranges\" and no \"subnet\""));
        }
        let mut static_ips = Vec::new();
        for ip in &raw.runtime_config.ips {
            let addr = ip.split('/').next().unwrap_or(ip);
            static_ips
                .push(addr.parse().map_err(|_| {
                    invalid(format!("runtimeConfig.ips: {ip:?} is not an address"))
                })?);
        }
        let mac = match &raw.runtime_config.mac {
            Some(m) => Some(
                crate::env::parse_mac(m)
                    .ok_or_else(|| invalid(format!("runtimeConfig.mac: {m:?} is not a MAC")))?,
            ),
            None => None,
        };
        let valid_attachments = raw
            .valid_attachments
            .or(raw.attachments)
            .map(|list| list.into_iter().collect());
        Ok(NetConf {
            version,
            name,
            bridge,
            // The reference plugin: a default gateway implies a gateway.
            is_gateway: raw.is_gateway || raw.is_default_gateway,
            is_default_gateway: raw.is_default_gateway,
            ip_masq: raw.ip_masq,
            hairpin: raw.hairpin_mode,
            promisc: raw.promisc_mode,
            mtu: raw.mtu,
            ranges,
            routes: ipam.routes,
            data_dir: ipam.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            dns: raw.dns,
            prev_result: raw.prev_result,
            static_ips,
            mac,
            valid_attachments,
        })
    }
}

fn range_set(
    subnet: IpNet,
    start: Option<IpAddr>,
    end: Option<IpAddr>,
    gateway: Option<IpAddr>,
) -> RangeSet {
    // host-local takes "10.1.0.7/24" as the network 10.1.0.0/24.
    RangeSet {
        subnet: subnet.trunc(),
        range_start: start,
        range_end: end,
        gateway,
    }
}
