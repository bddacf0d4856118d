//! MAC addresses for interfaces whose attachment names none.

use std::io::Read;
use std::net::IpAddr;

/// A locally administered unicast MAC (`02:..`). Random, so two containers never share
/// one even across networks; derived from `ip` (`02:42:` + its last four bytes, Docker's
/// scheme) only when the random source is unreadable.
pub fn generate(ip: Option<IpAddr>) -> [u8; 6] {
    let mut mac = [0u8; 6];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut mac[1..]));
    if random.is_err() {
        let tail = match ip {
            Some(IpAddr::V4(a)) => a.octets(),
            Some(IpAddr::V6(a)) => {
                let o = a.octets();
                [o[12], o[13], o[14], o[15]]
            }
            None => (std::process::id() ^ nanos()).to_be_bytes(),
        };
        mac[1] = 0x42;
        mac[2..].copy_from_slice(&tail);
    }
    // Bit 0 of the first byte is multicast, bit 1 "locally administered".
    mac[0] = 0x02;
    mac
}

fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicast_and_local() {
        let mac = generate(None);
        assert_eq!(mac[0], 0x02);
        assert_ne!(generate(None), generate(None));
    }
}
