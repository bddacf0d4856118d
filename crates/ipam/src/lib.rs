//! IP address management for one network, stored on disk exactly as the CNI `host-local`
//! IPAM plugin stores it, so that host-local and this crate can allocate from the same
//! directory without ever handing out one address twice.
//!
//! The disk is the only truth: every call takes the directory lock and reads the
//! reservation files again, nothing is cached between calls. That is what lets GC at
//! apiserver start (seed 004) trust what it sees, and what makes sharing with
//! host-local safe.

mod error;
mod name;
mod range;
mod store;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

pub use error::IpamError;
pub use name::{validate_container_id, validate_ifname, validate_network_name};
pub use range::{RangeSet, Special};
pub use store::Holder;

use range::Range;
use store::{Locked, Staged, Store};

/// An address handed out by [`Ipam::allocate`], with its subnet's prefix length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocated {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
}

/// A reservation file as found on disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reservation {
    pub ip: IpAddr,
    pub container_id: String,
    /// Empty for files in host-local's old format, which held only the container id.
    pub ifname: String,
}

/// `<root>/ipam/<network>`: where a network's reservations live.
pub fn network_dir(root: &Path, network: &str) -> Result<PathBuf, IpamError> {
    validate_network_name(network)?;
    Ok(root.join("ipam").join(network))
}

pub struct Ipam {
    store: Store,
    range_sets: Vec<RangeSet>,
    ranges: Vec<Range>,
}

