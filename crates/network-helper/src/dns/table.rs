//! The names a network answers, replaced whole by each `Names` call.

use std::collections::HashMap;
use std::net::IpAddr;

use container_protocol::network::NameEntry;

#[derive(Debug, Default)]
pub struct Table {
    /// Lowercase name → addresses, in the order the entries gave them.
    by_name: HashMap<String, Vec<IpAddr>>,
    /// Address → the container's name (its id), for PTR.
    by_addr: HashMap<IpAddr, String>,
}

impl Table {
    pub fn replace(&mut self, entries: Vec<NameEntry>) {
        self.by_name.clear();
        self.by_addr.clear();
        for e in entries {
            for name in &e.names {
                let list = self.by_name.entry(name.to_ascii_lowercase()).or_default();
                for ip in &e.addresses {
                    if !list.contains(ip) {
                        list.push(*ip);
                    }
                }
            }
            for ip in e.addresses {
                self.by_addr.insert(ip, e.container_id.clone());
            }
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
