//! `--userns=auto` ranges, reserved on disk as IPAM reserves addresses (the same crash
//! model, docs/crash-safety.md): one file per range, `<dir>/<start>-<size>`, holding the
//! container's id; made with `O_EXCL` under the directory's lock and fsynced before the
//! caller goes on, so a reservation is on disk before the container uses it. A crash
//! leaks none for long: GC at every apiserver start, and `system check --fix`, release
//! the ranges of containers that are not running (or being started).
//!
//! Ranges are slots of [`USERNS_SIZE`] ids in a pool (`--userns-pool START:SIZE`);
//! a reservation of another size (an older pool) still counts for overlaps.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use container_protocol::resources::{IdRange, USERNS_SIZE};
use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("user namespace ranges: {step} {}: {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no free user namespace range for container {id}: all {slots} ranges of {size} ids in the pool {start}:{pool} are taken")]
    Exhausted {
        id: String,
        slots: u64,
        size: u32,
        start: u32,
        pool: u64,
    },
    #[error("invalid user namespace pool {0}: expected START:SIZE, SIZE a multiple of 65536, within the 32-bit id space")]
    Pool(String),
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { step, path, source }
}

/// The ids ranges are taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub start: u32,
    /// How many ids, a multiple of [`USERNS_SIZE`].
    pub size: u64,
}

/// systemd's range for containers' ids (524288 to 1879048191, docs UIDS-GIDS): no
/// system or regular user of a systemd host is there.
pub const DEFAULT_POOL: Pool = Pool {
    start: 524_288,
    size: 1_879_048_192 - 524_288,
};

impl Pool {
    pub fn parse(text: &str) -> Result<Pool, Error> {
        let bad = || Error::Pool(text.to_string());
        let (a, b) = text.split_once(':').ok_or_else(bad)?;
        let pool = Pool {
            start: a.trim().parse().map_err(|_| bad())?,
            size: b.trim().parse().map_err(|_| bad())?,
        };
        let fits = u64::from(pool.start) + pool.size <= u64::from(u32::MAX);
        if pool.size == 0
            || !pool.size.is_multiple_of(u64::from(USERNS_SIZE))
            || !fits
            || pool.start == 0
        {
            return Err(bad());
        }
        Ok(pool)
    }

    fn slots(&self) -> u64 {
        self.size / u64::from(USERNS_SIZE)
    }
}

impl std::fmt::Display for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.start, self.size)
    }
}

pub struct Ranges {
    dir: PathBuf,
    pool: Pool,
}

fn file_name(r: IdRange) -> String {
    format!("{}-{}", r.start, r.size)
}

fn parse_name(name: &str) -> Option<IdRange> {
    let (a, b) = name.split_once('-')?;
    Some(IdRange {
        start: a.parse().ok()?,
        size: b.parse().ok()?,
    })
}

impl Ranges {
    /// The store at `dir` (`<root>/userns`), made if missing.
    pub fn open(dir: &Path, pool: Pool) -> Result<Ranges, Error> {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        Ok(Ranges {
            dir: dir.to_path_buf(),
            pool,
        })
    }

    pub fn pool(&self) -> Pool {
        self.pool
    }

