//! Where the cgroup hierarchies are mounted, read from the mount table.
//!
//! * v2 (unified): one cgroup2 mount, its controllers in `cgroup.controllers`.
//! * v1: one mount per controller (or per co-mounted group, `cpu,cpuacct`).
//! * hybrid: v1 controllers, and a cgroup2 mount (`/sys/fs/cgroup/unified`) that holds
//!   none or few of them. Its core files still work there: membership, `cgroup.kill`,
//!   `cgroup.events`, `cpu.stat`, and eBPF device programs, so it is used for those.

use std::path::{Path, PathBuf};

use crate::Error;

/// The v1 controllers a container's cgroup is made in. `cpuset` is left out: its
/// children must be given CPUs and memory nodes before a task may join, and no flag asks
/// for it. Named hierarchies (`name=systemd`) are systemd's.
pub const V1_CONTROLLERS: [&str; 6] = ["memory", "cpu", "cpuacct", "pids", "devices", "freezer"];

/// The v2 controllers used when the host has them.
pub const V2_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// v1 mounts of the controllers in [`V1_CONTROLLERS`], one entry per mount, with
    /// the controllers it carries.
    pub v1: Vec<(PathBuf, Vec<String>)>,
    /// The cgroup2 mount, if any.
    pub unified: Option<PathBuf>,
    /// Controllers the cgroup2 mount offers (`cgroup.controllers` of its root).
    pub unified_controllers: Vec<String>,
}

impl Layout {
    /// The hierarchies of this mount namespace.
    pub fn detect() -> Result<Layout, Error> {
        let table = std::fs::read_to_string("/proc/thread-self/mountinfo")
            .map_err(Error::io("read /proc/thread-self/mountinfo"))?;
        Ok(Layout::from_mountinfo(&table))
    }

    /// The cgroup lines of this mount namespace's table, which [`Layout::from_mountinfo`]
    /// takes: for a process to hand to another in the same namespace, which would
    /// otherwise read the whole table, every mount of the host's, itself (5 ms with the
    /// network namespaces of 1,000 containers mounted).
    pub fn mount_lines() -> Result<String, Error> {
        let table = std::fs::read_to_string("/proc/thread-self/mountinfo")
            .map_err(Error::io("read /proc/thread-self/mountinfo"))?;
        let mut out = String::new();
        for line in table.lines() {
            let fstype = line
                .split_once(" - ")
                .and_then(|(_, right)| right.split(' ').next());
            if matches!(fstype, Some("cgroup" | "cgroup2")) {
                out.push_str(line);
                out.push('\n');
            }
        }
        Ok(out)
    }

    /// Parses a mountinfo table (see proc(5)). The first mount of each hierarchy wins.
    pub fn from_mountinfo(table: &str) -> Layout {
        let mut layout = Layout {
            v1: Vec::new(),
            unified: None,
            unified_controllers: Vec::new(),
        };
        for (mount, fstype, opts) in cgroup_mounts(table) {
            match fstype {
                "cgroup2" if layout.unified.is_none() => layout.unified = Some(mount),
                "cgroup" => {
                    let controllers: Vec<String> = opts
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o))
                        .map(str::to_string)
                        .collect();
                    let taken = |c: &String| layout.v1.iter().any(|(_, cs)| cs.contains(c));
                    if !controllers.is_empty() && !controllers.iter().any(taken) {
                        layout.v1.push((mount, controllers));
                    }
                }
                _ => {}
            }
        }
        if let Some(unified) = &layout.unified {
            layout.unified_controllers =
                std::fs::read_to_string(unified.join("cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
        }
        layout
    }

    /// No v1 controller: a pure v2 host, where limits and devices go through cgroup2.
    pub fn is_unified(&self) -> bool {
        self.v1.is_empty() && self.unified.is_some()
    }

    /// The v1 mount carrying `controller`.
    pub fn v1_mount(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(_, cs)| cs.iter().any(|c| c == controller))
            .map(|(m, _)| m.as_path())
    }

    /// Whether cgroup2 carries `controller` (and v1 does not claim it).
    pub fn v2_has(&self, controller: &str) -> bool {
        self.unified.is_some()
            && self.v1_mount(controller).is_none()
            && self.unified_controllers.iter().any(|c| c == controller)
    }

    /// A short name for messages and `inspect`: `v2`, `v1`, `hybrid`.
    pub fn describe(&self) -> &'static str {
        match (self.v1.is_empty(), self.unified.is_some()) {
            (true, true) => "v2",
            (false, true) => "hybrid",
            (false, false) => "v1",
            (true, false) => "none",
        }
    }

    /// Whether a container's cgroup has a directory in cgroup2. Not on a hybrid host
    /// whose cgroup2 carries none of the controllers used here (this one's carries
    /// only hugetlb) while v1 has a freezer and a devices controller: there cgroup2
    /// would give only `cgroup.kill` and `cpu.stat`, which the v1 freezer and cpuacct
    /// give too, and joining it costs every process started an RCU grace period (a
    /// `cgroup.procs` write; v1 joins through `tasks`, which skips it: see
    /// `Cgroup::procs_files`).
    pub fn joins_unified(&self) -> bool {
        self.unified.is_some()
            && (V2_CONTROLLERS.iter().any(|c| self.v2_has(c))
                || self.v1_mount("freezer").is_none()
                || self.v1_mount("devices").is_none())
    }

    /// Every hierarchy root a container's cgroup has a directory in. When it joins
    /// cgroup2, a v1 mount of only `freezer` and `cpuacct` is left out: `cgroup.kill`
    /// and cgroup2's `cpu.stat` do their work, and each hierarchy joined is one more
    /// migration (and mkdir, rmdir) per process started.
    pub fn roots(&self) -> Vec<&Path> {
        let unified = self.joins_unified();
        let spare =
            |cs: &Vec<String>| unified && cs.iter().all(|c| c == "freezer" || c == "cpuacct");
        self.v1
            .iter()
            .filter(|(_, cs)| !spare(cs))
            .map(|(m, _)| m.as_path())
            .chain(self.unified.as_deref().filter(|_| unified))
            .collect()
    }
}

