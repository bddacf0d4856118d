//! Plans read back step by step, with their arguments: what the child will do.

use std::ffi::CStr;

use super::*;
use crate::process::{Slot, Step};

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
    assert!(matches!(all.last(), Some(Step::CloexecAll)));
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
