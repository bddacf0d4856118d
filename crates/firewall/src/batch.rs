//! One nftables JSON batch and the expressions rules are made of, in the schema of
//! libnftables-json(5). Knows nothing about networks; `rules.rs` decides what goes in.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::Protocol;

/// `inet` so one rule set serves IPv4 and IPv6 alike.
const FAMILY: &str = "inet";

/// A list of nftables JSON commands for one `nft -j -f -` run.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    table: String,
    cmds: Vec<Value>,
}

impl Batch {
    pub(crate) fn new(table: &str) -> Self {
        Batch {
            table: table.to_string(),
            cmds: Vec::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    pub(crate) fn commands(&self) -> &[Value] {
        &self.cmds
    }

    pub(crate) fn to_json(&self) -> String {
        json!({ "nftables": self.cmds }).to_string()
    }

    fn push(&mut self, verb: &str, kind: &str, mut body: Value) {
        if let Value::Object(map) = &mut body {
            map.insert("family".into(), json!(FAMILY));
            // A table object names itself; everything else names its table.
            let key = if kind == "table" { "name" } else { "table" };
            map.insert(key.into(), json!(self.table));
        }
        self.cmds.push(json!({ verb: { kind: body } }));
    }

    pub(crate) fn add_table(&mut self) {
        self.push("add", "table", json!({}));
    }

    pub(crate) fn delete_table(&mut self) {
        self.push("delete", "table", json!({}));
    }

    pub(crate) fn add_base_chain(&mut self, name: &str, kind: &str, hook: &str, prio: i32) {
        // Policy accept: this table only decides about project traffic; everything
        // else is left to whatever other tables the host has.
        self.push(
            "add",
            "chain",
            json!({"name": name, "type": kind, "hook": hook, "prio": prio, "policy": "accept"}),
        );
    }

    pub(crate) fn add_chain(&mut self, name: &str) {
        self.push("add", "chain", json!({ "name": name }));
    }

    pub(crate) fn flush_chain(&mut self, name: &str) {
        self.push("flush", "chain", json!({ "name": name }));
    }

    pub(crate) fn delete_chain(&mut self, name: &str) {
        self.push("delete", "chain", json!({ "name": name }));
    }

    pub(crate) fn add_set(&mut self, name: &str, kind: &str) {
        self.push("add", "set", json!({ "name": name, "type": kind }));
    }

    pub(crate) fn add_verdict_map(&mut self, name: &str, kind: &str) {
        self.push(
            "add",
            "map",
            json!({ "name": name, "type": kind, "map": "verdict" }),
        );
    }

    pub(crate) fn add_element(&mut self, set: &str, elem: Value) {
        self.push("add", "element", json!({ "name": set, "elem": [elem] }));
    }

    pub(crate) fn delete_element(&mut self, set: &str, key: Value) {
        self.push("delete", "element", json!({ "name": set, "elem": [key] }));
    }

    pub(crate) fn add_rule(&mut self, chain: &str, expr: Vec<Value>, comment: Option<&str>) {
        let mut body = json!({ "chain": chain, "expr": expr });
        if let (Some(comment), Value::Object(map)) = (comment, &mut body) {
            map.insert("comment".into(), json!(comment));
        }
        self.push("add", "rule", body);
    }

    pub(crate) fn delete_rule(&mut self, chain: &str, handle: u64) {
        self.push(
            "delete",
            "rule",
            json!({ "chain": chain, "handle": handle }),
        );
    }
}

// Expression builders.

pub(crate) fn meta(key: &str, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": {"meta": {"key": key}}, "right": right}})
}

pub(crate) fn iifname(name: &str) -> Value {
    meta("iifname", "==", json!(name))
}

pub(crate) fn oifname(name: &str) -> Value {
    meta("oifname", "==", json!(name))
}

pub(crate) fn oifname_not(name: &str) -> Value {
    meta("oifname", "!=", json!(name))
}

pub(crate) fn iifname_in_set(set: &str) -> Value {
    meta("iifname", "==", json!(format!("@{set}")))
}

pub(crate) fn oifname_in_set(set: &str) -> Value {
    meta("oifname", "==", json!(format!("@{set}")))
}

pub(crate) fn family(ip_is_v4: bool) -> &'static str {
    if ip_is_v4 {
        "ip"
    } else {
        "ip6"
    }
}

pub(crate) fn saddr_in(net: &IpNet) -> Value {
    // Host bits set ("10.88.0.1/16") would make nft refuse the prefix.
    let net = net.trunc();
    saddr_prefix(
        matches!(net, IpNet::V4(_)),
        &net.network().to_string(),
        net.prefix_len(),
    )
}

pub(crate) fn saddr_prefix(is_v4: bool, addr: &str, len: u8) -> Value {
    json!({"match": {"op": "==",
        "left": {"payload": {"protocol": family(is_v4), "field": "saddr"}},
        "right": {"prefix": {"addr": addr, "len": len}}}})
}

pub(crate) fn daddr_prefix(is_v4: bool, addr: &str, len: u8) -> Value {
    json!({"match": {"op": "==",
        "left": {"payload": {"protocol": family(is_v4), "field": "daddr"}},
        "right": {"prefix": {"addr": addr, "len": len}}}})
}

pub(crate) fn daddr_is(ip: IpAddr) -> Value {
    json!({"match": {"op": "==",
        "left": {"payload": {"protocol": family(ip.is_ipv4()), "field": "daddr"}},
        "right": ip.to_string()}})
}

pub(crate) fn nfproto(ip_is_v4: bool) -> Value {
    meta(
        "nfproto",
        "==",
        json!(if ip_is_v4 { "ipv4" } else { "ipv6" }),
    )
}

pub(crate) fn dport(protocol: Protocol, port: u16) -> Value {
    json!({"match": {"op": "==",
        "left": {"payload": {"protocol": protocol.as_str(), "field": "dport"}},
        "right": port}})
}

pub(crate) fn ct(key: &str, right: Value) -> Value {
    json!({"match": {"op": "in", "left": {"ct": {"key": key}}, "right": right}})
}

pub(crate) fn fib_daddr_local() -> Value {
    json!({"match": {"op": "==",
        "left": {"fib": {"result": "type", "flags": ["daddr"]}},
        "right": "local"}})
}

pub(crate) fn accept() -> Value {
    json!({ "accept": null })
}

pub(crate) fn drop() -> Value {
    json!({ "drop": null })
}

pub(crate) fn masquerade() -> Value {
    json!({ "masquerade": null })
}

pub(crate) fn jump(chain: &str) -> Value {
    json!({ "jump": { "target": chain } })
}

pub(crate) fn dnat(ip: IpAddr, port: u16) -> Value {
    json!({"dnat": {"family": family(ip.is_ipv4()), "addr": ip.to_string(), "port": port}})
}