    fn lock(&self) -> Result<Flock<File>, Error> {
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io("lock", &path)(e.into()))
    }

    /// Every reservation: its range and the container holding it ("" when the file
    /// is empty: a crash between create and write).
    pub fn list(&self) -> Result<Vec<(IdRange, String)>, Error> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)
            .map_err(io("read", &self.dir))?
            .flatten()
        {
            let name = e.file_name();
            let Some(range) = name.to_str().and_then(parse_name) else {
                continue;
            };
            let owner = fs::read_to_string(e.path()).unwrap_or_default();
            out.push((range, owner.trim().to_string()));
        }
        out.sort_by_key(|(r, _)| r.start);
        Ok(out)
    }

    /// A range for container `id`: the one it holds already, or the first free slot.
    pub fn reserve(&self, id: &str) -> Result<IdRange, Error> {
        let _lock = self.lock()?;
        let taken = self.list()?;
        if let Some((r, _)) = taken.iter().find(|(_, owner)| owner == id) {
            return Ok(*r);
        }
        for slot in 0..self.pool.slots() {
            let range = IdRange {
                start: self.pool.start + (slot * u64::from(USERNS_SIZE)) as u32,
                size: USERNS_SIZE,
            };
            if taken.iter().any(|(t, _)| t.overlaps(&range)) {
                continue;
            }
            let path = self.dir.join(file_name(range));
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io("create", &path))?;
            let written = f
                .write_all(format!("{id}\n").as_bytes())
                .and_then(|()| f.sync_all())
                .and_then(|()| File::open(&self.dir)?.sync_all());
            if let Err(e) = written {
                let _ = fs::remove_file(&path);
                return Err(io("write", &path)(e));
            }
            return Ok(range);
        }
        Err(Error::Exhausted {
            id: id.to_string(),
            slots: self.pool.slots(),
            size: USERNS_SIZE,
            start: self.pool.start,
            pool: self.pool.size,
        })
    }

    /// Releases what `id` holds. Idempotent.
    pub fn release(&self, id: &str) -> Result<Vec<IdRange>, Error> {
        let _lock = self.lock()?;
        self.release_where(|owner| owner == id)
    }

    fn release_where(&self, pred: impl Fn(&str) -> bool) -> Result<Vec<IdRange>, Error> {
        let mut released = Vec::new();
        for (range, owner) in self.list()? {
            if pred(&owner) {
                let path = self.dir.join(file_name(range));
                match fs::remove_file(&path) {
                    Ok(()) => released.push(range),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io("remove", &path)(e)),
                }
            }
        }
        if !released.is_empty() {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io("sync", &self.dir))?;
        }
        Ok(released)
    }

    /// Releases every range whose container `live` does not hold; returns them.
    pub fn gc(&self, live: impl Fn(&str) -> bool) -> Result<Vec<(IdRange, String)>, Error> {
        let _lock = self.lock()?;
        let stale: Vec<(IdRange, String)> = self
            .list()?
            .into_iter()
            .filter(|(_, owner)| !live(owner))
            .collect();
        self.release_where(|owner| stale.iter().any(|(_, o)| o == owner))?;
        Ok(stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(pool: &str) -> (tempfile::TempDir, Ranges) {
        let dir = tempfile::tempdir().unwrap();
        let r = Ranges::open(&dir.path().join("userns"), Pool::parse(pool).unwrap()).unwrap();
        (dir, r)
    }

    #[test]
    fn ranges_never_overlap_and_come_back_when_released() {
        let (_d, r) = store("100000:196608");
        let a = r.reserve("a").unwrap();
        let b = r.reserve("b").unwrap();
        let c = r.reserve("c").unwrap();
        assert_eq!((a.start, b.start, c.start), (100_000, 165_536, 231_072));
        assert!(!a.overlaps(&b) && !b.overlaps(&c));
        assert_eq!(r.reserve("a").unwrap(), a, "a container holds one range");
        let e = r.reserve("d").unwrap_err().to_string();
        assert!(
            e.contains("no free user namespace range for container d"),
            "{e}"
        );
        assert_eq!(r.release("b").unwrap(), vec![b]);
        assert_eq!(r.reserve("d").unwrap(), b);
        assert!(r.release("nobody").unwrap().is_empty());
    }

    #[test]
    fn gc_releases_what_no_live_container_holds_and_torn_files() {
        let (_d, r) = store("100000:196608");
        r.reserve("live").unwrap();
        let dead = r.reserve("dead").unwrap();
        // A crash between create and write leaves an empty file.
        File::create(r.dir.join("231072-65536")).unwrap();
        let stale = r.gc(|id| id == "live").unwrap();
        let starts: Vec<u32> = stale.iter().map(|(r, _)| r.start).collect();
        assert_eq!(starts, vec![dead.start, 231_072]);
        assert_eq!(r.list().unwrap().len(), 1);
    }

    #[test]
    fn a_reservation_of_another_size_still_blocks_what_it_overlaps() {
        let (_d, r) = store("100000:131072");
        File::create(r.dir.join("170000-10000"))
            .unwrap()
            .write_all(b"old\n")
            .unwrap();
        assert!(r.reserve("x").unwrap().start == 100_000);
        assert!(
            r.reserve("y").is_err(),
            "the second slot overlaps 170000-180000"
        );
    }

    #[test]
    fn pools_are_checked() {
        for bad in [
            "",
            "1",
            "0:65536",
            "100000:1000",
            "4294900000:131072",
            "x:y",
        ] {
            assert!(Pool::parse(bad).is_err(), "{bad}");
        }
    }
}
