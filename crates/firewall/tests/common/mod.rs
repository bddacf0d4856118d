//! Reading the table back the way an operator would: `nft -j list table`.

#![allow(dead_code)]

use std::process::Command;

use container_firewall::{Firewall, NetworkRules};
use serde_json::Value;

/// A firewall on a table named after the test; the namespace is private already,
/// the name only makes failure output easier to read.
pub fn firewall(test: &str) -> Firewall {
    Firewall::with_table(&format!("t-{test}")).expect("valid table name")
}

pub fn network(id: &str, bridge: &str, subnets: &[&str], internal: bool) -> NetworkRules {
    NetworkRules {
        id: id.into(),
        bridge: bridge.into(),
        subnets: subnets.iter().map(|s| s.parse().expect("subnet")).collect(),
        internal,
    }
}

pub fn nft(args: &[&str]) -> std::process::Output {
    Command::new("nft").args(args).output().expect("run nft")
}

/// The table's objects without the metainfo header, or `None` if there is no table.
pub fn list(fw: &Firewall) -> Option<Vec<Value>> {
    let out = nft(&["-j", "list", "table", "inet", fw.table()]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("nft json");
    Some(
        v["nftables"]
            .as_array()
            .expect("nftables array")
            .iter()
            .filter(|o| o.get("metainfo").is_none())
            .cloned()
            .collect(),
    )
}

pub fn list_some(fw: &Firewall) -> Vec<Value> {
    list(fw).expect("table exists")
}

pub fn chains(objs: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = objs
        .iter()
        .filter_map(|o| o.get("chain")?.get("name")?.as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

pub fn chain<'a>(objs: &'a [Value], name: &str) -> Option<&'a Value> {
    objs.iter()
        .filter_map(|o| o.get("chain"))
        .find(|c| c["name"] == name)
}

/// Rule objects of `chain`, in order.
pub fn rules<'a>(objs: &'a [Value], chain: &str) -> Vec<&'a Value> {
    objs.iter()
        .filter_map(|o| o.get("rule"))
        .filter(|r| r["chain"] == chain)
        .collect()
}

/// Expressions of the rules of `chain`.
pub fn exprs(objs: &[Value], chain: &str) -> Vec<Value> {
    rules(objs, chain)
        .into_iter()
        .map(|r| r["expr"].clone())
        .collect()
}

/// Elements of a set or map, as nft lists them.
pub fn elements(objs: &[Value], name: &str) -> Vec<Value> {
    let set = objs
        .iter()
        .find_map(|o| o.get("set").or(o.get("map")).filter(|s| s["name"] == name));
    match set.and_then(|s| s.get("elem")) {
        Some(Value::Array(list)) => list.clone(),
        Some(one) => vec![one.clone()],
        None => Vec::new(),
    }
}

pub fn has_masquerade(objs: &[Value], chain: &str) -> bool {
    exprs(objs, chain).iter().any(|e| {
        e.as_array()
            .is_some_and(|e| e.iter().any(|x| x.get("masquerade").is_some()))
    })
}

/// True if `needle` appears anywhere inside `value`.
pub fn contains(value: &Value, needle: &Value) -> bool {
    value == needle
        || match value {
            Value::Array(items) => items.iter().any(|v| contains(v, needle)),
            Value::Object(map) => map.values().any(|v| contains(v, needle)),
            _ => false,
        }
}

pub fn mentions(objs: &[Value], text: &str) -> bool {
    serde_json::to_string(objs).expect("json").contains(text)
}
