//! Reading a CNI result (spec 0.3.0 and later: `interfaces`, `ips`, `routes`, `dns`).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use container_protocol::network::RouteSpec;

#[derive(Debug, Default, Deserialize)]
struct Raw {
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<Ip>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

#[derive(Debug, Deserialize)]
struct Interface {
    #[serde(default)]
    name: String,
    #[serde(default)]
    mac: String,
    #[serde(default)]
    sandbox: String,
}

#[derive(Debug, Deserialize)]
struct Ip {
    address: String,
    #[serde(default)]
    gateway: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Route {
    dst: String,
    #[serde(default)]
    gw: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Dns {
    #[serde(default)]
    nameservers: Vec<String>,
}

/// What an allocation takes from a CNI result.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub addresses: Vec<IpNet>,
    pub gateways: Vec<IpAddr>,
    pub routes: Vec<RouteSpec>,
    pub mac: Option<[u8; 6]>,
    pub dns: Vec<IpAddr>,
}

/// Parses what it understands and skips entries it cannot read: the raw result travels
/// alongside for anything this misses.
pub fn parse(result: &Value, ifname: &str) -> Result<Parsed, String> {
    let raw: Raw = serde_json::from_value(result.clone()).map_err(|e| e.to_string())?;
    let mut out = Parsed::default();
    for ip in &raw.ips {
        let address: IpNet = ip
            .address
            .parse()
            .map_err(|_| format!("ips: address {:?} is not a CIDR", ip.address))?;
        out.addresses.push(address);
        if let Some(gw) = ip.gateway.as_deref().and_then(|g| g.parse().ok()) {
            out.gateways.push(gw);
        }
    }
    for route in &raw.routes {
        let Ok(dest) = route.dst.parse::<IpNet>() else {
            continue;
        };
        out.routes.push(RouteSpec {
            dest,
            gateway: route.gw.as_deref().and_then(|g| g.parse().ok()),
        });
    }
    // The container's interface is the one inside a sandbox, preferably by its name.
    let inside = |i: &&Interface| !i.sandbox.is_empty();
    let iface = raw
        .interfaces
        .iter()
        .filter(inside)
        .find(|i| i.name == ifname)
        .or_else(|| raw.interfaces.iter().find(inside));
    out.mac = iface.and_then(|i| parse_mac(&i.mac));
    out.dns = raw
        .dns
        .nameservers
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    Ok(out)
}

/// Just the addresses, for reporting what a cached result holds.
pub fn addresses(result: &Value) -> Vec<IpAddr> {
    parse(result, "")
        .map(|p| p.addresses.iter().map(IpNet::addr).collect())
        .unwrap_or_default()
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bridge_result() {
        let v: Value = serde_json::from_str(
            r#"{"cniVersion":"1.0.0",
               "interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:00"},
                             {"name":"veth1","mac":"aa:bb:cc:dd:ee:01"},
                             {"name":"eth0","mac":"aa:bb:cc:dd:ee:02","sandbox":"/run/netns/x"}],
               "ips":[{"interface":2,"address":"10.22.0.2/16","gateway":"10.22.0.1"}],
               "routes":[{"dst":"0.0.0.0/0"}],
               "dns":{"nameservers":["10.0.0.53"]}}"#,
        )
        .unwrap();
        let p = parse(&v, "eth0").unwrap();
        assert_eq!(p.addresses, vec!["10.22.0.2/16".parse::<IpNet>().unwrap()]);
        assert_eq!(p.gateways, vec!["10.22.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(p.routes.len(), 1);
        assert_eq!(p.mac, Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x02]));
        assert_eq!(p.dns, vec!["10.0.0.53".parse::<IpAddr>().unwrap()]);
    }
}