impl Ipam {
    /// Opens (creating if needed) the reservation directory `dir`. Range set `i` keeps its
    /// round-robin position in `last_reserved_ip.<i>`, so the order must stay the same as
    /// in any host-local config sharing the directory.
    ///
    /// An empty `range_sets` is allowed for callers that only list or collect garbage.
    pub fn open(dir: &Path, range_sets: Vec<RangeSet>) -> Result<Ipam, IpamError> {
        if let Some(name) = dir.file_name() {
            validate_network_name(&name.to_string_lossy())?;
        }
        let ranges = range_sets
            .iter()
            .map(Range::resolve)
            .collect::<Result<Vec<_>, _>>()?;
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if a.subnet.contains(&b.subnet) || b.subnet.contains(&a.subnet) {
                    return Err(IpamError::InvalidRange {
                        subnet: b.subnet,
                        reason: format!("overlaps range {}", a.subnet),
                    });
                }
            }
        }
        Ok(Ipam {
            store: Store::open(dir)?,
            range_sets,
            ranges,
        })
    }

    /// [`open`](Self::open) on [`network_dir`]`(root, network)`.
    pub fn open_network(
        root: &Path,
        network: &str,
        range_sets: Vec<RangeSet>,
    ) -> Result<Ipam, IpamError> {
        Ipam::open(&network_dir(root, network)?, range_sets)
    }

    pub fn dir(&self) -> &Path {
        self.store.dir()
    }

    pub fn range_sets(&self) -> &[RangeSet] {
        &self.range_sets
    }

    /// Reserves one address in every range set for `(container_id, ifname)`.
    ///
    /// A `requested` address is placed in the range set containing it; range sets without
    /// a request get the next free address after their `last_reserved_ip`, as host-local
    /// does. Either every range set gets its address, or nothing is left reserved. The
    /// reservation files are on disk (fsynced) when this returns.
    pub fn allocate(
        &self,
        container_id: &str,
        ifname: &str,
        requested: &[IpAddr],
    ) -> Result<Vec<Allocated>, IpamError> {
        validate_container_id(container_id)?;
        validate_ifname(ifname)?;
        if self.ranges.is_empty() {
            return Err(IpamError::NoRangeSets);
        }
        let wanted = self.place_requests(requested)?;

        let lock = self.store.lock(true)?;
        let (entries, _junk) = lock.scan()?;
        for entry in &entries {
            let Some(h) = &entry.holder else { continue };
            // Mirrors host-local, which refuses a second address for the same attachment
            // in one range set (old-format files match on the id alone).
            if h.container_id != container_id || !(h.ifname == ifname || h.is_old_format()) {
                continue;
            }
            if let Some(r) = self.ranges.iter().find(|r| r.subnet.contains(&entry.ip)) {
                return Err(IpamError::AlreadyAllocated {
                    container_id: container_id.to_string(),
                    ifname: ifname.to_string(),
                    ip: entry.ip,
                    subnet: r.subnet,
                });
            }
        }
        let taken: HashSet<IpAddr> = entries.iter().map(|e| e.ip).collect();
        let holder = Holder {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        };

        let mut made = Vec::new();
        let result = lock
            .stage(&holder)
            .and_then(|staged| self.reserve_all(&lock, &staged, &wanted, &taken, &mut made))
            .and_then(|allocated| lock.sync_dir().map(|()| allocated));
        if result.is_err() {
            for ip in made {
                if let Err(e) = lock.remove(ip) {
                    tracing::error!(%ip, error = %e, "could not undo a partial allocation; GC will release it");
                }
            }
        }
        result
    }

    /// Puts back the reservations of `(container_id, ifname)` for `ips` whose files went
    /// missing while the attachment lived (`system check --fix`). An address another
    /// holder has is refused: that is a duplicate to report, not to paper over. Returns
    /// the addresses reserved anew.
    pub fn restore(
        &self,
        container_id: &str,
        ifname: &str,
        ips: &[IpAddr],
    ) -> Result<Vec<IpAddr>, IpamError> {
        validate_container_id(container_id)?;
        validate_ifname(ifname)?;
        self.place_requests(ips)?;
        let holder = Holder {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        };
        let lock = self.store.lock(true)?;
        let mut made = Vec::new();
        let result = lock.stage(&holder).and_then(|staged| {
            for &ip in ips {
                match lock.holder(ip) {
                    Some(h) if h == holder => continue,
                    Some(h) => {
                        return Err(IpamError::AddressInUse {
                            ip,
                            holder: Some(h),
                        })
                    }
                    None => {}
                }
                if !lock.reserve(&staged, ip)? {
                    return Err(IpamError::AddressInUse {
                        ip,
                        holder: lock.holder(ip),
                    });
                }
                made.push(ip);
            }
            lock.sync_dir()
        });
        if let Err(e) = result {
            for ip in &made {
                let _ = lock.remove(*ip);
            }
            return Err(e);
        }
        Ok(made)
    }

    /// Maps each requested address to the index of its range set, refusing what host-local
    /// would refuse and, beyond it, network and broadcast addresses.
    fn place_requests(&self, requested: &[IpAddr]) -> Result<Vec<Option<IpAddr>>, IpamError> {
        let mut wanted = vec![None; self.ranges.len()];
        for &ip in requested {
            if let Some((r, kind)) = self
                .ranges
                .iter()
                .find_map(|r| r.special(ip).map(|k| (r, k)))
            {
                return Err(IpamError::ReservedAddress {
                    ip,
                    kind,
                    subnet: r.subnet,
                });
            }
            let Some(i) = self.ranges.iter().position(|r| r.contains(ip)) else {
                return Err(IpamError::NotInAnyRange { ip });
            };
            if let Some(first) = wanted[i] {
                return Err(IpamError::DuplicateRequest {
                    first,
                    second: ip,
                    subnet: self.ranges[i].subnet,
                });
            }
            wanted[i] = Some(ip);
        }
        Ok(wanted)
    }

    fn reserve_all(
        &self,
        lock: &Locked<'_>,
        staged: &Staged<'_>,
        wanted: &[Option<IpAddr>],
        taken: &HashSet<IpAddr>,
        made: &mut Vec<IpAddr>,
    ) -> Result<Vec<Allocated>, IpamError> {
        let mut allocated = Vec::with_capacity(self.ranges.len());
        for (index, (range, want)) in self.ranges.iter().zip(wanted).enumerate() {
            let ip = match *want {
                Some(ip) => {
                    if !lock.reserve(staged, ip)? {
                        return Err(IpamError::AddressInUse {
                            ip,
                            holder: lock.holder(ip),
                        });
                    }
                    ip
                }
                None => self.reserve_next(lock, staged, index, range, taken)?,
            };
            made.push(ip);
            // host-local records static reservations as "last" too; keep its rotation.
            if let Err(e) = lock.set_last_reserved(index, ip) {
                tracing::warn!(error = %e, "could not record last reserved address; round-robin restarts");
            }
            let address =
                IpNet::new(ip, range.subnet.prefix_len()).map_err(|_| IpamError::InvalidRange {
                    subnet: range.subnet,
                    reason: format!("{ip} does not fit the prefix"),
                })?;
            allocated.push(Allocated {
                address,
                gateway: Some(range.gateway()),
            });
        }
        Ok(allocated)
    }

    fn reserve_next(
        &self,
        lock: &Locked<'_>,
        staged: &Staged<'_>,
        index: usize,
        range: &Range,
        taken: &HashSet<IpAddr>,
    ) -> Result<IpAddr, IpamError> {
        // `taken` was read under this same lock, so skipping it saves a syscall per busy
        // address and bounds the walk of a huge v6 range to (reserved + 1) attempts.
        for ip in range.candidates(lock.last_reserved(index)) {
            if !taken.contains(&ip) && lock.reserve(staged, ip)? {
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted {
            subnet: range.subnet,
        })
    }

    /// Releases every address held by `(container_id, ifname)`. Like host-local, if none
    /// matches exactly, old-format files holding just `container_id` are released instead.
    /// Releasing what is not held is not an error.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, IpamError> {
        validate_container_id(container_id)?;
        validate_ifname(ifname)?;
        let lock = self.store.lock(true)?;
        let (entries, _junk) = lock.scan()?;
        let held_by = |old: bool| {
            entries
                .iter()
                .filter(|e| {
                    e.holder.as_ref().is_some_and(|h| {
                        h.container_id == container_id
                            && if old {
                                h.is_old_format()
                            } else {
                                h.ifname == ifname
                            }
                    })
                })
                .map(|e| e.ip)
                .collect::<Vec<_>>()
        };
        let mut ips = held_by(false);
        if ips.is_empty() {
            ips = held_by(true);
        }
        if ips.is_empty() {
            return Ok(ips);
        }
        // No directory fsync: a removal lost to a crash brings back a reservation of a
        // container that is gone, which is exactly what GC at startup releases. Only
        // handing out an address must be durable, since losing that can double-allocate.
        let mut first_error = None;
        for &ip in &ips {
            if let Err(e) = lock.remove(ip) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(ips),
        }
    }

    /// Every reservation on disk, sorted by address. Files that are not reservations are
    /// skipped; unexpected names are reported with `tracing::warn`.
    pub fn reservations(&self) -> Result<Vec<Reservation>, IpamError> {
        let lock = self.store.lock(false)?;
        let (entries, junk) = lock.scan()?;
        self.warn_junk(&junk);
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                e.holder.map(|h| Reservation {
                    ip: e.ip,
                    container_id: h.container_id,
                    ifname: h.ifname,
                })
            })
            .collect())
    }

    /// Seed 004: releases every reservation on disk whose `(container-id, ifname)` is not
    /// in `live`; an old-format file (id only) stays if any live entry has its id.
    ///
    /// It works from the files, not from any record of what was allocated, so it also
    /// catches reservations leaked by host-local or by a crash between steps. Unreadable
    /// files are kept: an address nobody can vouch for is safer leaked than doubled.
    pub fn gc(&self, live: &HashSet<(String, String)>) -> Result<Vec<Reservation>, IpamError> {
        let lock = self.store.lock(true)?;
        lock.remove_stale_temps();
        let (entries, junk) = lock.scan()?;
        self.warn_junk(&junk);
        let live_ids: HashSet<&str> = live.iter().map(|(id, _)| id.as_str()).collect();
        let live: HashSet<(&str, &str)> = live
            .iter()
            .map(|(id, ifname)| (id.as_str(), ifname.as_str()))
            .collect();

        let mut released = Vec::new();
        let mut failed = Vec::new();
        let mut first_error = None;
        for entry in entries {
            let Some(h) = entry.holder else { continue };
            let is_live = if h.is_old_format() {
                live_ids.contains(h.container_id.as_str())
            } else {
                live.contains(&(h.container_id.as_str(), h.ifname.as_str()))
            };
            if is_live {
                continue;
            }
            match lock.remove(entry.ip) {
                Ok(()) => {
                    tracing::info!(ip = %entry.ip, container_id = %h.container_id, ifname = %h.ifname,
                        dir = %self.dir().display(), "released IP reservation of a container that is not live");
                    released.push(Reservation {
                        ip: entry.ip,
                        container_id: h.container_id,
                        ifname: h.ifname,
                    });
                }
                Err(e) => {
                    tracing::warn!(ip = %entry.ip, error = %e, "could not release stale IP reservation");
                    failed.push(entry.ip);
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
    }

    fn warn_junk(&self, junk: &[String]) {
        for name in junk {
            tracing::warn!(dir = %self.dir().display(), file = %name,
                "ignoring file that is not an IP reservation");
        }
    }
}
