//! One async lock per named object (a container, a network), so work on one object is
//! serialised without a global lock held across calls to helpers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    pub fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string()).or_default().clone()
    }

    /// Drops the lock of an object that is gone, so the table does not grow with every
    /// object ever made. A holder keeps its own reference.
    pub fn forget(&self, key: &str) {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// One read-write lock per named object: many holders of one kind of work (starts
/// allocating on a network) exclude the other kind (its GC) without excluding each
/// other.
#[derive(Default)]
pub struct KeyedGates {
    gates: Mutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
}

impl KeyedGates {
    pub fn get(&self, key: &str) -> Arc<tokio::sync::RwLock<()>> {
        let mut map = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string()).or_default().clone()
    }
}
