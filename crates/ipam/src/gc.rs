//! Seed 004: releasing the reservations of containers that are not live, decided from
//! one listing of the directory and the index, in time proportional to what goes.

use std::cell::OnceCell;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use crate::index::Held;
use crate::store::{Holder, Listed};
use crate::{Ipam, IpamError, Op, Reservation};

impl Ipam {
    /// Releases every reservation on disk whose `(container-id, ifname)` is not in
    /// `live`; an old-format file (id only) stays if any live entry has its id.
    ///
    /// It works from the files, not from any record of what was allocated, so it also
    /// catches reservations leaked by host-local or by a crash between steps. One
    /// listing of the directory checks the index (a name it lacks or whose inode
    /// changed is read), and temp files of a crash are removed. Unreadable files are
    /// kept: an address nobody can vouch for is safer leaked than doubled.
    pub fn gc(&self, live: &HashSet<(String, String)>) -> Result<Vec<Reservation>, IpamError> {
        self.with_index(true, |op| {
            if !op.fresh {
                // A full read in this call was the listing already.
                self.audit(op)?;
            }
            // Built only if an old-format file is found: they are rare.
            let live_ids: OnceCell<HashSet<&str>> = OnceCell::new();
            let pairs: HashSet<(&str, &str)> = live
                .iter()
                .map(|(id, ifname)| (id.as_str(), ifname.as_str()))
                .collect();
            let is_live = |h: &Holder| {
                if h.is_old_format() {
                    live_ids
                        .get_or_init(|| live.iter().map(|(id, _)| id.as_str()).collect())
                        .contains(h.container_id.as_str())
                } else {
                    pairs.contains(&(h.container_id.as_str(), h.ifname.as_str()))
                }
            };
            let mut stale: Vec<(IpAddr, Arc<Holder>)> = op
                .index
                .holders()
                .filter(|(h, _)| !is_live(h))
                .flat_map(|(h, ips)| ips.iter().map(|&ip| (ip, Arc::clone(h))))
                .collect();
            stale.sort_by_key(|(ip, _)| *ip);

            let mut released = Vec::with_capacity(stale.len());
            let mut failed = Vec::new();
            let mut first_error = None;
            let ips: Vec<IpAddr> = stale.iter().map(|(ip, _)| *ip).collect();
            let results = op.remove_many(&ips);
            for ((ip, h), result) in stale.into_iter().zip(results) {
                match result {
                    Ok(()) => {
                        tracing::info!(%ip, container_id = %h.container_id, ifname = %h.ifname,
                            dir = %self.dir().display(), "released IP reservation of a container that is not live");
                        released.push(Reservation {
                            ip,
                            container_id: h.container_id.clone(),
                            ifname: h.ifname.clone(),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(%ip, error = %e, "could not release stale IP reservation");
                        failed.push(ip);
                        first_error.get_or_insert(e);
                    }
                }
            }
            // Not fsynced, as in `release`: a removal lost to a crash is redone by the next GC.
            match first_error {
                Some(e) => Err(IpamError::GcIncomplete {
                    released,
                    failed,
                    first_error: Box::new(e),
                }),
                None => Ok(released),
            }
        })
    }

    /// Holds the index against one listing: what the change marker could not have
    /// reported (a writer that ignores the lock while we hold it) is found here.
    fn audit(&self, op: &mut Op<'_>) -> Result<(), IpamError> {
        let listing = op.index.start_listing();
        let mut junk = Vec::new();
        for listed in op.dir.list()? {
            match listed {
                Listed::Reservation { ip, ino, regular } => {
                    let known = op.index.entry_mut(ip).is_some_and(|e| {
                        let kind_agrees =
                            regular.is_none() || regular == Some(!matches!(e.held, Held::Blocker));
                        let same = match e.ino {
                            Some(i) => i == ino,
                            // First listing since we made it: adopt its inode.
                            None if kind_agrees => {
                                e.ino = Some(ino);
                                true
                            }
                            None => false,
                        };
                        e.listed = listing;
                        same
                    });
                    if !known {
                        // New entries carry the current listing's stamp.
                        let found = op.dir.find(ip, regular);
                        op.index.set(op.ranges, ip, found, Some(ino));
                    }
                    if op
                        .index
                        .get(ip)
                        .is_some_and(|e| matches!(e.held, Held::Blocker))
                    {
                        // Named like an address, but no file: it is said, like junk.
                        junk.push(crate::range::file_name(ip));
                    }
                }
                Listed::Temp(name) => op.dir.remove_temp(&name),
                Listed::Junk(name) => junk.push(name),
            }
        }
        self.warn_junk(&junk);
        let gone: Vec<IpAddr> = op
            .index
            .entries()
            .filter(|(_, e)| e.listed != listing)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in gone {
            op.index.remove(op.ranges, ip);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RangeSet;

    fn live(ids: &[&str]) -> HashSet<(String, String)> {
        ids.iter()
            .map(|id| (id.to_string(), "eth0".to_string()))
            .collect()
    }

    /// The listing GC makes corrects an index the change marker left wrong (here made
    /// wrong by hand, since the marker itself does not miss): a name the index lacks is
    /// read and judged, an entry no file backs is dropped, a file replaced under its
    /// name (another inode) is read again.
    #[test]
    fn the_listing_corrects_the_index() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ipam").join("net");
        let ipam = Ipam::open(&dir, vec![RangeSet::new("10.70.0.0/28".parse().unwrap())]).unwrap();
        for id in ["a", "b", "c"] {
            ipam.allocate(id, "eth0", &[]).unwrap();
        }
        // The first GC lists the directory and adopts the inodes of our own files.
        assert!(ipam.gc(&live(&["a", "b", "c"])).unwrap().is_empty());
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "10.70.0.2".parse().unwrap(),
            "10.70.0.3".parse().unwrap(),
            "10.70.0.4".parse().unwrap(),
        );
        {
            let mut state = ipam.state();
            let index = state.index.as_mut().unwrap();
            // a's entry lost, a phantom at .9, and c's inode remembered wrong.
            index.remove(&ipam.ranges, a);
            let phantom = Arc::new(Holder::new("phantom", "eth0"));
            index.insert_ours(&ipam.ranges, "10.70.0.9".parse().unwrap(), &phantom);
            let wrong = crate::store::Found::Reservation(Some(Holder::new("z", "eth0")));
            index.set(&ipam.ranges, c, wrong, Some(u64::MAX));
        }
        // b is not live: it goes, and nothing else does (a is found again, the phantom
        // has no file, c is read again and is c's).
        let released = ipam.gc(&live(&["a", "c", "phantom"])).unwrap();
        assert_eq!(
            released.iter().map(|r| r.ip).collect::<Vec<_>>(),
            [b],
            "{released:?}"
        );
        let held: Vec<(IpAddr, String)> = ipam
            .reservations()
            .unwrap()
            .into_iter()
            .map(|r| (r.ip, r.container_id))
            .collect();
        assert_eq!(held, [(a, "a".to_string()), (c, "c".to_string())]);
        // And the phantom's address is free again.
        let got = ipam
            .allocate("d", "eth0", &["10.70.0.9".parse().unwrap()])
            .unwrap();
        assert_eq!(
            got[0].address.addr(),
            "10.70.0.9".parse::<IpAddr>().unwrap()
        );
    }
}
