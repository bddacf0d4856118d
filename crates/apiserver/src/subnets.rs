//! Choosing a subnet for a network created without `--subnet` (or with `--ipv6` and
//! without `--subnet-v6`).

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The pool new networks draw /24s from, as Podman does: private space that home and
/// office networks rarely use.
pub const POOL: &str = "10.88.0.0/16";
pub const POOL_PREFIX: u8 = 24;

/// The first /24 of the pool that overlaps no existing network and no route on the host
/// (the default route excepted: it overlaps everything).
pub fn pick_v4(taken: &[IpNet], routes: &[IpNet]) -> Option<Ipv4Net> {
    let pool: Ipv4Net = POOL.parse().ok()?;
    let busy = |candidate: &Ipv4Net| {
        let c = IpNet::V4(*candidate);
        taken.iter().any(|t| overlaps(t, &c))
            || routes
                .iter()
                .filter(|r| r.prefix_len() > 0)
                .any(|r| overlaps(r, &c))
    };
    pool.subnets(POOL_PREFIX).ok()?.find(|c| !busy(c))
}

/// How many random ULA prefixes are tried before giving up (each collides with odds of
/// about the number of networks in 2^40).
pub const ULA_TRIES: usize = 64;

/// A ULA /64 (RFC 4193: `fd` and a random 40-bit global id, subnet 0), as Podman picks
/// one, from `random` (40 bits used per try), that overlaps no network and no route on
/// the host (the default route excepted).
pub fn pick_ula(
    taken: &[IpNet],
    routes: &[IpNet],
    mut random: impl FnMut() -> u64,
) -> Option<Ipv6Net> {
    for _ in 0..ULA_TRIES {
        let global = random() & 0xff_ffff_ffff;
        let addr = (0xfdu128 << 120) | ((global as u128) << 80);
        let c = IpNet::V6(Ipv6Net::new(std::net::Ipv6Addr::from(addr), 64).ok()?);
        let busy = taken.iter().any(|t| overlaps(t, &c))
            || routes
                .iter()
                .filter(|r| r.prefix_len() > 0)
                .any(|r| overlaps(r, &c));
        if !busy {
            if let IpNet::V6(net) = c {
                return Some(net);
            }
        }
    }
    None
}

pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    #[test]
    fn skips_networks_and_routes_but_not_the_default_route() {
        assert_eq!(
            pick_v4(&[], &[n("0.0.0.0/0")]),
            Some("10.88.0.0/24".parse().expect("net"))
        );
        let taken = [n("10.88.0.0/24"), n("10.88.1.0/24")];
        let routes = [n("10.88.2.128/25"), n("0.0.0.0/0")];
        assert_eq!(
            pick_v4(&taken, &routes),
            Some("10.88.3.0/24".parse().expect("net"))
        );
        assert_eq!(pick_v4(&[n("10.0.0.0/8")], &[]), None);
    }

    #[test]
    fn ula_prefixes_are_random_64s_in_fd00_8_that_skip_what_is_taken() {
        let mut seq = [0x12_3456_789a_u64, 0xab_cdef_0123].into_iter().cycle();
        let first = pick_ula(&[], &[], || seq.next().unwrap()).unwrap();
        assert_eq!(first, "fd12:3456:789a::/64".parse::<Ipv6Net>().unwrap());
        let taken = [n("fd12:3456:7800::/40")];
        let mut seq = [0x12_3456_789a_u64, 0xab_cdef_0123].into_iter();
        let second = pick_ula(&taken, &[n("::/0")], || seq.next().unwrap_or(0)).unwrap();
        assert_eq!(second, "fdab:cdef:123::/64".parse::<Ipv6Net>().unwrap());
        assert!(pick_ula(&[n("fd00::/8")], &[], || 7).is_none());
        // Only the 40 bits of the global id count.
        let high = pick_ula(&[], &[], || u64::MAX).unwrap();
        assert_eq!(high, "fdff:ffff:ffff::/64".parse::<Ipv6Net>().unwrap());
    }
}
