//! Compiled profiles loaded into the kernel, in a forked child, and the system calls a
//! workload would make: what each one answers under the filter.

use container_protocol::security::{SeccompProgram, DEFAULT_CAPABILITIES};
use container_seccomp::{compile, parse, running_kernel, Arch, Target, DEFAULT_PROFILE};

fn caps(extra: &[&str]) -> Vec<String> {
    DEFAULT_CAPABILITIES
        .iter()
        .chain(extra)
        .map(|c| c.to_string())
        .collect()
}

fn program(profile: &str, caps: &[String]) -> SeccompProgram {
    compile(
        &parse(profile).expect("profile"),
        &Target {
            arch: Arch::native().expect("x86_64 or aarch64"),
            kernel: running_kernel(),
            caps,
        },
    )
    .expect("compile")
}

/// How a call ended in a child under `program`: its errno (0: it succeeded), or the
/// signal that killed the child.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Errno(i32),
    Signal(i32),
}

fn under(program: &SeccompProgram, call: fn() -> i64) -> Outcome {
    let filters: Vec<libc::sock_filter> = program
        .filter
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len: filters.len() as u16,
        filter: filters.as_ptr() as *mut _,
    };
    // SAFETY: the child makes raw system calls only, then exits.
    match unsafe { libc::fork() } {
        0 => unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    program.flags,
                    &prog,
                ) != 0
            {
                libc::_exit(200);
            }
            let rc = call();
            let errno = if rc < 0 { *libc::__errno_location() } else { 0 };
            libc::_exit(errno.min(199));
        },
        pid => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if libc::WIFSIGNALED(status) {
                Outcome::Signal(libc::WTERMSIG(status))
            } else {
                let code = libc::WEXITSTATUS(status);
                assert_ne!(code, 200, "the filter did not load");
                Outcome::Errno(code)
            }
        }
    }
}

use Outcome::{Errno, Signal};

fn sys(nr: libc::c_long, a: u64, b: u64, c: u64) -> i64 {
    // SAFETY: the calls below are made with arguments the kernel checks.
    unsafe { libc::syscall(nr, a, b, c) }
}

/// A child of the child: exits at once, so a clone that works leaves nothing.
fn clone_with(flags: u64) -> i64 {
    let rc = sys(libc::SYS_clone, flags | libc::SIGCHLD as u64, 0, 0);
    if rc == 0 {
        unsafe { libc::_exit(0) };
    }
    rc
}

#[test]
fn the_default_profile_answers_as_dockers_does() {
    let p = program(DEFAULT_PROFILE, &caps(&[]));
    assert_eq!(under(&p, || sys(libc::SYS_getpid, 0, 0, 0)), Errno(0));
    // clone: a plain fork works, a new namespace does not.
    assert_eq!(under(&p, || clone_with(0)), Errno(0));
    assert_eq!(
        under(&p, || clone_with(libc::CLONE_NEWUSER as u64)),
        Errno(libc::EPERM)
    );
    assert_eq!(
        under(&p, || clone_with(libc::CLONE_NEWNET as u64)),
        Errno(libc::EPERM)
    );
    // clone3 answers ENOSYS, so that libc falls back to clone, which is checked.
    assert_eq!(
        under(&p, || sys(libc::SYS_clone3, 0, 0, 0)),
        Errno(libc::ENOSYS)
    );
    // personality: the query and the listed values only.
    assert_eq!(
        under(&p, || sys(libc::SYS_personality, 0xffff_ffff, 0, 0)),
        Errno(0)
    );
    assert_eq!(under(&p, || sys(libc::SYS_personality, 0, 0, 0)), Errno(0));
    assert_eq!(
        under(&p, || sys(libc::SYS_personality, 0x0040000, 0, 0)),
        Errno(libc::EPERM)
    );
    // AF_VSOCK (40) sockets are refused; others are not.
    assert_eq!(
        under(&p, || sys(
            libc::SYS_socket,
            40,
            libc::SOCK_STREAM as u64,
            0
        )),
        Errno(libc::EPERM)
    );
    assert_eq!(
        under(&p, || sys(
            libc::SYS_socket,
            libc::AF_UNIX as u64,
            libc::SOCK_STREAM as u64,
            0
        )),
        Errno(0)
    );
    for (what, nr) in [
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("init_module", libc::SYS_init_module),
        ("finit_module", libc::SYS_finit_module),
        ("mount", libc::SYS_mount),
        ("unshare", libc::SYS_unshare),
        ("setns", libc::SYS_setns),
        ("bpf", libc::SYS_bpf),
        ("reboot", libc::SYS_reboot),
        ("kexec_load", libc::SYS_kexec_load),
    ] {
        let outcome = match nr {
            n if n == libc::SYS_keyctl => under(&p, || sys(libc::SYS_keyctl, 0, 0, 0)),
            n if n == libc::SYS_add_key => under(&p, || sys(libc::SYS_add_key, 0, 0, 0)),
            n if n == libc::SYS_init_module => under(&p, || sys(libc::SYS_init_module, 0, 0, 0)),
            n if n == libc::SYS_finit_module => {
                under(&p, || sys(libc::SYS_finit_module, u64::MAX, 0, 0))
            }
            n if n == libc::SYS_mount => under(&p, || sys(libc::SYS_mount, 0, 0, 0)),
            n if n == libc::SYS_unshare => under(&p, || sys(libc::SYS_unshare, 0, 0, 0)),
            n if n == libc::SYS_setns => under(&p, || sys(libc::SYS_setns, u64::MAX, 0, 0)),
            n if n == libc::SYS_bpf => under(&p, || sys(libc::SYS_bpf, 0, 0, 0)),
            n if n == libc::SYS_reboot => under(&p, || sys(libc::SYS_reboot, 0, 0, 0)),
            _ => under(&p, || sys(libc::SYS_kexec_load, 0, 0, 0)),
        };
        assert_eq!(outcome, Errno(libc::EPERM), "{what}");
    }
}

