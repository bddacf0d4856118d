//! Results (SPEC.md, "Success"), in the shape of the config's version, and `prevResult`:
//! checked to be of the config's version, passed on with this plugin's part added.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{json, Map, Value};

use crate::conf::Route;
use crate::error::{CniError, DECODE, INCOMPATIBLE_VERSION};
use crate::version::Version;

#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: Option<u32>,
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IpConfig {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    /// Index into this result's interfaces.
    pub interface: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
}

fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// This plugin's result on top of `prev` (which the caller checked with [`check_prev`]):
/// its interfaces, addresses and routes appended, the addresses' interface indexes moved
/// past the ones already there.
pub fn render(out: &Outcome, version: Version, prev: Option<&Value>, dns: Option<&Value>) -> Value {
    let mut result = match prev {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    result.insert("cniVersion".into(), json!(version.as_str()));
    let array = |r: &mut Map<String, Value>, k: &str| -> Vec<Value> {
        match r.remove(k) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        }
    };
    let mut interfaces = array(&mut result, "interfaces");
    let offset = interfaces.len();
    for i in &out.interfaces {
        let mut v = json!({"name": i.name, "mac": mac(&i.mac)});
        if let Some(sandbox) = &i.sandbox {
            v["sandbox"] = json!(sandbox);
        }
        if let (Some(mtu), true) = (i.mtu, version >= Version::V110) {
            v["mtu"] = json!(mtu);
        }
        interfaces.push(v);
    }
    let mut ips = array(&mut result, "ips");
    for ip in &out.ips {
        let mut v = json!({"address": ip.address.to_string(), "interface": ip.interface + offset});
        if let Some(gw) = ip.gateway {
            v["gateway"] = json!(gw.to_string());
        }
        if version.ips_carry_version() {
            v["version"] = json!(if ip.address.addr().is_ipv4() {
                "4"
            } else {
                "6"
            });
        }
        ips.push(v);
    }
    let mut routes = array(&mut result, "routes");
    for r in &out.routes {
        let mut v = json!({"dst": r.dst.to_string()});
        if let Some(gw) = r.gw {
            v["gw"] = json!(gw.to_string());
        }
        routes.push(v);
    }
    result.insert("interfaces".into(), Value::Array(interfaces));
    result.insert("ips".into(), Value::Array(ips));
    if !routes.is_empty() {
        result.insert("routes".into(), Value::Array(routes));
    }
    if let Some(dns) = dns {
        result.entry("dns").or_insert_with(|| dns.clone());
    }
    result.entry("dns").or_insert_with(|| json!({}));
    Value::Object(result)
}

/// What CHECK compares: `prevResult`'s addresses on the container's interface.
#[derive(Debug)]
pub struct Prev {
    pub ips: Vec<(IpNet, Option<String>)>,
}

/// Checks that `prev` is a result of the config's `version` and reads it.
pub fn check_prev(prev: &Value, version: Version) -> Result<Prev, CniError> {
    let bad = |why: String| CniError::new(DECODE, format!("prevResult is not a CNI result: {why}"));
    let Value::Object(m) = prev else {
        return Err(bad("not an object".into()));
    };
    match m.get("cniVersion") {
        Some(Value::String(v)) if v == version.as_str() => {}
        Some(Value::String(v)) => {
            return Err(CniError::new(
                INCOMPATIBLE_VERSION,
                format!(
                "prevResult is cniVersion {v}, the configuration {}: the runtime must convert it",
                version.as_str()
            ),
            ))
        }
        Some(_) => return Err(bad("cniVersion is not a string".into())),
        // libcni writes it; a hand-made chain may not.
        None => {}
    }
    let interfaces: Vec<Option<String>> = match m.get("interfaces") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|i| i.get("name").and_then(Value::as_str).map(str::to_string))
            .collect(),
        Some(_) => return Err(bad("interfaces is not an array".into())),
    };
    let mut ips = Vec::new();
    match m.get("ips") {
        None => {}
        Some(Value::Array(a)) => {
            for (n, ip) in a.iter().enumerate() {
                let has_version = ip.get("version").is_some();
                if has_version != version.ips_carry_version() {
                    return Err(CniError::new(
                        INCOMPATIBLE_VERSION,
                        format!(
                            "prevResult.ips[{n}] is in the shape of another version than {} (\"version\" {})",
                            version.as_str(),
                            if has_version { "present" } else { "missing" }
                        ),
                    ));
                }
                let address: IpNet = ip
                    .get("address")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad(format!("ips[{n}].address is not an address/prefix")))?;
                let iface = match ip.get("interface") {
                    None => None,
                    Some(i) => {
                        let i = i
                            .as_u64()
                            .ok_or_else(|| bad(format!("ips[{n}].interface is not an index")))?;
                        let name = usize::try_from(i)
                            .ok()
                            .and_then(|i| interfaces.get(i).cloned())
                            .ok_or_else(|| {
                                bad(format!("ips[{n}].interface {i} names no interface"))
                            })?;
                        name
                    }
                };
                ips.push((address, iface));
            }
        }
        Some(_) => return Err(bad("ips is not an array".into())),
    }
    Ok(Prev { ips })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> Outcome {
        Outcome {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: [2, 0, 0, 0, 0, 1],
                mtu: Some(1500),
                sandbox: Some("/run/netns/x".into()),
            }],
            ips: vec![IpConfig {
                address: "10.0.0.2/24".parse().unwrap(),
                gateway: Some("10.0.0.1".parse().unwrap()),
                interface: 0,
            }],
            routes: vec![],
        }
    }

    #[test]
    fn shapes_follow_the_version() {
        let old = render(&outcome(), Version::V040, None, None);
        assert_eq!(old["ips"][0]["version"], "4");
        assert!(old["interfaces"][0].get("mtu").is_none());
        let new = render(&outcome(), Version::V110, None, None);
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["interfaces"][0]["mtu"], 1500);
        assert!(check_prev(&new, Version::V110).is_ok());
        assert_eq!(
            check_prev(&new, Version::V100).unwrap_err().code,
            INCOMPATIBLE_VERSION
        );
        let mut unversioned = old.clone();
        unversioned.as_object_mut().unwrap().remove("cniVersion");
        assert_eq!(
            check_prev(&unversioned, Version::V100).unwrap_err().code,
            INCOMPATIBLE_VERSION
        );
    }

    #[test]
    fn a_prev_result_is_extended_not_replaced() {
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/x"}],
            "ips": [{"address": "127.0.0.1/8", "interface": 0}],
            "dns": {"nameservers": ["10.0.0.10"]},
        });
        let r = render(&outcome(), Version::V100, Some(&prev), None);
        assert_eq!(r["interfaces"].as_array().unwrap().len(), 2);
        assert_eq!(r["ips"][1]["interface"], 1);
        assert_eq!(r["dns"]["nameservers"][0], "10.0.0.10");
    }
}
