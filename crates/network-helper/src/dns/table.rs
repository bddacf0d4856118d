//! The names a network answers: replaced whole (a new helper's table), or one
//! container's at a time (a start, a finish), in time that does not grow with the
//! containers on the network.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use container_protocol::network::NameEntry;

#[derive(Debug, Default)]
pub struct Table {
    /// Each container's entries as last given: what the maps below are derived from.
    by_container: HashMap<String, Vec<NameEntry>>,
    /// Lowercase name → the containers answering to it, in id order (the order a whole
    /// table lists them in, so that both ways of filling it answer alike).
    holders: HashMap<String, BTreeSet<String>>,
    /// Lowercase name → addresses, in the order the entries gave them.
    by_name: HashMap<String, Vec<IpAddr>>,
    /// Address → the container's name (its id), for PTR.
    by_addr: HashMap<IpAddr, String>,
}

impl Table {
    pub fn replace(&mut self, entries: Vec<NameEntry>) {
        *self = Table::default();
        let mut grouped: HashMap<String, Vec<NameEntry>> = HashMap::new();
        for e in entries {
            grouped.entry(e.container_id.clone()).or_default().push(e);
        }
        for (id, entries) in grouped {
            self.set(&id, entries);
        }
    }

    /// Replaces what `container_id` answers to (nothing, when `entries` is empty).
    pub fn set(&mut self, container_id: &str, entries: Vec<NameEntry>) {
        let old = self.by_container.remove(container_id).unwrap_or_default();
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for e in &old {
            for ip in &e.addresses {
                if self.by_addr.get(ip).map(String::as_str) == Some(container_id) {
                    self.by_addr.remove(ip);
                }
            }
            for name in &e.names {
                let name = name.to_ascii_lowercase();
                if let Some(h) = self.holders.get_mut(&name) {
                    h.remove(container_id);
                    if h.is_empty() {
                        self.holders.remove(&name);
                    }
                }
                touched.insert(name);
            }
        }
        for e in &entries {
            for ip in &e.addresses {
                self.by_addr.insert(*ip, container_id.to_string());
            }
            for name in &e.names {
                let name = name.to_ascii_lowercase();
                self.holders
                    .entry(name.clone())
                    .or_default()
                    .insert(container_id.to_string());
                touched.insert(name);
            }
        }
        if !entries.is_empty() {
            self.by_container.insert(container_id.to_string(), entries);
        }
        for name in touched {
            self.derive(name);
        }
    }

    /// `name`'s addresses again, from the entries of the containers holding it.
    fn derive(&mut self, name: String) {
        let mut list: Vec<IpAddr> = Vec::new();
        for holder in self.holders.get(&name).into_iter().flatten() {
            let entries = self.by_container.get(holder).into_iter().flatten();
            for e in entries.filter(|e| e.names.iter().any(|n| n.eq_ignore_ascii_case(&name))) {
                for ip in &e.addresses {
                    if !list.contains(ip) {
                        list.push(*ip);
                    }
                }
            }
        }
        if list.is_empty() {
            self.by_name.remove(&name);
        } else {
            self.by_name.insert(name, list);
        }
    }

    pub fn lookup(&self, name: &str) -> Option<&[IpAddr]> {
        self.by_name.get(name).map(Vec::as_slice)
    }

    pub fn reverse(&self, ip: &IpAddr) -> Option<&str> {
        self.by_addr.get(ip).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, names: &[&str], ips: &[&str]) -> NameEntry {
        NameEntry {
            container_id: id.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            addresses: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        }
    }

    fn answers(t: &Table) -> Vec<(String, Vec<IpAddr>)> {
        let mut v: Vec<_> = t
            .by_name
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort();
        v
    }

    /// One container at a time, in any order, ends where the whole table does; and
    /// taking a container out leaves what the others answer.
    #[test]
    fn updates_one_at_a_time_match_the_whole_table() {
        let all = vec![
            entry("a", &["a", "Web"], &["10.0.0.2"]),
            entry("b", &["b", "web"], &["10.0.0.3", "fd00::3"]),
            entry("c", &["c"], &["10.0.0.4"]),
        ];
        let mut whole = Table::default();
        whole.replace(all.clone());
        let mut each = Table::default();
        for e in all.iter().rev() {
            each.set(&e.container_id, vec![e.clone()]);
        }
        assert_eq!(answers(&whole), answers(&each));
        assert_eq!(each.by_addr, whole.by_addr);
        let web: Vec<IpAddr> = ["10.0.0.2", "10.0.0.3", "fd00::3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(each.lookup("web"), Some(&web[..]));

        each.set("a", vec![]);
        let mut without = Table::default();
        without.replace(all[1..].to_vec());
        assert_eq!(answers(&each), answers(&without));
        assert_eq!(each.lookup("a"), None);
        assert_eq!(each.reverse(&"10.0.0.2".parse().unwrap()), None);
        assert_eq!(each.reverse(&"10.0.0.3".parse().unwrap()), Some("b"));

        // A container's new entries replace its old ones (an alias dropped, a new one).
        each.set("b", vec![entry("b", &["b", "api"], &["10.0.0.3"])]);
        assert_eq!(each.lookup("web"), None);
        assert_eq!(each.lookup("api").map(<[IpAddr]>::len), Some(1));
        assert_eq!(each.reverse(&"fd00::3".parse().unwrap()), None);
    }
}