/// The root of every cgroup hierarchy mounted here, whatever its controllers.
pub(crate) fn every_hierarchy() -> Vec<PathBuf> {
    let table = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
    hierarchies_in(&table)
}

fn hierarchies_in(table: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    for (mount, _, _) in cgroup_mounts(table) {
        if !found.contains(&mount) {
            found.push(mount);
        }
    }
    found
}

/// The cgroup and cgroup2 mounts of a mountinfo table (see proc(5)) that are a
/// hierarchy's root (a bind of a sub-directory is not): mount point, type, super
/// options.
fn cgroup_mounts(table: &str) -> impl Iterator<Item = (PathBuf, &str, &str)> {
    table.lines().filter_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        let rfields: Vec<&str> = right.split(' ').collect();
        let fstype = *rfields.first()?;
        if fields.get(3) != Some(&"/") || !matches!(fstype, "cgroup" | "cgroup2") {
            return None;
        }
        let mount = PathBuf::from(unescape(fields.get(4)?));
        Some((mount, fstype, rfields.get(2).copied().unwrap_or("")))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(v1: &[(&str, &[&str])], unified: Option<&[&str]>) -> Layout {
        Layout {
            v1: v1
                .iter()
                .map(|(m, cs)| (PathBuf::from(m), cs.iter().map(|c| c.to_string()).collect()))
                .collect(),
            unified: unified.map(|_| PathBuf::from("/cg/unified")),
            unified_controllers: unified
                .unwrap_or_default()
                .iter()
                .map(|c| c.to_string())
                .collect(),
        }
    }

    const V1: [(&str, &[&str]); 4] = [
        ("/cg/memory", &["memory"]),
        ("/cg/freezer", &["freezer"]),
        ("/cg/cpuacct", &["cpuacct"]),
        ("/cg/devices", &["devices"]),
    ];

    /// The lines handed to a helper give it the layout it would have read itself.
    #[test]
    fn the_cgroup_lines_give_the_whole_tables_layout() {
        let lines = Layout::mount_lines().unwrap();
        assert!(lines.lines().all(|l| l.contains(" - cgroup")), "{lines}");
        assert_eq!(Layout::from_mountinfo(&lines), Layout::detect().unwrap());
    }

    #[test]
    fn every_hierarchy_is_found_whatever_its_controllers() {
        let table = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio
33 30 0:29 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 /sub /mnt/x rw - cgroup cgroup rw,pids
";
        let found = hierarchies_in(table);
        assert_eq!(
            found,
            [
                "/sys/fs/cgroup/unified",
                "/sys/fs/cgroup/blkio",
                "/sys/fs/cgroup/systemd"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn a_hybrid_cgroup2_without_our_controllers_is_left_for_the_v1_freezer() {
        // This machine's cgroup2 carries hugetlb alone: none of ours.
        for carried in [&[][..], &["hugetlb"][..], &["memory"][..]] {
            let l = layout(&V1, Some(carried));
            assert!(!l.joins_unified(), "{carried:?}");
            let roots: Vec<&str> = l.roots().iter().map(|p| p.to_str().unwrap()).collect();
            assert_eq!(
                roots,
                ["/cg/memory", "/cg/freezer", "/cg/cpuacct", "/cg/devices"]
            );
        }
    }

    #[test]
    fn a_cgroup2_with_controllers_or_without_a_v1_freezer_is_joined() {
        let l = layout(&V1, Some(&["pids"]));
        assert!(l.joins_unified());
        let roots: Vec<&str> = l.roots().iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(roots, ["/cg/memory", "/cg/devices", "/cg/unified"]);
        let l = layout(&[("/cg/memory", &["memory"])], Some(&[]));
        assert!(l.joins_unified());
        let l = layout(&[], Some(&[]));
        assert!(l.joins_unified());
        assert_eq!(l.roots(), [Path::new("/cg/unified")]);
        assert!(!layout(&V1, None).joins_unified());
    }

    #[test]
    fn hybrid_v1_and_v2_tables_read_as_such() {
        let hybrid = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 /sub /mnt/x rw - cgroup cgroup rw,pids
";
        let l = Layout::from_mountinfo(hybrid);
        assert_eq!(l.describe(), "hybrid");
        assert_eq!(
            l.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            l.v1_mount("cpuacct"),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(
            l.v1_mount("memory"),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            l.v1_mount("pids"),
            None,
            "a bind of a sub-directory is no root"
        );
        assert_eq!(l.v1.len(), 2);
        assert_eq!(l.roots().len(), 3, "cpu,cpuacct stays for cpu");
        let v2 = "31 25 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = Layout::from_mountinfo(v2);
        assert!(l.is_unified());
        assert_eq!(l.describe(), "v2");
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}
