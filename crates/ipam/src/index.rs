//! What the directory holds, in memory: every name that blocks an address, who holds
//! each reservation, a bitmap per range of the addresses taken, and each range's
//! round-robin cursor (`last_reserved_ip.<i>`). It is only ever read or changed under
//! the directory lock, after the change marker said what others did (see `watch`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::bitmap::Bitmap;
use crate::range::{to_int, Range};
use crate::store::{Found, Holder, Listed, NetDir, LAST_RESERVED_PREFIX};
use crate::IpamError;

#[derive(Debug, Clone)]
pub(crate) enum Held {
    By(Arc<Holder>),
    /// A file we could not read: taken, by nobody we can name.
    Unreadable,
    /// Not a file (a directory, a link): blocks the address, is no reservation.
    Blocker,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub held: Held,
    /// The inode a listing saw under this name; `None` until a listing sees it. A
    /// listing that finds another inode under the name reads the file again.
    pub ino: Option<u64>,
    /// The last listing (see [`Index::start_listing`]) that saw this name: an entry a
    /// listing did not stamp is gone from the directory.
    pub listed: u32,
}

#[derive(Default)]
struct RangeIndex {
    taken: Bitmap,
    last: Option<IpAddr>,
}

pub(crate) struct Index {
    ranges: Vec<RangeIndex>,
    by_ip: HashMap<IpAddr, Entry>,
    by_holder: HashMap<Arc<Holder>, Vec<IpAddr>>,
    listings: u32,
}

/// What a full read of the directory found besides reservations.
pub(crate) struct Others {
    pub temps: Vec<String>,
    pub junk: Vec<String>,
}

impl Index {
    fn empty(ranges: usize) -> Index {
        Index {
            ranges: (0..ranges).map(|_| RangeIndex::default()).collect(),
            by_ip: HashMap::new(),
            by_holder: HashMap::new(),
            listings: 0,
        }
    }

    /// A new stamp for the entries of one listing.
    pub fn start_listing(&mut self) -> u32 {
        self.listings = self.listings.wrapping_add(1);
        self.listings
    }

    /// Reads the whole directory: one listing, one read per reservation.
    pub fn build(dir: &NetDir, ranges: &[Range]) -> Result<(Index, Others), IpamError> {
        let mut index = Index::empty(ranges.len());
        let mut others = Others {
            temps: Vec::new(),
            junk: Vec::new(),
        };
        for listed in dir.list()? {
            match listed {
                Listed::Reservation { ip, ino, regular } => {
                    let found = dir.find(ip, regular);
                    if found == Found::Blocker {
                        // Named like an address, but no file: it is said, like junk.
                        others.junk.push(crate::range::file_name(ip));
                    }
                    index.set(ranges, ip, found, Some(ino));
                }
                Listed::Temp(name) => others.temps.push(name),
                Listed::Junk(name) => others.junk.push(name),
            }
        }
        for (i, r) in index.ranges.iter_mut().enumerate() {
            r.last = dir.last_reserved(i);
        }
        Ok((index, others))
    }

    /// Brings the entries of `names` (from the change marker) in line with the disk.
    pub fn reconcile<'a>(
        &mut self,
        dir: &NetDir,
        ranges: &[Range],
        names: impl IntoIterator<Item = &'a String>,
    ) {
        for name in names {
            let cursor = name
                .strip_prefix(LAST_RESERVED_PREFIX)
                .and_then(|i| i.parse::<usize>().ok());
            if let Some(i) = cursor {
                if let Some(r) = self.ranges.get_mut(i) {
                    r.last = dir.last_reserved(i);
                }
            } else if let Some(ip) = crate::range::parse_file_name(name) {
                let found = dir.find(ip, None);
                self.set(ranges, ip, found, None);
            }
        }
    }

    fn range_of(ranges: &[Range], ip: IpAddr) -> Option<usize> {
        ranges.iter().position(|r| r.contains(ip))
    }

    /// Records what `ip`'s name is now.
    pub fn set(&mut self, ranges: &[Range], ip: IpAddr, found: Found, ino: Option<u64>) {
        let held = match found {
            Found::Absent => {
                self.remove(ranges, ip);
                return;
            }
            Found::Reservation(Some(h)) => Held::By(Arc::new(h)),
            Found::Reservation(None) => Held::Unreadable,
            Found::Blocker => Held::Blocker,
        };
        self.put(ranges, ip, held, ino);
    }

    /// Records a reservation this process just created.
    pub fn insert_ours(&mut self, ranges: &[Range], ip: IpAddr, holder: &Arc<Holder>) {
        self.put(ranges, ip, Held::By(Arc::clone(holder)), None);
    }

    fn put(&mut self, ranges: &[Range], ip: IpAddr, held: Held, ino: Option<u64>) {
        self.remove(ranges, ip);
        if let Held::By(h) = &held {
            let ips = self.by_holder.entry(Arc::clone(h)).or_default();
            ips.push(ip);
            ips.sort();
        }
        if let Some(i) = Index::range_of(ranges, ip) {
            self.ranges[i].taken.insert(to_int(ip));
        }
        self.by_ip.insert(
            ip,
            Entry {
                held,
                ino,
                listed: self.listings,
            },
        );
    }

    pub fn remove(&mut self, ranges: &[Range], ip: IpAddr) -> Option<Entry> {
        let entry = self.by_ip.remove(&ip)?;
        if let Held::By(h) = &entry.held {
            if let Some(ips) = self.by_holder.get_mut(h) {
                ips.retain(|i| *i != ip);
                if ips.is_empty() {
                    self.by_holder.remove(h);
                }
            }
        }
        if let Some(i) = Index::range_of(ranges, ip) {
            self.ranges[i].taken.remove(to_int(ip));
        }
        Some(entry)
    }

    pub fn get(&self, ip: IpAddr) -> Option<&Entry> {
        self.by_ip.get(&ip)
    }

    pub fn holder_of(&self, ip: IpAddr) -> Option<Holder> {
        match &self.by_ip.get(&ip)?.held {
            Held::By(h) => Some(Holder::clone(h)),
            _ => None,
        }
    }

    /// The addresses `holder` has, sorted.
    pub fn held_by(&self, holder: &Holder) -> &[IpAddr] {
        self.by_holder.get(holder).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn holders(&self) -> impl Iterator<Item = (&Arc<Holder>, &Vec<IpAddr>)> {
        self.by_holder.iter()
    }

    pub fn entries(&self) -> impl Iterator<Item = (&IpAddr, &Entry)> {
        self.by_ip.iter()
    }

    pub fn entry_mut(&mut self, ip: IpAddr) -> Option<&mut Entry> {
        self.by_ip.get_mut(&ip)
    }

    pub fn set_last(&mut self, range: usize, ip: IpAddr) {
        self.ranges[range].last = Some(ip);
    }

    /// The next address host-local's round-robin would try that nothing blocks.
    pub fn next_free(&self, range: usize, r: &Range) -> Option<IpAddr> {
        r.next_free(&self.ranges[range].taken, self.ranges[range].last)
    }
}
