//! Plans read back step by step, with their arguments: what the child will do.

use std::ffi::CStr;

use super::*;
use crate::process::{Slot, Step};
use container_protocol::security::{SeccompProgram, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};

/// No confinement of issue 10's resources: the plans of the older tests.
static NONE: crate::resources::Launch = crate::resources::Launch {
    cgroup: Vec::new(),
    rlimits: Vec::new(),
    oom_score_adj: None,
    proc: None,
    sysctls: Vec::new(),
    devices: Vec::new(),
    userns: None,
};

/// Docker's defaults, with a stand-in one-instruction filter (`ret ALLOW`).
fn confined() -> Confinement {
    Confinement {
        capabilities: 0xa80425fb,
        no_new_privileges: true,
        seccomp: Some(SeccompProgram {
            filter: [
                0x06u16.to_ne_bytes().to_vec(),
                vec![0, 0],
                0x7fff_0000u32.to_ne_bytes().to_vec(),
            ]
            .concat(),
            flags: 0,
        }),
        masked_paths: DEFAULT_MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
        readonly_paths: DEFAULT_READONLY_PATHS
            .iter()
            .map(|p| p.to_string())
            .collect(),
        read_only_rootfs: true,
        writable_sysfs: false,
        shm_size: 1 << 20,
    }
}

fn user(uid: u32) -> Credentials {
    Credentials {
        uid,
        gid: uid + 1,
        groups: vec![],
        home: "/home/u".into(),
    }
}

fn steps(plan: &Plan) -> Vec<&Step> {
    plan.steps().map(|(_, s)| s).collect()
}

/// Index of the first step `f` picks, or a panic that shows the plan.
fn at(plan: &Plan, what: &str, f: impl Fn(&Step) -> bool) -> usize {
    plan.steps().position(|(_, s)| f(s)).unwrap_or_else(|| {
        panic!(
            "no {what} in {:#?}",
            plan.steps().map(|(l, _)| l).collect::<Vec<_>>()
        )
    })
}

fn c(s: &CStr) -> &str {
    s.to_str().unwrap()
}

/// Where `path` is looked up inside the root and then mounted onto (with `fstype`).
fn lookup_then_mount(plan: &Plan, path: &str, fstype: Option<&str>) -> usize {
    let all = steps(plan);
    let i = at(
        plan,
        path,
        |s| matches!(s, Step::Resolve { root: Slot::Root, path: p, into: Slot::Target, .. } if c(p) == path),
    );
    match all[i + 1] {
        Step::MountAt {
            target: Slot::Target,
            fstype: t,
            ..
        } => assert_eq!(t.as_deref().map(c), fstype, "{path}"),
        other => panic!("{path} looked up, then {other:?}"),
    }
    i
}

fn workload(fs: Filesystem<'_>, tty: bool) -> Plan {
    let fd = std::fs::File::open("/dev/null").unwrap();
    let u = user(1000);
    let args = ["sh".to_string()];
    build(&LaunchSpec {
        entry: Entry::Workload {
            net: &fd,
            uts: &fd,
            ipc: &fd,
            fs,
        },
        args: &args,
        env: &[],
        cwd: Some("/srv"),
        hostname: "box",
        user: &u,
        tty,
        confinement: &confined(),
        resources: &NONE,
    })
    .unwrap()
}

fn exec() -> Plan {
    let u = user(1000);
    let args = ["sh".to_string()];
    build(&LaunchSpec {
        entry: Entry::Join {
            pid: std::process::id(),
        },
        args: &args,
        env: &[],
        cwd: Some("/srv"),
        hostname: "box",
        user: &u,
        tty: false,
        confinement: &confined(),
        resources: &NONE,
    })
    .unwrap()
}

