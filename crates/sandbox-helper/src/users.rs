//! `-u USER[:GROUP]` resolved against the container's own /etc/passwd and /etc/group,
//! read through the in-root lookup (a link there cannot lead to the host's), as runc
//! and Docker resolve it:
//!
//! * a user name must be in passwd; a number need not be (then gid 0, unless a group is
//!   given, and HOME `/`, or `/root` for uid 0);
//! * the primary group is the passwd entry's, or the given one (a group name must be in
//!   /etc/group);
//! * supplementary groups are the /etc/group entries that list the user, only when no
//!   group was given;
//! * HOME is the passwd entry's home.

use std::path::Path;

use container_protocol::sandbox::{Ident, UserSpec};
use container_protocol::ErrorKind;
use container_rootfs::Root;

use crate::plan::Credentials;

/// More than any real user database; the container chooses the files' sizes.
const LIMIT: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {name:?} not found in the container's /etc/passwd")]
    NoUser { name: String },
    #[error("group {name:?} not found in the container's /etc/group")]
    NoGroup { name: String },
    #[error("read the container's user database: {0}")]
    Read(#[from] container_rootfs::Error),
}

impl UserError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            UserError::NoUser { .. } | UserError::NoGroup { .. } => ErrorKind::Invalid,
            UserError::Read(e) => e.kind(),
        }
    }
}

/// One passwd line's fields that matter here.
struct Passwd<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

/// One /etc/group line.
struct Group<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = Passwd<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        match f.as_slice() {
            [name, _, uid, gid, _, home, ..] if !name.is_empty() => Some(Passwd {
                name,
                uid: uid.parse().ok()?,
                gid: gid.parse().ok()?,
                home,
            }),
            _ => None,
        }
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = Group<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        match f.as_slice() {
            [name, _, gid, members, ..] if !name.is_empty() => Some(Group {
                name,
                gid: gid.parse().ok()?,
                members: members.split(',').filter(|m| !m.is_empty()).collect(),
            }),
            [name, _, gid] if !name.is_empty() => Some(Group {
                name,
                gid: gid.parse().ok()?,
                members: vec![],
            }),
            _ => None,
        }
    })
}

/// A database file, empty when the container has none (numbers still resolve).
fn read(root: &Root, path: &str) -> Result<String, UserError> {
    match root.read(Path::new(path), LIMIT) {
        Ok(data) => Ok(String::from_utf8_lossy(&data).into_owned()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e.into()),
    }
}

/// Who `spec` is inside the root `root`.
pub fn resolve(root: &Root, spec: &UserSpec) -> Result<Credentials, UserError> {
    let passwd = read(root, "etc/passwd")?;
    let entry = passwd_entries(&passwd).find(|p| match &spec.user {
        Ident::Name(name) => p.name == name,
        Ident::Id(uid) => p.uid == *uid,
    });
    let uid = match (&entry, &spec.user) {
        (Some(p), _) => p.uid,
        (None, Ident::Id(uid)) => *uid,
        (None, Ident::Name(name)) => return Err(UserError::NoUser { name: name.clone() }),
    };
    let home = match &entry {
        Some(p) if !p.home.is_empty() => p.home.to_string(),
        _ if uid == 0 => "/root".to_string(),
        _ => "/".to_string(),
    };
    let needs_groups = spec
        .group
        .as_ref()
        .is_some_and(|g| matches!(g, Ident::Name(_)))
        || (spec.group.is_none() && entry.is_some());
    let group = if needs_groups {
        read(root, "etc/group")?
    } else {
        String::new()
    };
    let (gid, groups) = match &spec.group {
        Some(Ident::Id(gid)) => (*gid, vec![]),
        Some(Ident::Name(name)) => {
            let g = group_entries(&group)
                .find(|g| g.name == name)
                .ok_or_else(|| UserError::NoGroup { name: name.clone() })?;
            (g.gid, vec![])
        }
        None => {
            let mut groups: Vec<u32> = Vec::new();
            if let Some(p) = &entry {
                for g in group_entries(&group).filter(|g| g.members.contains(&p.name)) {
                    if !groups.contains(&g.gid) {
                        groups.push(g.gid);
                    }
                }
            }
            (entry.as_ref().map_or(0, |p| p.gid), groups)
        }
    };
    Ok(Credentials {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          broken line\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                          app:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nadm:x:4:app,other\nusers:x:100:app\nnogroup:x:65534:\napp:x:1000:\n";

    fn root_with(passwd: Option<&str>, group: Option<&str>) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        if let Some(p) = passwd {
            std::fs::write(dir.path().join("etc/passwd"), p).unwrap();
        }
        if let Some(g) = group {
            std::fs::write(dir.path().join("etc/group"), g).unwrap();
        }
        let root = Root::open(dir.path()).unwrap();
        (dir, root)
    }

    fn who(root: &Root, spec: &str) -> Result<Credentials, UserError> {
        resolve(root, &UserSpec::parse(spec).unwrap())
    }

    fn creds(uid: u32, gid: u32, groups: &[u32], home: &str) -> Credentials {
        Credentials {
            uid,
            gid,
            groups: groups.to_vec(),
            home: home.into(),
        }
    }

    #[test]
    fn names_and_numbers_resolve_as_docker_does() {
        let (_d, root) = root_with(Some(PASSWD), Some(GROUP));
        assert_eq!(
            who(&root, "app").unwrap(),
            creds(1000, 1000, &[4, 100], "/home/app")
        );
        assert_eq!(
            who(&root, "1000").unwrap(),
            creds(1000, 1000, &[4, 100], "/home/app")
        );
        // An explicit group: that one, and no supplementary groups.
        assert_eq!(
            who(&root, "app:users").unwrap(),
            creds(1000, 100, &[], "/home/app")
        );
        assert_eq!(
            who(&root, "app:7").unwrap(),
            creds(1000, 7, &[], "/home/app")
        );
        assert_eq!(
            who(&root, "nobody").unwrap(),
            creds(65534, 65534, &[], "/nonexistent")
        );
        // A number that passwd does not know.
        assert_eq!(who(&root, "4242").unwrap(), creds(4242, 0, &[], "/"));
        assert_eq!(who(&root, "0:0").unwrap(), creds(0, 0, &[], "/root"));
    }

    #[test]
    fn missing_names_are_invalid_and_numbers_need_no_files() {
        let (_d, root) = root_with(Some(PASSWD), Some(GROUP));
        let err = who(&root, "nosuch").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert_eq!(
            err.to_string(),
            "user \"nosuch\" not found in the container's /etc/passwd"
        );
        let err = who(&root, "app:nosuch").unwrap_err();
        assert_eq!(
            err.to_string(),
            "group \"nosuch\" not found in the container's /etc/group"
        );
        let (_d, empty) = root_with(None, None);
        assert_eq!(who(&empty, "0").unwrap(), creds(0, 0, &[], "/root"));
        assert_eq!(who(&empty, "5:6").unwrap(), creds(5, 6, &[], "/"));
        assert!(matches!(
            who(&empty, "nobody"),
            Err(UserError::NoUser { .. })
        ));
    }

    #[test]
    fn the_host_database_is_never_read_through_a_link() {
        let (dir, root) = root_with(None, None);
        let host = tempfile::tempdir().unwrap();
        let host_passwd = host.path().join("passwd");
        std::fs::write(&host_passwd, PASSWD).unwrap();
        // Followed inside the root, the link leads nowhere: the container has no root.
        std::os::unix::fs::symlink(&host_passwd, dir.path().join("etc/passwd")).unwrap();
        assert!(matches!(who(&root, "root"), Err(UserError::NoUser { .. })));
    }
}
