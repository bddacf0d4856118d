//! Compiled programs by (profile text, capabilities): a profile is compiled once per
//! capability set, at the first create that uses it, not at every start.

use std::sync::{Arc, Mutex};

use container_protocol::security::SeccompProgram;

use crate::{compile, parse, Arch, CompileError, ProfileError, Target};

/// Distinct (profile, capabilities) pairs kept; past it the oldest goes.
const CAPACITY: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("seccomp filters are not supported on {0}")]
    Arch(&'static str),
}

type Key = (String, Vec<String>);

#[derive(Default)]
pub struct Cache {
    entries: Mutex<Vec<(Key, Arc<SeccompProgram>)>>,
    compiled: std::sync::atomic::AtomicU64,
}

impl Cache {
    /// The program for `profile` (its text) with `caps` (canonical names, sorted), and
    /// how long compiling it took when it was compiled by this call.
    pub fn get(
        &self,
        profile: &str,
        caps: &[String],
    ) -> Result<(Arc<SeccompProgram>, Option<std::time::Duration>), CacheError> {
        let key = (profile.to_string(), caps.to_vec());
        if let Some((_, p)) = self.lock().iter().find(|(k, _)| *k == key) {
            return Ok((p.clone(), None));
        }
        let arch = Arch::native().ok_or(CacheError::Arch(std::env::consts::ARCH))?;
        let parsed = parse(profile)?;
        let started = std::time::Instant::now();
        let program = Arc::new(compile(
            &parsed,
            &Target {
                arch,
                kernel: crate::running_kernel(),
                caps,
            },
        )?);
        self.compiled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let took = started.elapsed();
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.remove(0);
        }
        entries.push((key, program.clone()));
        Ok((program, Some(took)))
    }

    /// How many compilations this cache has made.
    pub fn compiled(&self) -> u64 {
        self.compiled.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Key, Arc<SeccompProgram>)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_compiled_once_per_capability_set() {
        let cache = Cache::default();
        let caps: Vec<String> = container_protocol::security::DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .collect();
        let (a, fresh) = cache.get(crate::DEFAULT_PROFILE, &caps).unwrap();
        assert!(fresh.is_some());
        let (b, again) = cache.get(crate::DEFAULT_PROFILE, &caps).unwrap();
        assert!(again.is_none());
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(cache.compiled(), 1);
        let mut more = caps.clone();
        more.push("CAP_SYS_ADMIN".into());
        let (c, _) = cache.get(crate::DEFAULT_PROFILE, &more).unwrap();
        assert_ne!(a.filter, c.filter, "CAP_SYS_ADMIN unlocks calls");
        assert_eq!(cache.compiled(), 2);
    }
}
