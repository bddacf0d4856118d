//! Choosing a subnet for a network created without `--subnet`.

use ipnet::{IpNet, Ipv4Net};

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
}