#[test]
fn the_workload_mounts_inside_its_root_then_pivots_then_becomes_its_user() {
    let etc = EtcFiles::in_dir(Path::new("/state/c1/etc"));
    let plan = workload(
        Filesystem::Rootfs {
            path: Path::new("/r"),
            etc: &etc,
            mounts: &[],
        },
        true,
    );
    let all = steps(&plan);
    let nstypes: Vec<i32> = all
        .iter()
        .take_while(|s| matches!(s, Step::Setns { .. }))
        .map(|s| match s {
            Step::Setns { nstype, .. } => *nstype,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        nstypes,
        [libc::CLONE_NEWNET, libc::CLONE_NEWUTS, libc::CLONE_NEWIPC]
    );
    assert!(matches!(all[3], Step::Unshare(libc::CLONE_NEWNS)));
    assert!(
        matches!(all[4], Step::Mount { target, flags, .. } if c(target) == "/" && *flags == MS_REC | MS_PRIVATE)
    );
    let open_root = at(
        &plan,
        "open root",
        |s| matches!(s, Step::OpenDir { path, into: Slot::Root } if c(path) == "/r"),
    );
    let proc = lookup_then_mount(&plan, "proc", Some("proc"));
    let sys = lookup_then_mount(&plan, "sys", Some("sysfs"));
    let dev = lookup_then_mount(&plan, "dev", Some("tmpfs"));
    let hosts = lookup_then_mount(&plan, "etc/hosts", None);
    assert!(matches!(
        all[hosts + 1],
        Step::MountAt { src: Some(src), flags, .. } if c(src) == "/state/c1/etc/hosts" && *flags == libc::MS_BIND
    ));
    // Devices are made relative to the fresh /dev, never through a path.
    let null = at(
        &plan,
        "/dev/null",
        |s| matches!(s, Step::CreateAt { dir: Slot::Dev, name } if c(name) == "null"),
    );
    let pivot = at(&plan, "pivot_root", |s| matches!(s, Step::PivotRoot));
    let setgid = at(&plan, "setgid", |s| matches!(s, Step::Setgid(1001)));
    let setuid = at(&plan, "setuid", |s| matches!(s, Step::Setuid(1000)));
    let setsid = at(&plan, "setsid", |s| matches!(s, Step::Setsid));
    let cwd = at(
        &plan,
        "cwd",
        |s| matches!(s, Step::Chdir(p) if c(p) == "/srv"),
    );
    assert!(open_root < proc && proc < sys && sys < dev && dev < null && null < hosts);
    assert!(hosts < pivot && pivot < setsid && setsid < setgid && setgid < setuid);
    assert!(setuid < cwd);
    assert!(matches!(all[pivot - 1], Step::Close(Slot::Root)));
    assert!(matches!(all[pivot + 1], Step::DetachOldRoot));
    assert!(matches!(all[all.len() - 2], Step::CloexecAll));
    assert!(matches!(all.last(), Some(Step::Seccomp(_))));
}

#[test]
fn an_exec_joins_the_workloads_namespaces_mount_last_and_ends_like_the_workload() {
    let plan = exec();
    let all = steps(&plan);
    let nstypes: Vec<i32> = all
        .iter()
        .filter_map(|s| match s {
            Step::Setns { nstype, .. } => Some(*nstype),
            _ => None,
        })
        .collect();
    assert_eq!(
        nstypes,
        [
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWNS
        ]
    );
    assert!(!all.iter().any(|s| matches!(
        s,
        Step::Unshare(_) | Step::Mount { .. } | Step::MountAt { .. } | Step::Sethostname(_)
    )));
    // From the signals on, both are built by the same code: the same steps.
    let tail = |p: &Plan| -> Vec<String> {
        let from = at(p, "signal reset", |s| matches!(s, Step::DefaultSignal(_)));
        p.steps()
            .skip(from)
            .map(|(_, s)| format!("{s:?}"))
            .collect()
    };
    let etc = EtcFiles::in_dir(Path::new("/state/c1/etc"));
    let workload = workload(
        Filesystem::Host {
            etc: &etc,
            masked: &[],
        },
        false,
    );
    assert_eq!(tail(&plan), tail(&workload));
}

#[test]
fn without_a_rootfs_the_host_files_get_their_own_proc_and_masks_and_no_pivot() {
    let etc = EtcFiles::in_dir(Path::new("/state/c1/etc"));
    let masked = [PathBuf::from("/")];
    let plan = workload(
        Filesystem::Host {
            etc: &etc,
            masked: &masked,
        },
        false,
    );
    let proc = at(
        &plan,
        "/proc",
        |s| matches!(s, Step::Mount { target, fstype: Some(t), .. } if c(target) == "/proc" && c(t) == "proc"),
    );
    let mask = at(&plan, "mask", |s| {
        matches!(s, Step::Mount { target, fstype: Some(t), flags, .. }
            if c(target) == "/" && c(t) == "tmpfs" && flags & libc::MS_RDONLY != 0)
    });
    assert!(proc < mask);
    let all = steps(&plan);
    assert!(!all
        .iter()
        .any(|s| matches!(s, Step::PivotRoot | Step::Setsid)));
    assert!(all
        .iter()
        .any(|s| matches!(s, Step::Sethostname(h) if c(h) == "box")));
}

#[test]
fn confinement_goes_in_the_documented_order() {
    use crate::caps::CapStep;
    use crate::masks::MaskStep;
    let etc = EtcFiles::in_dir(Path::new("/state/c1/etc"));
    let plan = workload(
        Filesystem::Rootfs {
            path: Path::new("/r"),
            etc: &etc,
            mounts: &[],
        },
        false,
    );
    let all = steps(&plan);
    let pivot = at(&plan, "pivot_root", |s| matches!(s, Step::PivotRoot));
    let kcore = at(
        &plan,
        "mask kcore",
        |s| matches!(s, Step::Mask(MaskStep::Mask(p)) if c(p) == "/proc/kcore"),
    );
    let sys = at(
        &plan,
        "read-only /proc/sys",
        |s| matches!(s, Step::Mask(MaskStep::ReadOnly(p)) if c(p) == "/proc/sys"),
    );
    let root = at(&plan, "read-only root", |s| {
        matches!(s, Step::Mask(MaskStep::ReadOnlyRoot))
    });
    let bounding = at(&plan, "bounding set", |s| {
        matches!(
            s,
            Step::Caps(CapStep::Bounding {
                keep: 0xa80425fb,
                ..
            })
        )
    });
    let keep = at(&plan, "keepcaps", |s| {
        matches!(s, Step::Caps(CapStep::KeepCaps))
    });
    let setgroups = at(&plan, "setgroups", |s| matches!(s, Step::Setgroups(_)));
    let setuid = at(&plan, "setuid", |s| matches!(s, Step::Setuid(_)));
    // With no_new_privs the filter needs no CAP_SYS_ADMIN: exactly the set.
    let capset = at(&plan, "capset", |s| {
        matches!(
            s,
            Step::Caps(CapStep::Set {
                effective: 0xa80425fb,
                permitted: 0xa80425fb
            })
        )
    });
    let nnp = at(&plan, "no_new_privs", |s| {
        matches!(s, Step::Caps(CapStep::NoNewPrivs))
    });
    let seccomp = at(&plan, "seccomp", |s| matches!(s, Step::Seccomp(_)));
    assert!(
        pivot < kcore && kcore < sys && sys < root,
        "masks inside the new root"
    );
    assert!(root < bounding && bounding < keep && keep < setgroups);
    assert!(setuid < capset && capset < nnp && nnp < seccomp);
    assert_eq!(seccomp, all.len() - 1, "seccomp last");
    // /sys read-only, /dev/shm at the size asked for.
    let sysfs = lookup_then_mount(&plan, "sys", Some("sysfs"));
    assert!(matches!(all[sysfs + 1], Step::MountAt { flags, .. } if flags & libc::MS_RDONLY != 0));
    assert!(all.iter().any(
        |s| matches!(s, Step::MountAt { data: Some(d), .. } if c(d) == "mode=1777,size=1048576")
    ));
}

#[test]
fn an_exec_gets_the_workloads_confinement_without_remounting() {
    use crate::caps::CapStep;
    let plan = exec();
    let all = steps(&plan);
    assert!(!all.iter().any(|s| matches!(s, Step::Mask(_))));
    assert!(all.iter().any(|s| matches!(
        s,
        Step::Caps(CapStep::Bounding {
            keep: 0xa80425fb,
            ..
        })
    )));
    assert!(all
        .iter()
        .any(|s| matches!(s, Step::Caps(CapStep::NoNewPrivs))));
    assert!(matches!(all.last(), Some(Step::Seccomp(_))));
}

#[test]
fn without_no_new_privs_the_filter_is_loaded_holding_cap_sys_admin() {
    use crate::caps::CapStep;
    let fd = std::fs::File::open("/dev/null").unwrap();
    let u = user(1000);
    let args = ["sh".to_string()];
    let etc = EtcFiles::in_dir(Path::new("/state/c1/etc"));
    let mut c = confined();
    c.no_new_privileges = false;
    let plan = build(&LaunchSpec {
        entry: Entry::Workload {
            net: &fd,
            uts: &fd,
            ipc: &fd,
            fs: Filesystem::Host {
                etc: &etc,
                masked: &[],
            },
        },
        args: &args,
        env: &[],
        cwd: None,
        hostname: "box",
        user: &u,
        tty: false,
        confinement: &c,
        resources: &NONE,
    })
    .unwrap();
    let admin = 1u64 << 21;
    let all = steps(&plan);
    assert!(all.iter().any(|s| matches!(s,
        Step::Caps(CapStep::Set { effective, .. }) if *effective == 0xa80425fb | admin)));
    // The bounding set, which is what exec hands on, does not have it.
    assert!(all.iter().any(|s| matches!(s,
        Step::Caps(CapStep::Bounding { keep, .. }) if keep & admin == 0)));
    assert!(!all
        .iter()
        .any(|s| matches!(s, Step::Caps(CapStep::NoNewPrivs))));
}

/// Every resource step at once: two cgroup hierarchies, an rlimit, an OOM score, a
/// device, a user namespace.
fn resourced() -> crate::resources::Launch {
    let file = || std::os::fd::OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    crate::resources::Launch {
        cgroup: vec![
            ("/cg/memory/c".into(), file()),
            ("/cg/unified/c".into(), file()),
        ],
        rlimits: vec![container_protocol::resources::Ulimit {
            name: "nofile".into(),
            soft: 1024,
            hard: 2048,
        }],
        oom_score_adj: Some(500),
        proc: Some(file()),
        sysctls: vec![],
        devices: vec![crate::resources::DeviceNode {
            path: PathBuf::from("/dev/sub/fuse"),
            mode: libc::S_IFCHR | 0o666,
            dev: libc::makedev(10, 229),
            uid: 0,
            gid: 0,
        }],
        userns: Some(crate::resources::Userns {
            fd: file(),
            range: container_protocol::resources::IdRange {
                start: 100_000,
                size: 65_536,
            },
        }),
    }
}

#[test]
fn limits_and_the_cgroup_come_before_mounts_and_the_user_namespace_after_the_hostname() {
    let fd = std::fs::File::open("/dev/null").unwrap();
    let u = user(0);
    let args = vec!["true".to_string()];
    let etc = EtcFiles::in_dir(Path::new("/state/c1/etc"));
    let res = resourced();
    let plan = build(&LaunchSpec {
        entry: Entry::Workload {
            net: &fd,
            uts: &fd,
            ipc: &fd,
            fs: Filesystem::Rootfs {
                path: Path::new("/r"),
                etc: &etc,
                mounts: &[],
            },
        },
        args: &args,
        env: &[],
        cwd: None,
        hostname: "box",
        user: &u,
        tty: true,
        confinement: &confined(),
        resources: &res,
    })
    .unwrap();
    let unshare = at(&plan, "unshare", |s| {
        matches!(s, Step::Unshare(libc::CLONE_NEWNS))
    });
    let rlimit = at(&plan, "rlimit", |s| {
        matches!(
            s,
            Step::Setrlimit {
                resource: 7,
                soft: 1024,
                hard: 2048
            }
        )
    });
    let oom = at(
        &plan,
        "oom",
        |s| matches!(s, Step::WriteAt { path, data, .. } if c(path) == "self/oom_score_adj" && c(data) == "500"),
    );
    let joins: Vec<usize> = plan
        .steps()
        .enumerate()
        .filter(|(_, (_, s))| matches!(s, Step::WriteFd { data: b"0", .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(joins.len(), 2, "one cgroup.procs per hierarchy");
    let idmap = at(
        &plan,
        "idmapped root",
        |s| matches!(s, Step::IdmapBind { path, .. } if c(path) == "/r"),
    );
    assert!(
        !steps(&plan)
            .iter()
            .any(|s| matches!(s, Step::Mount { src: Some(src), .. } if c(src) == "/r")),
        "no plain bind of the root"
    );
    let pivot = at(&plan, "pivot_root", |s| matches!(s, Step::PivotRoot));
    let mkdir = at(
        &plan,
        "device dir",
        |s| matches!(s, Step::Mkdir(p) if c(p) == "/dev/sub"),
    );
    let mknod = at(
        &plan,
        "mknod",
        |s| matches!(s, Step::Mknod { path, .. } if c(path) == "/dev/sub/fuse"),
    );
    let hostname = at(&plan, "hostname", |s| matches!(s, Step::Sethostname(_)));
    let setsid = at(&plan, "setsid", |s| matches!(s, Step::Setsid));
    let userns = at(&plan, "user namespace", |s| {
        matches!(
            s,
            Step::Setns {
                nstype: libc::CLONE_NEWUSER,
                ..
            }
        )
    });
    let groups = at(&plan, "setgroups", |s| matches!(s, Step::Setgroups(_)));
    assert!(unshare < rlimit && rlimit < oom && oom < joins[0] && joins[1] < idmap);
    assert!(idmap < pivot && pivot < mkdir && mkdir < mknod && mknod < hostname);
    assert!(hostname < userns && setsid < userns && userns < groups);
}

#[test]
fn an_exec_gets_the_same_limits_cgroup_and_user_namespace() {
    let u = user(0);
    let args = vec!["true".to_string()];
    let res = resourced();
    let plan = build(&LaunchSpec {
        entry: Entry::Join {
            pid: std::process::id(),
        },
        args: &args,
        env: &[],
        cwd: None,
        hostname: "box",
        user: &u,
        tty: false,
        confinement: &confined(),
        resources: &res,
    })
    .unwrap();
    let mnt = at(&plan, "join mnt", |s| {
        matches!(
            s,
            Step::Setns {
                nstype: libc::CLONE_NEWNS,
                ..
            }
        )
    });
    let rlimit = at(&plan, "rlimit", |s| matches!(s, Step::Setrlimit { .. }));
    let join = at(&plan, "join cgroup", |s| matches!(s, Step::WriteFd { .. }));
    let userns = at(&plan, "user namespace", |s| {
        matches!(
            s,
            Step::Setns {
                nstype: libc::CLONE_NEWUSER,
                ..
            }
        )
    });
    let groups = at(&plan, "setgroups", |s| matches!(s, Step::Setgroups(_)));
    assert!(mnt < rlimit && rlimit < join && join < userns && userns < groups);
    assert!(
        !steps(&plan).iter().any(|s| matches!(s, Step::Mknod { .. })),
        "the workload's /dev is made once"
    );
}

#[test]
fn the_containers_mounts_come_after_the_roots_own_inside_it_and_before_pivot_root() {
    use container_protocol::volume::{Propagation, SandboxMount, SandboxMountKind};
    let etc = EtcFiles::in_dir(Path::new("/state/c1/etc"));
    let mounts = [
        SandboxMount {
            kind: SandboxMountKind::Bind {
                source: "/".into(),
                copy_up: false,
            },
            target: "/data".into(),
            readonly: true,
            propagation: Propagation::Rslave,
        },
        SandboxMount {
            kind: SandboxMountKind::Tmpfs {
                options: "mode=1777,size=1024".into(),
                exec: false,
            },
            target: "/tmp".into(),
            readonly: false,
            propagation: Propagation::Rprivate,
        },
    ];
    let plan = workload(
        Filesystem::Rootfs {
            path: Path::new("/r"),
            etc: &etc,
            mounts: &mounts,
        },
        false,
    );
    let all = steps(&plan);
    // rslave asked for: the new namespace's / stays a slave of the host's.
    assert!(
        matches!(all[4], Step::Mount { target, flags, .. } if c(target) == "/" && *flags == MS_REC | MS_SLAVE)
    );
    let hosts = lookup_then_mount(&plan, "etc/hosts", None);
    // Looked up inside the root (never by a host path), bound, looked up again (the
    // bind's top), propagation, then read-only.
    let data = lookup_then_mount(&plan, "data", None);
    assert!(matches!(
        all[data + 1],
        Step::MountAt { src: Some(src), flags, .. } if c(src) == "/" && *flags == libc::MS_BIND | MS_REC
    ));
    assert!(
        matches!(all[data + 2], Step::Resolve { root: Slot::Root, path, .. } if c(path) == "data")
    );
    assert!(
        matches!(all[data + 3], Step::MountAt { src: None, flags, .. } if *flags == MS_REC | MS_SLAVE)
    );
    assert!(matches!(
        all[data + 4],
        Step::MountAt { src: None, flags, .. } if flags & libc::MS_RDONLY != 0 && flags & libc::MS_REMOUNT != 0
    ));
    let tmp = lookup_then_mount(&plan, "tmp", Some("tmpfs"));
    assert!(matches!(
        all[tmp + 1],
        Step::MountAt { data: Some(d), flags, .. } if c(d) == "mode=1777,size=1024" && flags & libc::MS_NOEXEC != 0
    ));
    let pivot = at(&plan, "pivot_root", |s| matches!(s, Step::PivotRoot));
    let masks = at(&plan, "masks", |s| matches!(s, Step::Mask(_)));
    assert!(hosts < data && data < tmp && tmp < pivot && pivot < masks);
}

/// A workload plan with every resource step (a user namespace included).
fn in_userns(fs: Filesystem<'_>) -> Plan {
    let fd = std::fs::File::open("/dev/null").unwrap();
    let u = user(0);
    let args = ["sh".to_string()];
    let res = resourced();
    build(&LaunchSpec {
        entry: Entry::Workload {
            net: &fd,
            uts: &fd,
            ipc: &fd,
            fs,
        },
        args: &args,
        env: &[],
        cwd: None,
        hostname: "box",
        user: &u,
        tty: false,
        confinement: &confined(),
        resources: &res,
    })
    .unwrap()
}

#[test]
fn under_a_user_namespace_binds_are_idmapped_and_tmpfs_mounts_belong_to_its_root() {
    use container_protocol::volume::{Propagation, SandboxMount, SandboxMountKind};
    let etc = EtcFiles::in_dir(Path::new("/state/c1/etc"));
    let mounts = [
        SandboxMount {
            kind: SandboxMountKind::Bind {
                source: "/".into(),
                copy_up: false,
            },
            target: "/data".into(),
            readonly: true,
            propagation: Propagation::Rprivate,
        },
        SandboxMount {
            kind: SandboxMountKind::Tmpfs {
                options: "mode=1777".into(),
                exec: false,
            },
            target: "/tmp".into(),
            readonly: false,
            propagation: Propagation::Rprivate,
        },
    ];
    let plan = in_userns(Filesystem::Rootfs {
        path: Path::new("/r"),
        etc: &etc,
        mounts: &mounts,
    });
    let all = steps(&plan);
    let data = at(
        &plan,
        "lookup of /data",
        |s| matches!(s, Step::Resolve { root: Slot::Root, path, into: Slot::Target, .. } if c(path) == "data"),
    );
    // The clone goes onto the target looked up inside the root; never a plain bind.
    assert!(matches!(
        all[data + 1],
        Step::IdmapBindAt { source, target: Slot::Target, .. } if c(source) == "/"
    ));
    assert!(!all
        .iter()
        .any(|s| matches!(s, Step::MountAt { src: Some(src), .. } if c(src) == "/")));
    // Then as before: looked up again, propagation, read-only.
    assert!(
        matches!(all[data + 2], Step::Resolve { root: Slot::Root, path, .. } if c(path) == "data")
    );
    assert!(matches!(
        all[data + 4],
        Step::MountAt { src: None, flags, .. } if flags & libc::MS_RDONLY != 0
    ));
    let tmp = lookup_then_mount(&plan, "tmp", Some("tmpfs"));
    assert!(matches!(
        all[tmp + 1],
        Step::MountAt { data: Some(d), .. } if c(d) == "mode=1777,uid=100000,gid=100000"
    ));
    at(
        &plan,
        "/dev/shm the container root's",
        |s| matches!(s, Step::MountAt { data: Some(d), .. } if c(d).starts_with("mode=1777,size=") && c(d).ends_with(",uid=100000,gid=100000")),
    );
    let join = at(
        &plan,
        "user namespace",
        |s| matches!(s, Step::Setns { nstype, .. } if *nstype == libc::CLONE_NEWUSER),
    );
    assert!(tmp < join, "mounts are made with the host's privileges");
}

#[test]
fn under_a_user_namespace_an_images_overlay_is_made_of_idmapped_layers() {
    let etc = EtcFiles::in_dir(Path::new("/state/c1/etc"));
    let spec = container_protocol::sandbox::OverlaySpec {
        layers_dir: "/store/layers".into(),
        lower: vec!["bb/diff".into(), "aa/diff".into()],
        upper: "/state/c1/rootfs/upper".into(),
        work: "/state/c1/rootfs/work".into(),
        target: "/state/c1/rootfs/merged".into(),
        volatile: false,
    };
    let plan = in_userns(Filesystem::Overlay {
        spec: &spec,
        tree: None,
        etc: &etc,
        mounts: &[],
    });
    let all = steps(&plan);
    let ov = at(&plan, "idmapped overlay", |s| {
        matches!(s, Step::IdmapOverlay(_))
    });
    let Step::IdmapOverlay(o) = all[ov] else {
        unreachable!()
    };
    assert_eq!(c(&o.layers), "/store/layers");
    assert_eq!(
        o.lower.iter().map(|l| c(l)).collect::<Vec<_>>(),
        ["bb/diff", "aa/diff"],
        "top layer first"
    );
    assert_eq!(
        (c(&o.dir), c(&o.upper), c(&o.work)),
        ("/state/c1/rootfs", "upper", "work")
    );
    assert_eq!(
        (c(&o.target), o.owner),
        ("/state/c1/rootfs/merged", 100_000)
    );
    assert!(
        !all.iter()
            .any(|s| matches!(s, Step::Mount { fstype: Some(t), .. } if c(t) == "overlay")),
        "no plain overlay"
    );
    let root = at(
        &plan,
        "root opened",
        |s| matches!(s, Step::OpenDir { path, .. } if c(path) == "/state/c1/rootfs/merged"),
    );
    assert!(ov < root);
    // An upper and a work directory apart cannot be one idmapped mount.
    let apart = container_protocol::sandbox::OverlaySpec {
        work: "/elsewhere/work".into(),
        ..spec.clone()
    };
    let fd = std::fs::File::open("/dev/null").unwrap();
    let u = user(0);
    let res = resourced();
    let Err(e) = build(&LaunchSpec {
        entry: Entry::Workload {
            net: &fd,
            uts: &fd,
            ipc: &fd,
            fs: Filesystem::Overlay {
                spec: &apart,
                tree: None,
                etc: &etc,
                mounts: &[],
            },
        },
        args: &["sh".to_string()],
        env: &[],
        cwd: None,
        hostname: "box",
        user: &u,
        tty: false,
        confinement: &confined(),
        resources: &res,
    }) else {
        panic!("upper and work apart are refused")
    };
    assert!(e.to_string().contains("one directory"), "{e}");
}