#[test]
fn capabilities_unlock_what_dockers_profile_unlocks() {
    let admin = program(DEFAULT_PROFILE, &caps(&["CAP_SYS_ADMIN"]));
    // clone3 now reaches the kernel, which refuses its empty arguments.
    assert_eq!(
        under(&admin, || sys(libc::SYS_clone3, 0, 0, 0)),
        Errno(libc::EINVAL)
    );
    // unshare(0) does nothing and is allowed; setns of a bad descriptor reaches the kernel.
    assert_eq!(under(&admin, || sys(libc::SYS_unshare, 0, 0, 0)), Errno(0));
    assert_eq!(
        under(&admin, || sys(libc::SYS_setns, u64::MAX, 0, 0)),
        Errno(libc::EBADF)
    );
    // With CAP_SYS_MODULE the kernel answers (EBADF, or ENOSYS without modules).
    let module = program(DEFAULT_PROFILE, &caps(&["CAP_SYS_MODULE"]));
    let answer = under(&module, || sys(libc::SYS_finit_module, u64::MAX, 0, 0));
    assert!(
        [Errno(libc::EBADF), Errno(libc::ENOSYS)].contains(&answer),
        "{answer:?}"
    );
    // Without it, the same call is refused before the kernel looks at it.
    let plain = program(DEFAULT_PROFILE, &caps(&[]));
    assert_eq!(
        under(&plain, || sys(libc::SYS_finit_module, u64::MAX, 0, 0)),
        Errno(libc::EPERM)
    );
}

#[test]
fn calls_newer_than_libseccomp_are_filtered_by_number() {
    // mseal (462) is newer than Debian 12's libseccomp. Allowed, the kernel answers
    // (EINVAL for a bad address); refused, the filter does.
    let allow = r#"{"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mseal"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#;
    let p = program(allow, &caps(&[]));
    assert_eq!(under(&p, || sys(462, 1, 1, 0)), Errno(libc::EACCES));
    assert_eq!(under(&p, || sys(libc::SYS_getpid, 0, 0, 0)), Errno(0));
}

#[cfg(target_arch = "x86_64")]
fn getpid_32bit() -> i64 {
    let rc: i64;
    // SAFETY: getpid (20 on i386) through the 32-bit entry; it takes no arguments.
    unsafe {
        std::arch::asm!("int 0x80", inlateout("rax") 20i64 => rc, options(nostack));
    }
    rc
}

#[cfg(target_arch = "x86_64")]
#[test]
fn thirty_two_bit_entry_is_refused_unless_the_profile_names_it() {
    // Docker's profile maps x86_64 to x86 and x32 too: the same rules, translated.
    let docker = program(DEFAULT_PROFILE, &caps(&[]));
    assert_eq!(under(&docker, getpid_32bit), Errno(0));
    // A profile for x86_64 alone: 32-bit entry kills the process.
    let only64 = r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]}"#;
    let p = program(only64, &caps(&[]));
    assert_eq!(under(&p, || sys(libc::SYS_getpid, 0, 0, 0)), Errno(0));
    assert_eq!(under(&p, getpid_32bit), Signal(libc::SIGSYS));
}

#[test]
fn the_default_profile_compiles_for_both_machines() {
    let profile = parse(DEFAULT_PROFILE).unwrap();
    for arch in [Arch::X86_64, Arch::Aarch64] {
        for extra in [&[][..], &["CAP_SYS_ADMIN"][..]] {
            let caps = caps(extra);
            let p = compile(
                &profile,
                &Target {
                    arch,
                    kernel: (6, 1),
                    caps: &caps,
                },
            )
            .unwrap_or_else(|e| panic!("{arch:?}: {e}"));
            assert!(
                p.filter.len() > 8 * 50,
                "{arch:?}: {} bytes",
                p.filter.len()
            );
            assert!(p.filter.len().is_multiple_of(8));
        }
    }
}

