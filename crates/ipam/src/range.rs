//! Address ranges, resolved the way host-local resolves them, and the round-robin walk
//! over them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::bitmap::Bitmap;
use crate::IpamError;

/// One range to allocate from; the allocator hands out one address per range set.
///
/// The serde form uses host-local's field names, so a network config can embed it and a
/// host-local config can be generated from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeSet {
    pub subnet: IpNet,
    /// First address handed out; defaults to network + 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_start: Option<IpAddr>,
    /// Last address handed out; defaults to broadcast - 1 (IPv4) or the last address (IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<IpAddr>,
    /// Defaults to network + 1. Never handed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

impl RangeSet {
    pub fn new(subnet: IpNet) -> Self {
        RangeSet {
            subnet,
            range_start: None,
            range_end: None,
            gateway: None,
        }
    }

    pub fn with_range(mut self, start: IpAddr, end: IpAddr) -> Self {
        self.range_start = Some(start);
        self.range_end = Some(end);
        self
    }

    pub fn with_gateway(mut self, gateway: IpAddr) -> Self {
        self.gateway = Some(gateway);
        self
    }
}

/// Why an address inside a subnet may never be handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Gateway,
    Network,
    Broadcast,
}

impl std::fmt::Display for Special {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Special::Gateway => "the gateway",
            Special::Network => "the network address",
            Special::Broadcast => "the broadcast address",
        })
    }
}

/// A [`RangeSet`] with defaults filled in and addresses as integers, so that walking and
/// bounds checks are plain arithmetic for both families.
#[derive(Debug, Clone)]
pub(crate) struct Range {
    pub subnet: IpNet,
    v6: bool,
    start: u128,
    end: u128,
    network: u128,
    broadcast: Option<u128>,
    gateway: u128,
}

pub(crate) fn to_int(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Range {
    pub fn resolve(set: &RangeSet) -> Result<Range, IpamError> {
        let subnet = set.subnet;
        let bad = |reason: String| IpamError::InvalidRange { subnet, reason };
        if subnet.addr() != subnet.network() {
            return Err(bad(format!(
                "host bits are set; the network address is {}",
                subnet.network()
            )));
        }
        // host-local refuses /31, /32 (and /127, /128): there is nothing left to hand out
        // once network, gateway and broadcast are set aside.
        if subnet.prefix_len() + 2 > subnet.max_prefix_len() {
            return Err(bad("too small to allocate from".into()));
        }
        if let IpNet::V6(n) = subnet {
            // Go prints IPv4-mapped addresses in dotted form, so host-local would name the
            // files differently from us; refuse rather than diverge.
            if n.addr().to_ipv4_mapped().is_some() {
                return Err(bad("IPv4-mapped IPv6 subnets are not supported".into()));
            }
        }
        let v6 = matches!(subnet, IpNet::V6(_));
        let network = to_int(subnet.network());
        let broadcast_addr = to_int(subnet.broadcast());
        let inside = |what: &str, ip: Option<IpAddr>| -> Result<Option<u128>, IpamError> {
            match ip {
                None => Ok(None),
                Some(ip) if subnet.contains(&ip) => Ok(Some(to_int(ip))),
                Some(ip) => Err(bad(format!("{what} {ip} is not in the subnet"))),
            }
        };
        let start = inside("range start", set.range_start)?.unwrap_or(network + 1);
        let end = inside("range end", set.range_end)?.unwrap_or(if v6 {
            broadcast_addr
        } else {
            broadcast_addr - 1
        });
        if start > end {
            return Err(bad("range start is after range end".into()));
        }
        let gateway = match set.gateway {
            // host-local lets the gateway sit outside the subnet (e.g. a routed setup);
            // it only matters that it is never handed out.
            Some(gw) if gw.is_ipv6() == v6 => to_int(gw),
            Some(gw) => return Err(bad(format!("gateway {gw} is of the other IP family"))),
            None => network + 1,
        };
        Ok(Range {
            subnet,
            v6,
            start,
            end,
            network,
            broadcast: (!v6).then_some(broadcast_addr),
            gateway,
        })
    }

    fn addr_of(&self, n: u128) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(n))
        } else {
            // Every v4 value we produce lies inside a v4 subnet, so it fits.
            IpAddr::V4(Ipv4Addr::from(n as u32))
        }
    }

    pub fn gateway(&self) -> IpAddr {
        self.addr_of(self.gateway)
    }

    fn same_family(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.v6
    }

    /// Whether `ip` lies between range start and end, as host-local's `Range.Contains`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        if !self.same_family(ip) {
            return false;
        }
        let n = to_int(ip);
        self.start <= n && n <= self.end
    }

    pub fn special(&self, ip: IpAddr) -> Option<Special> {
        if !self.same_family(ip) {
            return None;
        }
        let n = to_int(ip);
        if n == self.gateway {
            Some(Special::Gateway)
        } else if n == self.network {
            Some(Special::Network)
        } else if Some(n) == self.broadcast {
            Some(Special::Broadcast)
        } else {
            None
        }
    }

    /// Candidates in host-local's round-robin order: from the address after `last` (if it
    /// lies in the range) around to `last` itself, else from range start to range end.
    /// Gateway, network and broadcast are left out. The allocator searches the bitmap
    /// instead ([`next_free`](Self::next_free)); this walk is the reference it is tested
    /// against.
    #[cfg(test)]
    pub fn candidates(&self, last: Option<IpAddr>) -> Candidates<'_> {
        let first = match last {
            Some(ip) if self.contains(ip) => self.next(to_int(ip)),
            _ => self.start,
        };
        Candidates {
            range: self,
            next: Some(first),
            first,
        }
    }

    /// The first address of [`candidates`](Self::candidates)`(last)` that `taken` does
    /// not hold, found in the bitmap instead of tried one by one.
    pub fn next_free(&self, taken: &Bitmap, last: Option<IpAddr>) -> Option<IpAddr> {
        let first = match last {
            Some(ip) if self.contains(ip) => self.next(to_int(ip)),
            _ => self.start,
        };
        let search = |lo: u128, hi: u128| {
            let mut from = lo;
            loop {
                let n = taken.first_clear(from, hi)?;
                if self.special(self.addr_of(n)).is_none() {
                    return Some(self.addr_of(n));
                }
                // Gateway, network or broadcast: at most three such steps.
                from = n.checked_add(1).filter(|&f| f <= hi)?;
            }
        };
        search(first, self.end).or_else(|| {
            if first > self.start {
                search(self.start, first - 1)
            } else {
                None
            }
        })
    }

    fn next(&self, n: u128) -> u128 {
        if n >= self.end {
            self.start
        } else {
            n + 1
        }
    }
}

