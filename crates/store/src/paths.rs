//! Where state lives. Every root is configurable (flag and environment variable) so that
//! tests run in a temporary tree.

use std::path::{Path, PathBuf};

use container_protocol::HelperKind;

use crate::names::{validate_id, NameKind};
use crate::StoreError;

pub const DEFAULT_ROOT: &str = "/var/lib/container";
pub const DEFAULT_RUN_DIR: &str = "/run/container";
pub const ROOT_ENV: &str = "CONTAINER_ROOT";
pub const RUN_DIR_ENV: &str = "CONTAINER_RUN_DIR";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub root: PathBuf,
    pub run: PathBuf,
}

impl Paths {
    pub fn new(root: impl Into<PathBuf>, run: impl Into<PathBuf>) -> Self {
        Paths {
            root: root.into(),
            run: run.into(),
        }
    }

    pub fn networks(&self) -> PathBuf {
        self.root.join("networks")
    }
    pub fn network_config(&self, name: &str) -> Result<PathBuf, StoreError> {
        validate_id(NameKind::Network, name)?;
        Ok(self.networks().join(format!("{name}.json")))
    }
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn container_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        validate_id(NameKind::Container, id)?;
        Ok(self.containers().join(id))
    }
    pub fn ipam(&self) -> PathBuf {
        self.root.join("ipam")
    }
    pub fn ipam_network(&self, name: &str) -> Result<PathBuf, StoreError> {
        validate_id(NameKind::Network, name)?;
        Ok(self.ipam().join(name))
    }

    pub fn apiserver_socket(&self) -> PathBuf {
        self.run.join("apiserver.sock")
    }
    pub fn apiserver_lock(&self) -> PathBuf {
        self.run.join("apiserver.lock")
    }
    pub fn apiserver_log(&self) -> PathBuf {
        self.run.join("apiserver.log")
    }
    pub fn helpers(&self) -> PathBuf {
        self.run.join("helpers")
    }
    pub fn helper_dir(&self, kind: HelperKind) -> PathBuf {
        self.helpers().join(kind.as_str())
    }
    /// `<run>/helpers/<kind>/<id>.sock`, `.log`, `.pid`.
    pub fn helper_file(
        &self,
        kind: HelperKind,
        id: &str,
        ext: &str,
    ) -> Result<PathBuf, StoreError> {
        let name_kind = match kind {
            HelperKind::Network => NameKind::Network,
            HelperKind::Sandbox => NameKind::Container,
        };
        validate_id(name_kind, id)?;
        Ok(self.helper_dir(kind).join(format!("{id}.{ext}")))
    }
    /// A helper's files, named once here.
    pub fn helper_files(&self, kind: HelperKind, id: &str) -> Result<HelperPaths, StoreError> {
        Ok(HelperPaths {
            bootstrap: container_protocol::helper_server::HelperFiles {
                socket: self.helper_file(kind, id, "sock")?,
                pid: self.helper_file(kind, id, "pid")?,
            },
            log: self.helper_file(kind, id, "log")?,
        })
    }
    pub fn netns_dir(&self) -> PathBuf {
        self.run.join("netns")
    }
    /// `<run>/netns/<id>`: the bind mount that keeps a container's netns alive.
    pub fn netns(&self, id: &str) -> Result<PathBuf, StoreError> {
        validate_id(NameKind::Container, id)?;
        Ok(self.netns_dir().join(id))
    }
}

/// A helper's bootstrap socket, pid file and log.
#[derive(Debug, Clone)]
pub struct HelperPaths {
    pub bootstrap: container_protocol::helper_server::HelperFiles,
    pub log: PathBuf,
}

/// Resolves a root from flag, then environment, then default.
pub fn resolve(flag: Option<&Path>, env: &str, default: &str) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os(env) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(default),
    }
}
