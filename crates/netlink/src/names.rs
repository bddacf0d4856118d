//! The hash the runtime's derived interface names are made from.

/// 64-bit FNV-1a of `bytes`. Used for every derived interface name (a network's bridge,
/// a container's host veth end) so that anything holding the inputs finds the link again
/// without a record; FNV rather than std's hasher, whose output may change between Rust
/// releases.
pub fn name_hash(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::name_hash;

    #[test]
    fn is_fnv1a() {
        // The reference vectors of the FNV specification.
        assert_eq!(name_hash(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(name_hash(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(name_hash(*b"foobar"), 0x8594_4171_f739_67e8);
    }
}