/// A classic-BPF interpreter for what libseccomp emits, to read a program compiled for
/// a machine this test does not run on: the filter's answer for one system call.
fn evaluate(program: &SeccompProgram, arch: u32, nr: i32, args: [u64; 6]) -> u32 {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&nr.to_ne_bytes());
    data.extend_from_slice(&arch.to_ne_bytes());
    data.extend_from_slice(&0u64.to_ne_bytes());
    for a in args {
        data.extend_from_slice(&a.to_ne_bytes());
    }
    let insns: Vec<(u16, u8, u8, u32)> = program
        .filter
        .chunks_exact(8)
        .map(|c| {
            (
                u16::from_ne_bytes([c[0], c[1]]),
                c[2],
                c[3],
                u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
        .collect();
    let (mut a, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
    loop {
        let (code, jt, jf, k) = insns[pc];
        pc += 1;
        let jump = |cond: bool| if cond { jt as usize } else { jf as usize };
        match code {
            0x20 => {
                let o = k as usize;
                a = u32::from_ne_bytes(data[o..o + 4].try_into().unwrap());
            }
            0x00 => a = k,
            0x60 => a = mem[k as usize],
            0x61 => x = mem[k as usize],
            0x02 => mem[k as usize] = a,
            0x03 => mem[k as usize] = x,
            0x07 => x = a,
            0x87 => a = x,
            0x54 => a &= k,
            0x44 => a |= k,
            0x05 => pc += k as usize,
            0x15 => pc += jump(a == k),
            0x25 => pc += jump(a > k),
            0x35 => pc += jump(a >= k),
            0x45 => pc += jump(a & k != 0),
            0x1d => pc += jump(a == x),
            0x2d => pc += jump(a > x),
            0x3d => pc += jump(a >= x),
            0x06 => return k,
            other => panic!("instruction {other:#x} at {}", pc - 1),
        }
    }
}

const ALLOW: u32 = 0x7fff_0000;
const KILL_PROCESS: u32 = 0x8000_0000;
fn errno(e: i32) -> u32 {
    0x0005_0000 | e as u32
}

#[test]
fn on_aarch64_the_default_profile_answers_as_on_x86_64() {
    const AARCH64: u32 = 0xC000_00B7;
    const ARM: u32 = 0x4000_0028;
    const X86_64: u32 = 0xC000_003E;
    let compile_for = |extra: &[&str]| {
        let caps = caps(extra);
        compile(
            &parse(DEFAULT_PROFILE).unwrap(),
            &Target {
                arch: Arch::Aarch64,
                kernel: (6, 1),
                caps: &caps,
            },
        )
        .unwrap()
    };
    let p = compile_for(&[]);
    let call = |nr: i32, args: [u64; 6]| evaluate(&p, AARCH64, nr, args);
    // aarch64's numbers (asm-generic): getpid 172, clone 220, clone3 435, socket 198,
    // keyctl 219, personality 92, mount 40, unshare 97.
    assert_eq!(call(172, [0; 6]), ALLOW);
    assert_eq!(call(220, [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(
        call(220, [0x1000_0000 | 17, 0, 0, 0, 0, 0]),
        errno(libc::EPERM),
        "CLONE_NEWUSER"
    );
    assert_eq!(call(435, [0; 6]), errno(libc::ENOSYS));
    assert_eq!(
        call(198, [40, 1, 0, 0, 0, 0]),
        errno(libc::EPERM),
        "AF_VSOCK"
    );
    assert_eq!(call(198, [1, 1, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(92, [0xffff_ffff, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(92, [0x0040000, 0, 0, 0, 0, 0]), errno(libc::EPERM));
    for nr in [219, 40, 97] {
        assert_eq!(call(nr, [0; 6]), errno(libc::EPERM), "{nr}");
    }
    // 32-bit ARM entry is in Docker's map (getpid is 20 there); another machine's is not.
    assert_eq!(evaluate(&p, ARM, 20, [0; 6]), ALLOW);
    assert_eq!(evaluate(&p, X86_64, 39, [0; 6]), KILL_PROCESS);
    // CAP_SYS_ADMIN unlocks mount, unshare and namespace clones there too.
    let admin = compile_for(&["CAP_SYS_ADMIN"]);
    assert_eq!(evaluate(&admin, AARCH64, 40, [0; 6]), ALLOW);
    assert_eq!(
        evaluate(&admin, AARCH64, 220, [0x1000_0000 | 17, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(evaluate(&admin, AARCH64, 435, [0; 6]), ALLOW);
}
