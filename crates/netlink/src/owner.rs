//! Who owns a host link the runtime made, written into the link itself (its
//! `IFLA_IFALIAS`) when it is created. Leak checks then ask the link, not a naming rule:
//! a link without our mark is never ours, whatever its name, and a marked one names the
//! container or network it belongs to.

const CONTAINER: &str = "container:";
const NETWORK: &str = "container-network:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The host end of a container's interface.
    Container { id: String, ifname: String },
    /// A network's own device (its bridge).
    Network { id: String },
}

impl Owner {
    pub fn alias(&self) -> String {
        match self {
            Owner::Container { id, ifname } => format!("{CONTAINER}{id}:{ifname}"),
            Owner::Network { id } => format!("{NETWORK}{id}"),
        }
    }

    /// The owner a link's alias names; `None` for a link that is not the runtime's.
    pub fn parse(alias: &str) -> Option<Owner> {
        if let Some(id) = alias.strip_prefix(NETWORK) {
            return (!id.is_empty()).then(|| Owner::Network { id: id.to_string() });
        }
        let rest = alias.strip_prefix(CONTAINER)?;
        let (id, ifname) = rest.split_once(':')?;
        (!id.is_empty() && !ifname.is_empty()).then(|| Owner::Container {
            id: id.to_string(),
            ifname: ifname.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_round_trip_and_foreign_ones_are_nobodys() {
        for o in [
            Owner::Container {
                id: "web".into(),
                ifname: "eth0".into(),
            },
            Owner::Network { id: "n1".into() },
        ] {
            assert_eq!(Owner::parse(&o.alias()), Some(o));
        }
        for foreign in [
            "",
            "uplink",
            "container:",
            "container:x",
            "container-network:",
        ] {
            assert_eq!(Owner::parse(foreign), None, "{foreign:?}");
        }
    }
}
