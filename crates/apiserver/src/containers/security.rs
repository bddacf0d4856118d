//! A container's confinement: checked and made effective at create (what `inspect`
//! shows and the record keeps), and turned into what the sandbox applies at start.

use container_protocol::security::{
    canonical_capability, capability_mask, effective_capabilities, Confinement, SeccompConfig,
    SecurityConfig,
};
use container_store::container::ContainerConfig;

use super::Containers;
use crate::error::{bad, ApiError};

/// Apiserver-wide defaults for what a container leaves unsaid.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecurityDefaults {
    /// `container-apiserver --no-new-privileges`: no_new_privs for every container that
    /// does not say otherwise.
    pub no_new_privileges: bool,
}

/// The smallest /dev/shm: one page.
const MIN_SHM_SIZE: u64 = 4096;

fn canonical(id: &str, flag: &str, names: &[String]) -> Result<Vec<String>, ApiError> {
    names
        .iter()
        .map(|n| canonical_capability(n).map_err(|e| bad(format!("container {id}: {flag}: {e}"))))
        .collect()
}

/// Absolute, without `..`: masks and read-only paths are the container's, looked up
/// inside its root.
fn check_paths(id: &str, what: &str, paths: &[String]) -> Result<(), ApiError> {
    for p in paths {
        let ok = p.starts_with('/') && !p.split('/').any(|c| c == "..") && !p.contains('\0');
        if !ok {
            return Err(bad(format!(
                "container {id}: {what} {p:?} must be an absolute path without \"..\""
            )));
        }
    }
    Ok(())
}

impl Containers {
    /// Checks the security part of `config` and fills in its effective settings:
    /// canonical capability names and the resulting set, no_new_privs, and a seccomp
    /// profile compiled once (so a profile that does not compile fails here, before
    /// anything exists). Changes nothing on the host.
    pub(super) fn resolve_security(&self, config: &mut ContainerConfig) -> Result<(), ApiError> {
        let id = config.id.clone();
        let s = &mut config.security;
        match (&config.rootfs, &config.image, s.host_rootfs) {
            (None, None, false) => {
                return Err(bad(format!(
                    "container {id}: no root filesystem: name an image, pass --rootfs DIR, or --host-rootfs to run on this host's own files"
                )))
            }
            (Some(r), _, true) => {
                return Err(bad(format!(
                    "container {id}: --rootfs {r} and --host-rootfs are given together: use one"
                )))
            }
            (_, Some(i), true) => {
                return Err(bad(format!(
                    "container {id}: image {} and --host-rootfs are given together: use one",
                    i.reference
                )))
            }
            _ => {}
        }
        s.cap_add = canonical(&id, "--cap-add", &s.cap_add)?;
        s.cap_drop = canonical(&id, "--cap-drop", &s.cap_drop)?;
        s.capabilities = effective_capabilities(s.privileged, &s.cap_add, &s.cap_drop);
        if s.no_new_privileges.is_none() {
            s.no_new_privileges = Some(self.security.no_new_privileges);
        }
        if s.privileged {
            // Docker's --privileged: nothing hidden, nothing read-only.
            s.masked_paths.clear();
            s.readonly_paths.clear();
        }
        check_paths(&id, "masked path", &s.masked_paths)?;
        check_paths(&id, "read-only path", &s.readonly_paths)?;
        if s.shm_size < MIN_SHM_SIZE {
            return Err(bad(format!(
                "container {id}: --shm-size {} is below the minimum of {MIN_SHM_SIZE} bytes",
                s.shm_size
            )));
        }
        self.seccomp_program(&id, s)?;
        Ok(())
    }

    /// The compiled filter for `s`, if it has one (from the cache after the first time).
    fn seccomp_program(
        &self,
        id: &str,
        s: &SecurityConfig,
    ) -> Result<Option<container_protocol::security::SeccompProgram>, ApiError> {
        let (text, source) = match &s.seccomp {
            // --privileged drops the default filter, not one the user gave.
            SeccompConfig::Default if s.privileged => return Ok(None),
            SeccompConfig::Unconfined => return Ok(None),
            SeccompConfig::Default => (container_seccomp::DEFAULT_PROFILE, "default"),
            SeccompConfig::Profile { source, profile } => (profile.as_str(), source.as_str()),
        };
        match self.seccomp.get(text, &s.capabilities) {
            Ok((program, took)) => {
                if let Some(took) = took {
                    tracing::info!(
                        "seccomp profile {source} compiled for {} capabilities: {} instructions in {:.1} ms",
                        s.capabilities.len(),
                        program.filter.len() / 8,
                        took.as_secs_f64() * 1e3
                    );
                }
                Ok(Some((*program).clone()))
            }
            Err(container_seccomp::cache::CacheError::Compile(e)) => Err(ApiError::Internal(
                format!("container {id}: seccomp profile {source}: {e}"),
            )),
            Err(e) => Err(bad(format!(
                "container {id}: seccomp profile {source}: {e}"
            ))),
        }
    }

    /// What the sandbox applies, from a record's effective settings.
    pub(super) fn confinement(&self, config: &ContainerConfig) -> Result<Confinement, ApiError> {
        let s = &config.security;
        Ok(Confinement {
            capabilities: capability_mask(&s.capabilities),
            no_new_privileges: s
                .no_new_privileges
                .unwrap_or(self.security.no_new_privileges),
            seccomp: self.seccomp_program(&config.id, s)?,
            masked_paths: s.masked_paths.clone(),
            readonly_paths: s.readonly_paths.clone(),
            read_only_rootfs: s.read_only,
            writable_sysfs: s.privileged,
            shm_size: s.shm_size,
        })
    }
}
