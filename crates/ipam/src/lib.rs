//! IP address management for one network, stored on disk exactly as the CNI `host-local`
//! IPAM plugin stores it, so that host-local and this crate can allocate from the same
//! directory without ever handing out one address twice.
//!
//! The disk is the truth; an [`Ipam`] keeps an index of it (who holds what, a bitmap of
//! taken addresses per range, the round-robin cursors) so that a call costs the same
//! with ten reservations or sixty thousand. Every call takes the directory lock and
//! first asks the directory's change marker, an inotify watch, what other writers
//! (host-local, another process, a hand edit, `system check --fix`) changed since the
//! last call; only those names are read again. When the marker cannot tell (its queue
//! overflowed, the directory was replaced) or cannot be had (the kernel's inotify
//! limits), the call reads the whole directory instead, as [`Ipam::open_short_lived`]
//! does on every call.

mod bitmap;
mod error;
mod gc;
mod index;
mod name;
mod range;
mod store;
mod watch;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;

pub use error::IpamError;
pub use name::{validate_container_id, validate_ifname, validate_network_name};
pub use range::{RangeSet, Special};
pub use store::Holder;

use index::{Held, Index};
use range::{file_name, Range};
use store::{NetDir, LAST_RESERVED_PREFIX};
use watch::{Changes, Watch};

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
    path: PathBuf,
    range_sets: Vec<RangeSet>,
    ranges: Vec<Range>,
    /// Keep the index between calls (a long-lived process) or read the directory on
    /// every call (a short-lived one, which would pay for the watch and use it once).
    long_lived: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    dir: Option<NetDir>,
    watch: Option<Watch>,
    index: Option<Index>,
    /// The kernel refused a watch: said once, retried at each full read.
    warned: bool,
}

/// One call's view, under the directory lock.
pub(crate) struct Op<'a> {
    dir: &'a NetDir,
    ranges: &'a [Range],
    index: &'a mut Index,
    /// Names this call created or removed: the events they raise are its own.
    touched: HashSet<String>,
    /// The index was read from the whole directory during this call.
    fresh: bool,
}

impl Op<'_> {
    /// Creates `ip`'s reservation; `Ok(false)` when the name exists, which the index is
    /// then told about.
    fn create(&mut self, ip: IpAddr, holder: &Arc<Holder>) -> Result<bool, IpamError> {
        let name = file_name(ip);
        if self.dir.create(ip, holder)? {
            self.touched.insert(name);
            self.index.insert_ours(self.ranges, ip, holder);
            return Ok(true);
        }
        // The index did not know: a writer that ignores the lock, or a change the
        // marker has not delivered. Learn what is there so the next try moves on.
        let found = match self.dir.find(ip, None) {
            store::Found::Absent => store::Found::Blocker,
            found => found,
        };
        self.index.set(self.ranges, ip, found, None);
        Ok(false)
    }

    fn remove(&mut self, ip: IpAddr) -> Result<(), IpamError> {
        self.dir.remove(ip)?;
        self.touched.insert(file_name(ip));
        self.index.remove(self.ranges, ip);
        Ok(())
    }

    /// Removes many reservations, as `remove` each, with the unlinks spread over a few
    /// threads when there are many: an unlink is mostly the filesystem's own work on
    /// the inode, which threads overlap (the directory's lock is held only for the
    /// entry). GC of a directory gone stale is thousands of them.
    fn remove_many(&mut self, ips: &[IpAddr]) -> Vec<Result<(), IpamError>> {
        const PER_THREAD: usize = 256;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4)
            .min(ips.len().div_ceil(PER_THREAD))
            .max(1);
        let dir = self.dir;
        let results: Vec<Result<(), IpamError>> = if threads == 1 {
            ips.iter().map(|&ip| dir.remove(ip)).collect()
        } else {
            let chunk = ips.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let workers: Vec<_> = ips
                    .chunks(chunk)
                    .map(|part| {
                        scope.spawn(move || {
                            part.iter().map(|&ip| dir.remove(ip)).collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .zip(ips.chunks(chunk))
                    .flat_map(|(w, part)| {
                        // A worker that panicked removed an unknown part of its share:
                        // reported as failures, found again by the next listing.
                        w.join().unwrap_or_else(|_| {
                            part.iter()
                                .map(|&ip| {
                                    Err(IpamError::Io {
                                        op: "remove reservation",
                                        path: dir.path().join(file_name(ip)),
                                        source: std::io::Error::other("its thread panicked"),
                                    })
                                })
                                .collect()
                        })
                    })
                    .collect()
            })
        };
        for (&ip, result) in ips.iter().zip(&results) {
            if result.is_ok() {
                self.touched.insert(file_name(ip));
                self.index.remove(self.ranges, ip);
            }
        }
        results
    }

    fn set_last(&mut self, range: usize, ip: IpAddr) {
        if let Err(e) = self.dir.set_last_reserved(range, ip) {
            tracing::warn!(error = %e, "could not record last reserved address; round-robin restarts");
        }
        self.touched
            .insert(format!("{LAST_RESERVED_PREFIX}{range}"));
        self.index.set_last(range, ip);
    }
}