/// Walks every address of a range exactly once; a `/64` is never materialised, the caller
/// stops as soon as it finds a free address.
#[cfg(test)]
pub(crate) struct Candidates<'a> {
    range: &'a Range,
    next: Option<u128>,
    first: u128,
}

#[cfg(test)]
impl Iterator for Candidates<'_> {
    type Item = IpAddr;

    fn next(&mut self) -> Option<IpAddr> {
        loop {
            let n = self.next?;
            let after = self.range.next(n);
            self.next = (after != self.first).then_some(after);
            let ip = self.range.addr_of(n);
            if self.range.special(ip).is_none() {
                return Some(ip);
            }
        }
    }
}

/// The file name host-local gives an address: Go's `net.IP.String()`. For the families we
/// accept (no IPv4-mapped subnets) Rust's `Display` prints the same RFC 5952 text.
pub(crate) fn file_name(ip: IpAddr) -> String {
    ip.to_string()
}

/// Parses a file name back, accepting only the canonical spelling: host-local looks files
/// up by canonical name, so `010.0.0.1` or `FD00::1` would never block an allocation there
/// and must not count as reservations here either.
pub(crate) fn parse_file_name(name: &str) -> Option<IpAddr> {
    let ip: IpAddr = name.parse().ok()?;
    if let IpAddr::V6(a) = ip {
        if a.to_ipv4_mapped().is_some() {
            return None;
        }
    }
    // Spelled back into a stack buffer: a listing parses every name, and an allocation
    // per name was a tenth of a GC that removes nothing.
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    std::io::Write::write_fmt(&mut cursor, format_args!("{ip}")).ok()?;
    let len = usize::try_from(cursor.position()).ok()?;
    (buf.get(..len)? == name.as_bytes()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> Range {
        Range::resolve(&RangeSet::new(s.parse().unwrap())).unwrap()
    }

    fn walk(r: &Range, last: Option<&str>) -> Vec<String> {
        r.candidates(last.map(|s| s.parse().unwrap()))
            .map(|ip| ip.to_string())
            .collect()
    }

    #[test]
    fn v4_defaults_skip_network_gateway_broadcast() {
        let r = range("10.0.0.0/29");
        assert_eq!(
            walk(&r, None),
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        assert_eq!(r.gateway().to_string(), "10.0.0.1");
    }

    #[test]
    fn round_robin_wraps_after_last() {
        let r = range("10.0.0.0/29");
        assert_eq!(
            walk(&r, Some("10.0.0.4")),
            ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
        );
        // A stale last_reserved_ip outside the range restarts at range start.
        assert_eq!(walk(&r, Some("10.9.9.9"))[0], "10.0.0.2");
    }

    #[test]
    fn v6_last_address_is_usable() {
        let r = range("fd00::/126");
        assert_eq!(walk(&r, None), ["fd00::2", "fd00::3"]);
    }

    #[test]
    fn explicit_range_and_gateway() {
        let set = RangeSet::new("192.168.1.0/24".parse().unwrap())
            .with_range(
                "192.168.1.0".parse().unwrap(),
                "192.168.1.3".parse().unwrap(),
            )
            .with_gateway("192.168.1.2".parse().unwrap());
        let r = Range::resolve(&set).unwrap();
        // The network address stays out even when the range starts on it.
        assert_eq!(walk(&r, None), ["192.168.1.1", "192.168.1.3"]);
    }

    #[test]
    fn rejects_bad_ranges() {
        for (subnet, start, end) in [
            ("10.0.0.1/24", None, None),
            ("10.0.0.0/31", None, None),
            ("fd00::/127", None, None),
            ("::ffff:10.0.0.0/120", None, None),
            ("10.0.0.0/24", Some("10.0.1.1"), None),
            ("10.0.0.0/24", Some("10.0.0.9"), Some("10.0.0.8")),
        ] {
            let mut set = RangeSet::new(subnet.parse().unwrap());
            set.range_start = start.map(|s| s.parse().unwrap());
            set.range_end = end.map(|s| s.parse().unwrap());
            assert!(
                matches!(Range::resolve(&set), Err(IpamError::InvalidRange { .. })),
                "{subnet} {start:?} {end:?}"
            );
        }
    }

    #[test]
    fn huge_v6_range_walk_is_lazy() {
        let r = range("fd00::/64");
        let first: Vec<_> = r.candidates(None).take(2).collect();
        assert_eq!(first[1].to_string(), "fd00::3");
        let r = Range::resolve(&RangeSet::new("::/0".parse().unwrap()).with_range(
            "::".parse().unwrap(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
        ))
        .unwrap();
        let wrapped: Vec<_> = r
            .candidates(Some(
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe".parse().unwrap(),
            ))
            .take(2)
            .map(|ip| ip.to_string())
            .collect();
        assert_eq!(wrapped, ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::2"]);
    }

    /// The bitmap search hands out exactly what the one-by-one walk (host-local's
    /// order) would, across wrap-around and the addresses never handed out.
    #[test]
    fn next_free_follows_the_round_robin_walk() {
        let r = Range::resolve(
            &RangeSet::new("10.0.0.0/27".parse().unwrap())
                .with_gateway("10.0.0.9".parse().unwrap()),
        )
        .unwrap();
        let mut taken = Bitmap::default();
        let mut seed = 7u32;
        for round in 0..400u32 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let n = to_int("10.0.0.0".parse().unwrap()) + u128::from(seed >> 16) % 32;
            if round.is_multiple_of(3) {
                taken.remove(n);
            } else {
                taken.insert(n);
            }
            let last = (!seed.is_multiple_of(5)).then(|| {
                r.addr_of(to_int("10.0.0.0".parse().unwrap()) + u128::from(seed >> 8) % 32)
            });
            let walked = r.candidates(last).find(|ip| !taken.contains(to_int(*ip)));
            assert_eq!(
                r.next_free(&taken, last),
                walked,
                "round {round}, last {last:?}"
            );
        }
    }

    #[test]
    fn file_names_match_go_net_ip_string() {
        // Expected strings are what Go's net.IP.String() prints for these addresses.
        for (ip, go) in [
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:0db8:0000:0000:0000:0000:0002:0001", "2001:db8::2:1"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
            ("0:0:0:0:0:0:1.2.3.4", "::102:304"),
            ("FD00::A", "fd00::a"),
            ("10.0.0.5", "10.0.0.5"),
        ] {
            assert_eq!(file_name(ip.parse().unwrap()), go);
        }
        assert_eq!(parse_file_name("fd00::a"), Some("fd00::a".parse().unwrap()));
        for junk in [
            "FD00::A",
            "010.0.0.1",
            "::ffff:10.0.0.1",
            "lock",
            "10.0.0.5.tmp",
            "",
        ] {
            assert_eq!(parse_file_name(junk), None, "{junk}");
        }
    }
}
