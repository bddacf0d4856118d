use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use crate::range::Special;
use crate::{Holder, Reservation};

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("invalid {kind} {name:?}: {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: &'static str,
    },

    #[error("invalid range {subnet}: {reason}")]
    InvalidRange { subnet: IpNet, reason: String },

    #[error("no range sets configured to allocate from")]
    NoRangeSets,

    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("requested address {ip} is outside every configured range")]
    NotInAnyRange { ip: IpAddr },

    #[error("requested address {ip} is {kind} of {subnet} and is never handed out")]
    ReservedAddress {
        ip: IpAddr,
        kind: Special,
        subnet: IpNet,
    },

    #[error("requested addresses {first} and {second} both fall in range {subnet}; only one address per range set is allocated")]
    DuplicateRequest {
        first: IpAddr,
        second: IpAddr,
        subnet: IpNet,
    },

    #[error("address {ip} is already reserved{}", match holder {
        Some(h) => format!(" by {h}"),
        None => String::new(),
    })]
    AddressInUse { ip: IpAddr, holder: Option<Holder> },

    #[error(
        "container {container_id} ({ifname}) already holds {ip} in {subnet}; release it first"
    )]
    AlreadyAllocated {
        container_id: String,
        ifname: String,
        ip: IpAddr,
        subnet: IpNet,
    },

    #[error("no free address left in {subnet}")]
    Exhausted { subnet: IpNet },

    #[error("garbage collection released {} reservation(s) but could not remove {}: {first_error}",
        released.len(),
        failed.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(", "))]
    GcIncomplete {
        released: Vec<Reservation>,
        failed: Vec<IpAddr>,
        first_error: Box<IpamError>,
    },
}