impl Ipam {
    /// Opens (creating if needed) the reservation directory `dir`, for a long-lived
    /// process: the index is built at the first call and kept true from then on. Range
    /// set `i` keeps its round-robin position in `last_reserved_ip.<i>`, so the order
    /// must stay the same as in any host-local config sharing the directory.
    ///
    /// An empty `range_sets` is allowed for callers that only list or collect garbage.
    pub fn open(dir: &Path, range_sets: Vec<RangeSet>) -> Result<Ipam, IpamError> {
        Ipam::open_mode(dir, range_sets, true)
    }

    /// [`open`](Self::open) for a process that makes one call and exits (a CNI plugin):
    /// no watch; every call reads the whole directory (one listing, one read per
    /// reservation), as host-local does.
    pub fn open_short_lived(dir: &Path, range_sets: Vec<RangeSet>) -> Result<Ipam, IpamError> {
        Ipam::open_mode(dir, range_sets, false)
    }

    fn open_mode(
        dir: &Path,
        range_sets: Vec<RangeSet>,
        long_lived: bool,
    ) -> Result<Ipam, IpamError> {
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
        let state = State {
            dir: Some(NetDir::open(dir)?),
            ..State::default()
        };
        Ok(Ipam {
            path: dir.to_path_buf(),
            range_sets,
            ranges,
            long_lived,
            state: Mutex::new(state),
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
        &self.path
    }

    pub fn range_sets(&self) -> &[RangeSet] {
        &self.range_sets
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| {
            // A call panicked half way: what it left in memory is not to be trusted.
            self.state.clear_poison();
            let mut state = poisoned.into_inner();
            state.index = None;
            state
        })
    }

    /// Runs `f` under the directory lock with an index that is true to the disk.
    fn with_index<T>(
        &self,
        exclusive: bool,
        f: impl FnOnce(&mut Op<'_>) -> Result<T, IpamError>,
    ) -> Result<T, IpamError> {
        let mut guard = self.state();
        let state = &mut *guard;
        let lock = match NetDir::lock(&self.path, exclusive) {
            Err(IpamError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                // The directory went (by hand, or a teardown): start again from nothing.
                *state = State {
                    warned: state.warned,
                    ..State::default()
                };
                state.dir = Some(NetDir::open(&self.path)?);
                NetDir::lock(&self.path, exclusive)?
            }
            other => other?,
        };
        // A directory removed while we hold its descriptor raises no event until we
        // close it, so the lock is how a replaced directory shows: the lock file we
        // hold must be the one in the directory the index was read from.
        let same_dir = match &state.dir {
            Some(dir) => dir.holds(&lock)?,
            None => false,
        };
        let trusted = match (&state.watch, &mut state.index, &state.dir) {
            (Some(watch), Some(index), Some(dir)) if same_dir => match watch.drain() {
                Changes::Names(names) => {
                    index.reconcile(dir, &self.ranges, &names);
                    true
                }
                Changes::Lost => false,
            },
            _ => false,
        };
        let fresh = !trusted;
        if fresh {
            self.read_all(state, exclusive)?;
        }
        let (Some(dir), Some(index)) = (&state.dir, &mut state.index) else {
            unreachable!("read_all leaves a directory and an index");
        };
        let mut op = Op {
            dir,
            ranges: &self.ranges,
            index,
            touched: HashSet::new(),
            fresh,
        };
        let result = f(&mut op);
        let touched = std::mem::take(&mut op.touched);

        if let (Some(watch), Some(index)) = (&state.watch, &mut state.index) {
            // Our own changes raised these; anything else was a writer that ignores
            // the lock, and is taken in.
            let lost = match watch.drain() {
                Changes::Names(names) => {
                    let others = names.iter().filter(|n| !touched.contains(*n));
                    index.reconcile(dir, &self.ranges, others);
                    false
                }
                Changes::Lost => true,
            };
            if lost {
                state.index = None;
            }
        }
        if matches!(result, Err(IpamError::Io { .. })) || !self.long_lived {
            // A failed syscall may have left a step half done: read it all next time.
            state.index = None;
        }
        result
    }

    /// Reads the whole directory into a new index, with a new watch set up first so
    /// that nothing changed after the listing can be missed.
    fn read_all(&self, state: &mut State, exclusive: bool) -> Result<(), IpamError> {
        state.index = None;
        state.dir = Some(NetDir::open(&self.path)?);
        state.watch = None;
        if self.long_lived {
            match Watch::new(&self.path) {
                Ok(w) => state.watch = Some(w),
                Err(e) if !state.warned => {
                    state.warned = true;
                    tracing::warn!(dir = %self.path.display(), error = %e,
                        "no inotify watch on the IPAM directory (see fs.inotify.max_user_instances); every call reads the whole directory");
                }
                Err(_) => {}
            }
        }
        let Some(dir) = &state.dir else {
            unreachable!("just opened");
        };
        let (index, others) = Index::build(dir, &self.ranges)?;
        self.warn_junk(&others.junk);
        if exclusive {
            for temp in &others.temps {
                dir.remove_temp(temp);
            }
        }
        state.index = Some(index);
        Ok(())
    }

    /// Reserves one address in every range set for `(container_id, ifname)`.
    ///
    /// A `requested` address is placed in the range set containing it; range sets without
    /// a request get the next free address after their `last_reserved_ip`, as host-local
    /// does. Either every range set gets its address, or nothing is left reserved. Each
    /// reservation is one file created with `O_EXCL`; none is fsynced (see
    /// docs/networking.md: no holder of an address outlives a crash of the machine).
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
        let holder = Arc::new(Holder::new(container_id, ifname));
        self.with_index(true, |op| {
            // Mirrors host-local, which refuses a second address for the same attachment
            // in one range set (old-format files match on the id alone).
            let old = Holder::new(container_id, "");
            for &ip in op.index.held_by(&holder).iter().chain(op.index.held_by(&old)) {
                if let Some(r) = self.ranges.iter().find(|r| r.subnet.contains(&ip)) {
                    return Err(IpamError::AlreadyAllocated {
                        container_id: container_id.to_string(),
                        ifname: ifname.to_string(),
                        ip,
                        subnet: r.subnet,
                    });
                }
            }
            let mut made = Vec::new();
            let result = self.reserve_all(op, &holder, &wanted, &mut made);
            if result.is_err() {
                for ip in made {
                    if let Err(e) = op.remove(ip) {
                        tracing::error!(%ip, error = %e, "could not undo a partial allocation; GC will release it");
                    }
                }
            }
            result
        })
    }

    fn reserve_all(
        &self,
        op: &mut Op<'_>,
        holder: &Arc<Holder>,
        wanted: &[Option<IpAddr>],
        made: &mut Vec<IpAddr>,
    ) -> Result<Vec<Allocated>, IpamError> {
        let mut allocated = Vec::with_capacity(self.ranges.len());
        for (index, (range, want)) in self.ranges.iter().zip(wanted).enumerate() {
            let ip = match *want {
                Some(ip) => {
                    if op.index.get(ip).is_some() || !op.create(ip, holder)? {
                        return Err(IpamError::AddressInUse {
                            ip,
                            holder: op.index.holder_of(ip),
                        });
                    }
                    ip
                }
                None => loop {
                    let Some(ip) = op.index.next_free(index, range) else {
                        return Err(IpamError::Exhausted {
                            subnet: range.subnet,
                        });
                    };
                    if op.create(ip, holder)? {
                        break ip;
                    }
                },
            };
            made.push(ip);
            // host-local records static reservations as "last" too; keep its rotation.
            op.set_last(index, ip);
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
        let holder = Arc::new(Holder::new(container_id, ifname));
        self.with_index(true, |op| {
            let mut made = Vec::new();
            let mut result = Ok(());
            for &ip in ips {
                let taken = match op.index.get(ip).map(|e| &e.held) {
                    Some(Held::By(h)) if **h == *holder => continue,
                    Some(_) => true,
                    None => match op.create(ip, &holder) {
                        Ok(created) => !created,
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    },
                };
                if taken {
                    result = Err(IpamError::AddressInUse {
                        ip,
                        holder: op.index.holder_of(ip),
                    });
                    break;
                }
                made.push(ip);
            }
            if let Err(e) = result {
                for ip in made {
                    let _ = op.remove(ip);
                }
                return Err(e);
            }
            Ok(made)
        })
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

    /// Releases every address held by `(container_id, ifname)`. Like host-local, if none
    /// matches exactly, old-format files holding just `container_id` are released instead.
    /// Releasing what is not held is not an error.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, IpamError> {
        validate_container_id(container_id)?;
        validate_ifname(ifname)?;
        self.with_index(true, |op| {
            let mut ips = op
                .index
                .held_by(&Holder::new(container_id, ifname))
                .to_vec();
            if ips.is_empty() {
                ips = op.index.held_by(&Holder::new(container_id, "")).to_vec();
            }
            // Not fsynced: a removal lost to a crash of the machine brings back a
            // reservation of a container that is gone, which GC at start releases.
            let mut first_error = None;
            for &ip in &ips {
                if let Err(e) = op.remove(ip) {
                    first_error.get_or_insert(e);
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(ips),
            }
        })
    }

    /// Every reservation on disk, sorted by address. Names that block an address but are
    /// no readable reservation are left out.
    pub fn reservations(&self) -> Result<Vec<Reservation>, IpamError> {
        self.with_index(false, |op| {
            let mut all: Vec<Reservation> = op
                .index
                .holders()
                .flat_map(|(h, ips)| {
                    ips.iter().map(|&ip| Reservation {
                        ip,
                        container_id: h.container_id.clone(),
                        ifname: h.ifname.clone(),
                    })
                })
                .collect();
            all.sort();
            Ok(all)
        })
    }

    fn warn_junk(&self, junk: &[String]) {
        for name in junk {
            tracing::warn!(dir = %self.path.display(), file = %name,
                "ignoring file that is not an IP reservation");
        }
    }
}
