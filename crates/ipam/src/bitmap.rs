//! Which offsets of a range are taken, for ranges of any size: a /16 fully reserved is
//! 16 chunks of 512 bytes, and a /64 with a handful of reservations is a handful of
//! chunks. Finding the next free offset looks at one summary word per chunk it passes,
//! so its cost does not grow with the number of reservations, only (by one step per
//! 4,096 addresses) with the length of a run of full chunks.

use std::collections::BTreeMap;

const WORDS: usize = 64;
const CHUNK_BITS: u128 = (WORDS * 64) as u128;

#[derive(Clone)]
struct Chunk {
    words: [u64; WORDS],
    /// Bit `w` set: `words[w]` is all ones.
    full: u64,
    count: u32,
}

impl Chunk {
    fn empty() -> Chunk {
        Chunk {
            words: [0; WORDS],
            full: 0,
            count: 0,
        }
    }

    /// The first clear bit at or after `bit`, within this chunk.
    fn first_clear_from(&self, bit: usize) -> Option<usize> {
        let w = bit / 64;
        let free = !self.words[w] & (!0u64 << (bit % 64));
        if free != 0 {
            return Some(w * 64 + free.trailing_zeros() as usize);
        }
        let later = if w == WORDS - 1 {
            0
        } else {
            !self.full & (!0u64 << (w + 1))
        };
        if later == 0 {
            return None;
        }
        let w = later.trailing_zeros() as usize;
        Some(w * 64 + (!self.words[w]).trailing_zeros() as usize)
    }
}

/// A set of offsets in `0..len`.
#[derive(Clone, Default)]
pub(crate) struct Bitmap {
    chunks: BTreeMap<u128, Chunk>,
    count: u128,
}

impl Bitmap {
    #[cfg(test)]
    pub fn contains(&self, n: u128) -> bool {
        let bit = (n % CHUNK_BITS) as usize;
        self.chunks
            .get(&(n / CHUNK_BITS))
            .is_some_and(|c| c.words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// Sets `n`; false if it was set already.
    pub fn insert(&mut self, n: u128) -> bool {
        let bit = (n % CHUNK_BITS) as usize;
        let chunk = self
            .chunks
            .entry(n / CHUNK_BITS)
            .or_insert_with(Chunk::empty);
        let (w, mask) = (bit / 64, 1u64 << (bit % 64));
        if chunk.words[w] & mask != 0 {
            return false;
        }
        chunk.words[w] |= mask;
        if chunk.words[w] == !0 {
            chunk.full |= 1 << w;
        }
        chunk.count += 1;
        self.count += 1;
        true
    }

    /// Clears `n`; false if it was clear. An emptied chunk goes, so a sparse v6 range
    /// costs only what it holds.
    pub fn remove(&mut self, n: u128) -> bool {
        let key = n / CHUNK_BITS;
        let bit = (n % CHUNK_BITS) as usize;
        let Some(chunk) = self.chunks.get_mut(&key) else {
            return false;
        };
        let (w, mask) = (bit / 64, 1u64 << (bit % 64));
        if chunk.words[w] & mask == 0 {
            return false;
        }
        chunk.words[w] &= !mask;
        chunk.full &= !(1 << w);
        chunk.count -= 1;
        self.count -= 1;
        if chunk.count == 0 {
            self.chunks.remove(&key);
        }
        true
    }

    /// The first clear offset in `lo..=last`.
    pub fn first_clear(&self, lo: u128, last: u128) -> Option<u128> {
        let mut pos = lo;
        // Chunks are visited in key order; a key missing from the map is an empty chunk.
        let mut chunks = self.chunks.range(lo / CHUNK_BITS..);
        while pos <= last {
            let key = pos / CHUNK_BITS;
            let chunk = match chunks.next() {
                Some((&k, c)) if k == key => c,
                _ => return Some(pos),
            };
            if let Some(bit) = chunk.first_clear_from((pos % CHUNK_BITS) as usize) {
                let found = key * CHUNK_BITS + bit as u128;
                return (found <= last).then_some(found);
            }
            pos = (key + 1).checked_mul(CHUNK_BITS)?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_and_search() {
        let mut b = Bitmap::default();
        assert_eq!(b.first_clear(0, 9), Some(0));
        for n in 0..5000 {
            assert!(b.insert(n));
        }
        assert!(!b.insert(4999));
        assert_eq!(b.count, 5000);
        assert_eq!(b.first_clear(0, 10_000), Some(5000));
        assert_eq!(b.first_clear(0, 4999), None);
        assert!(b.remove(63));
        assert!(!b.remove(63));
        assert_eq!(b.first_clear(0, 10_000), Some(63));
        assert_eq!(b.first_clear(64, 10_000), Some(5000));
        assert!(b.contains(64) && !b.contains(63));
        // The last bit of a chunk and of the last word.
        b.insert(63);
        b.remove(4095);
        assert_eq!(b.first_clear(100, 10_000), Some(4095));
        b.insert(4095);
        // A run of full chunks is passed over.
        for n in 5000..(CHUNK_BITS * 5) {
            b.insert(n);
        }
        assert_eq!(b.first_clear(0, u128::MAX), Some(CHUNK_BITS * 5));
        for n in 0..(CHUNK_BITS * 5) {
            b.remove(n);
        }
        assert_eq!(b.count, 0);
        assert!(b.chunks.is_empty(), "emptied chunks are dropped");
    }

    #[test]
    fn huge_offsets() {
        let mut b = Bitmap::default();
        let top = u128::MAX - 3;
        b.insert(top);
        b.insert(top + 1);
        assert_eq!(b.first_clear(top, u128::MAX), Some(top + 2));
        assert_eq!(b.first_clear(top, top + 1), None);
        b.insert(top + 2);
        b.insert(top + 3);
        assert_eq!(
            b.first_clear(top, u128::MAX),
            None,
            "no overflow past the top"
        );
        assert_eq!(b.first_clear(1 << 100, u128::MAX), Some(1 << 100));
    }
}
