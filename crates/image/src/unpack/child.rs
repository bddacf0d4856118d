//! The unpacker as a process of its own: `container-unpack`, started by the store for
//! each layer with the blob on stdin and the empty layer directory as its argument. It
//! reports on stdout (one JSON [`Report`]) or fails with one line on stderr.
//!
//! What it holds while it reads the stranger's bytes, and why:
//!
//! * root's uid, because the files must belong to the uids the tar names, as the
//!   container will see them (no user namespace: the container runs in the host's);
//! * of the capabilities only CHOWN, DAC_OVERRIDE, FOWNER, FSETID and SETFCAP: owners,
//!   modes on files it does not own, setgid bits, file capabilities. None of the
//!   others: no mounts, no ptrace, no network configuration, no module loading, no
//!   raw I/O, no device nodes (whiteouts need no CAP_MKNOD since Linux 5.8). The
//!   bounding set is cut to the same list and no_new_privs is set, so nothing it could
//!   exec gets more back;
//! * its own mount, network, IPC and UTS namespaces: no network at all, and a mount
//!   table it cannot change. It is chrooted into the layer directory before reading a
//!   byte, with its working directory there, so even a path resolved wrongly cannot
//!   name a host file; every lookup is in-root besides (`entries`);
//! * RLIMIT_FSIZE at the layer limit, few descriptors, no core dumps;
//! * it dies with the apiserver thread that started it (parent-death signal).
//!
//! No seccomp filter: the calls it needs are those of any file writer, and the
//! capability set above is what bounds their effect.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Limits, Report};
use crate::error::{invalid, ImageError, Result};

/// The capabilities the child keeps.
/// CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_SETFCAP (linux/capability.h).
const KEEP: [u32; 5] = [0, 1, 3, 4, 31];

/// Starts `program` on `blob` into `dir` (empty) and returns its report.
pub fn unpack_in_child(
    program: &Path,
    blob: std::fs::File,
    dir: &Path,
    limits: &Limits,
) -> Result<Report> {
    let out = Command::new(program)
        .arg("--dir")
        .arg(dir)
        .arg("--limits")
        .arg(serde_json::to_string(limits).unwrap_or_default())
        .stdin(Stdio::from(blob))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| ImageError::io(format!("start {}", program.display()))(e))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg = msg.lines().last().unwrap_or("").trim();
        return Err(invalid(if msg.is_empty() {
            format!("the unpacker ended with {}", out.status)
        } else {
            msg.to_string()
        }));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| invalid(format!("the unpacker's report is not readable: {e}")))
}

/// `container-unpack --dir DIR --limits JSON`: confine, then unpack stdin into DIR.
pub fn main(args: &[String]) -> std::result::Result<Report, String> {
    let mut dir: Option<PathBuf> = None;
    let mut limits = Limits::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => dir = it.next().map(PathBuf::from),
            "--limits" => {
                limits = serde_json::from_str(it.next().map(String::as_str).unwrap_or(""))
                    .map_err(|e| format!("--limits: {e}"))?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let dir = dir.ok_or("--dir DIR is required")?;
    confine(&dir, &limits)?;
    let root = container_rootfs::Root::open(Path::new("/")).map_err(|e| e.to_string())?;
    let stdin = std::io::stdin().lock();
    super::apply(&root, stdin, limits).map_err(|e| e.to_string())
}

fn confine(dir: &Path, limits: &Limits) -> std::result::Result<(), String> {
    use nix::sched::{unshare, CloneFlags};
    let step = |what: &str| {
        let what = what.to_string();
        move |e: nix::Error| format!("confine the unpacker: {what}: {}", e.desc())
    };
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS,
    )
    .map_err(step("unshare namespaces"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(step("make mounts private"))?;
    nix::unistd::chroot(dir).map_err(step(&format!("chroot {}", dir.display())))?;
    nix::unistd::chdir("/").map_err(step("chdir /"))?;
    use nix::sys::resource::{setrlimit, Resource};
    let fsize = limits.layer_bytes.saturating_add(1 << 20);
    setrlimit(Resource::RLIMIT_FSIZE, fsize, fsize).map_err(step("RLIMIT_FSIZE"))?;
    setrlimit(Resource::RLIMIT_NOFILE, 256, 256).map_err(step("RLIMIT_NOFILE"))?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(step("RLIMIT_CORE"))?;
    drop_capabilities().map_err(step("drop capabilities"))?;
    Ok(())
}

/// Bounding set, ambient set, then effective/permitted/inheritable down to [`KEEP`],
/// then no_new_privs.
pub fn drop_capabilities() -> nix::Result<()> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40);
    for cap in 0..=last.max(63) {
        if !KEEP.contains(&cap) {
            // SAFETY: prctl with integer arguments; EINVAL past the last cap is fine.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        }
    }
    // SAFETY: as above.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    let mut mask = [0u32; 2];
    for cap in KEEP {
        mask[(cap / 32) as usize] |= 1 << (cap % 32);
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [
        Data {
            effective: mask[0],
            permitted: mask[0],
            inheritable: 0,
        },
        Data {
            effective: mask[1],
            permitted: mask[1],
            inheritable: 0,
        },
    ];
    // SAFETY: header and two data structs, as capset(2) takes for version 3.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
    if rc != 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

/// The effective capability mask of `pid`, from /proc (for tests and checks).
pub fn effective_caps(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// The mask of [`KEEP`].
pub fn kept_mask() -> u64 {
    KEEP.iter().fold(0, |m, c| m | (1u64 << c))
}
