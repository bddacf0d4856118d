//! The parts of `nft -j list table` output that planning needs: which chains exist,
//! which map elements and rules jump where, and which rules carry which comment.
//!
//! Parsing is lenient: objects this crate did not create, or fields a newer nft adds,
//! are skipped rather than refused, so a hand-added rule cannot wedge teardown.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// An element of a verdict map whose verdict is a jump or goto.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MapJump {
    pub map: String,
    pub key: Value,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    pub chain: String,
    pub handle: u64,
    pub comment: Option<String>,
    /// Every chain this rule can jump or goto.
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TableState {
    pub chains: BTreeSet<String>,
    /// Elements of plain sets, by set name.
    pub set_elements: BTreeMap<String, Vec<Value>>,
    pub map_jumps: Vec<MapJump>,
    pub rules: Vec<Rule>,
}

impl TableState {
    pub(crate) fn from_listing(listing: &Value) -> TableState {
        let mut state = TableState::default();
        let Some(objects) = listing.get("nftables").and_then(Value::as_array) else {
            return state;
        };
        for object in objects {
            if let Some(chain) = object.get("chain") {
                if let Some(name) = chain.get("name").and_then(Value::as_str) {
                    state.chains.insert(name.to_string());
                }
            } else if let Some(set) = object.get("set") {
                if let Some(name) = set.get("name").and_then(Value::as_str) {
                    state
                        .set_elements
                        .insert(name.to_string(), elements(set).cloned().collect());
                }
            } else if let Some(map) = object.get("map") {
                let Some(name) = map.get("name").and_then(Value::as_str) else {
                    continue;
                };
                for elem in elements(map) {
                    if let Some([key, verdict]) = elem.as_array().map(Vec::as_slice) {
                        if let Some(target) = jump_target(verdict) {
                            state.map_jumps.push(MapJump {
                                map: name.to_string(),
                                key: key.clone(),
                                target: target.to_string(),
                            });
                        }
                    }
                }
            } else if let Some(rule) = object.get("rule") {
                let chain = rule.get("chain").and_then(Value::as_str);
                let handle = rule.get("handle").and_then(Value::as_u64);
                let (Some(chain), Some(handle)) = (chain, handle) else {
                    continue;
                };
                let mut targets = Vec::new();
                if let Some(expr) = rule.get("expr") {
                    collect_targets(expr, &mut targets);
                }
                state.rules.push(Rule {
                    chain: chain.to_string(),
                    handle,
                    comment: rule
                        .get("comment")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    targets,
                });
            }
        }
        state
    }

    pub(crate) fn set_contains(&self, set: &str, key: &Value) -> bool {
        self.set_elements
            .get(set)
            .is_some_and(|elems| elems.contains(key))
    }
}

/// nft prints a one-element set either as a list or as the bare element, depending on
/// version; accept both.
fn elements(set: &Value) -> impl Iterator<Item = &Value> {
    let elem = set.get("elem");
    let (list, single) = match elem {
        Some(Value::Array(list)) => (list.as_slice(), None),
        Some(other) => (&[][..], Some(other)),
        None => (&[][..], None),
    };
    list.iter().chain(single)
}

fn jump_target(verdict: &Value) -> Option<&str> {
    ["jump", "goto"]
        .iter()
        .find_map(|kind| verdict.get(kind)?.get("target")?.as_str())
}

fn collect_targets(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if let Some(target) = jump_target(value) {
                out.push(target.to_string());
            }
            for inner in object.values() {
                collect_targets(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_targets(item, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_chains_sets_maps_and_rules() {
        let listing = json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "t", "handle": 1}},
            {"set": {"family": "inet", "table": "t", "name": "bridges", "type": "ifname",
                     "elem": ["br-a", "br-b"]}},
            {"set": {"family": "inet", "table": "t", "name": "single", "type": "ifname",
                     "elem": "br-c"}},
            {"map": {"family": "inet", "table": "t", "name": "bridge-fwd", "type": "ifname",
                     "map": "verdict",
                     "elem": [["br-a", {"jump": {"target": "nw-a-fwd"}}],
                              ["br-x", {"accept": null}]]}},
            {"chain": {"family": "inet", "table": "t", "name": "forward", "handle": 1}},
            {"chain": {"family": "inet", "table": "t", "name": "nw-a-fwd", "handle": 2}},
            {"rule": {"family": "inet", "table": "t", "chain": "postrouting", "handle": 7,
                      "expr": [{"jump": {"target": "nw-a-nat"}}]}},
            {"rule": {"family": "inet", "table": "t", "chain": "nw-a-dnat", "handle": 9,
                      "comment": "c1", "expr": [{"dnat": {"addr": "10.0.0.2"}}]}},
            {"rule": {"chain": "broken"}}
        ]});
        let state = TableState::from_listing(&listing);
        assert_eq!(
            state.chains.iter().collect::<Vec<_>>(),
            ["forward", "nw-a-fwd"]
        );
        assert!(state.set_contains("bridges", &json!("br-b")));
        assert!(state.set_contains("single", &json!("br-c")));
        assert!(!state.set_contains("bridges", &json!("br-c")));
        assert_eq!(
            state.map_jumps,
            [MapJump {
                map: "bridge-fwd".into(),
                key: json!("br-a"),
                target: "nw-a-fwd".into()
            }]
        );
        assert_eq!(state.rules.len(), 2);
        assert_eq!(state.rules[0].targets, ["nw-a-nat"]);
        assert_eq!(state.rules[1].comment.as_deref(), Some("c1"));
        assert!(state.rules[1].targets.is_empty());
    }

    #[test]
    fn tolerates_garbage() {
        assert_eq!(
            TableState::from_listing(&json!({"x": 1})),
            TableState::default()
        );
        assert_eq!(
            TableState::from_listing(&json!({"nftables": [1, "a", null]})),
            TableState::default()
        );
    }
}
