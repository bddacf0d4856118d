//! A profile, for one machine and one set of capabilities, compiled by libseccomp into
//! a classic-BPF program, the way Docker (moby's `setupSeccomp`) and runc read it:
//!
//! * a rule applies when all of its `includes` hold and none of its `excludes` (an
//!   excluded capability counts if any one listed is held; an included one only if
//!   every one listed is);
//! * the filter covers the machine's architecture and the ones the profile names for it
//!   (`archMap`'s entry, or `architectures`); any other architecture, such as 32-bit
//!   entry on x86_64 that the profile leaves out, kills the process;
//! * a rule whose action is the default is left out (libseccomp refuses it);
//! * several conditions on different arguments must all hold; if two compare the same
//!   argument, each becomes a rule of its own (runc's reading).

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

use crate::profile::{Action, Conditions, Op, Profile};
use crate::syscalls::{self, Syscall};
use container_protocol::security::SeccompProgram;

/// The machines this runtime runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// This machine's, if it is one of them.
    pub fn native() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    fn scmp_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "SCMP_ARCH_X86_64",
            Arch::Aarch64 => "SCMP_ARCH_AARCH64",
        }
    }

    /// Go's name, as profiles' `includes.arches` say it.
    fn go_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    fn token(self) -> ScmpArch {
        match self {
            Arch::X86_64 => ScmpArch::X8664,
            Arch::Aarch64 => ScmpArch::Aarch64,
        }
    }

    /// Other architectures a process of this machine can make system calls as.
    fn companions(self) -> &'static [(&'static str, ScmpArch)] {
        match self {
            Arch::X86_64 => &[
                ("SCMP_ARCH_X86", ScmpArch::X86),
                ("SCMP_ARCH_X32", ScmpArch::X32),
            ],
            Arch::Aarch64 => &[("SCMP_ARCH_ARM", ScmpArch::Arm)],
        }
    }
}

/// What it is compiled for.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub arch: Arch,
    /// The kernel's `MAJOR.MINOR`, for `minKernel`.
    pub kernel: (u32, u32),
    /// Canonical capability names (`CAP_SYS_ADMIN`) of the bounding set.
    pub caps: &'a [String],
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("libseccomp: {what}: {source}")]
    Library {
        what: String,
        source: libseccomp::error::SeccompError,
    },
    #[error("export the compiled filter: {0}")]
    Export(std::io::Error),
}

fn lib(what: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> CompileError {
    let what = what.into();
    move |source| CompileError::Library { what, source }
}

fn scmp_action(a: Action) -> ScmpAction {
    match a {
        Action::Allow => ScmpAction::Allow,
        Action::Errno(e) => ScmpAction::Errno(i32::from(e)),
        Action::KillThread => ScmpAction::KillThread,
        Action::KillProcess => ScmpAction::KillProcess,
        Action::Trap => ScmpAction::Trap,
        Action::Trace(e) => ScmpAction::Trace(e),
        Action::Log => ScmpAction::Log,
    }
}

fn applies(includes: &Conditions, excludes: &Conditions, target: &Target<'_>) -> bool {
    let arch = target.arch.go_name();
    let held = |c: &String| target.caps.contains(c);
    let old_kernel = |k: (u32, u32)| target.kernel < k;
    if !excludes.arches.is_empty() && excludes.arches.iter().any(|a| a == arch) {
        return false;
    }
    if excludes.caps.iter().any(held) {
        return false;
    }
    if excludes.min_kernel.is_some_and(|k| !old_kernel(k)) {
        return false;
    }
    if !includes.arches.is_empty() && !includes.arches.iter().any(|a| a == arch) {
        return false;
    }
    if !includes.caps.iter().all(held) {
        return false;
    }
    !includes.min_kernel.is_some_and(old_kernel)
}

fn compare(arg: &crate::profile::Arg) -> ScmpArgCompare {
    let op = match arg.op {
        Op::Ne => ScmpCompareOp::NotEqual,
        Op::Lt => ScmpCompareOp::Less,
        Op::Le => ScmpCompareOp::LessOrEqual,
        Op::Eq => ScmpCompareOp::Equal,
        Op::Ge => ScmpCompareOp::GreaterEqual,
        Op::Gt => ScmpCompareOp::Greater,
        Op::MaskedEq { mask } => ScmpCompareOp::MaskedEqual(mask),
    };
    ScmpArgCompare::new(arg.index, op, arg.value)
}

/// One filter context for one architecture: the machine's, or a companion. libseccomp
/// translates a known call's number to each; a call newer than its tables can only be
/// added by number, on the machine's own architecture, in a context of its own (a
/// context with several architectures refuses it), so each architecture gets its own
/// context and they are merged at the end.
fn context(default: ScmpAction, arch: ScmpArch) -> Result<ScmpFilterContext, CompileError> {
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("create a filter"))?;
    // Our own loader sets no_new_privs when the container asks for it, not libseccomp.
    ctx.set_ctl_nnp(false)
        .map_err(lib("no_new_privs attribute"))?;
    ctx.set_act_badarch(ScmpAction::KillProcess)
        .map_err(lib("bad architecture action"))?;
    if arch != ScmpArch::native() {
        ctx.add_arch(arch).map_err(lib(format!("add {arch:?}")))?;
        ctx.remove_arch(ScmpArch::native())
            .map_err(lib("remove the native architecture"))?;
    }
    Ok(ctx)
}

/// Compiles `profile` for `target`.
pub fn compile(profile: &Profile, target: &Target<'_>) -> Result<SeccompProgram, CompileError> {
    let default = scmp_action(profile.default_action);
    let main_arch = target.arch.token();
    // Which companions the profile names for this machine.
    let named: Vec<&str> = if profile.architectures.is_empty() {
        profile
            .arch_map
            .iter()
            .find(|(a, _)| a == target.arch.scmp_name())
            .map(|(_, subs)| subs.iter().map(String::as_str).collect())
            .unwrap_or_default()
    } else {
        profile.architectures.iter().map(String::as_str).collect()
    };
    let mut contexts = vec![(main_arch, context(default, main_arch)?)];
    for (name, token) in target.arch.companions() {
        if named.contains(name) {
            contexts.push((*token, context(default, *token)?));
        }
    }
    // Numbers of calls newer than libseccomp mean something only to the kernel we run on.
    let numbers_apply = main_arch == ScmpArch::native();
    for rule in &profile.rules {
        if rule.action == profile.default_action || !applies(&rule.includes, &rule.excludes, target)
        {
            continue;
        }
        let action = scmp_action(rule.action);
        let conds: Vec<ScmpArgCompare> = rule.args.iter().map(compare).collect();
        let repeated = rule
            .args
            .iter()
            .enumerate()
            .any(|(i, a)| rule.args[..i].iter().any(|b| b.index == a.index));
        for name in &rule.names {
            let Some(call) = syscalls::resolve(name) else {
                // `parse` refuses unknown names; nothing to add for one here.
                continue;
            };
            for (arch, ctx) in contexts.iter_mut() {
                let nr: ScmpSyscall = match call {
                    Syscall::Known(s) => s,
                    Syscall::Newer(n) if numbers_apply && *arch == main_arch => {
                        ScmpSyscall::from(n)
                    }
                    Syscall::Newer(_) => continue,
                };
                let what = || format!("{name} on {arch:?}");
                if conds.is_empty() {
                    ctx.add_rule(action, nr).map_err(lib(what()))?;
                } else if repeated {
                    for c in &conds {
                        ctx.add_rule_conditional(action, nr, std::slice::from_ref(c))
                            .map_err(lib(what()))?;
                    }
                } else {
                    ctx.add_rule_conditional(action, nr, &conds)
                        .map_err(lib(what()))?;
                }
            }
        }
    }
    let mut contexts = contexts.into_iter();
    let (_, mut filter) = contexts.next().expect("the machine's own context");
    for (arch, ctx) in contexts {
        filter
            .merge(ctx)
            .map_err(lib(format!("merge the {arch:?} filter")))?;
    }
    Ok(SeccompProgram {
        filter: export(&filter)?,
        flags: profile.flags,
    })
}

/// The program's bytes, through a memory file: libseccomp 2.5 exports to a descriptor.
fn export(filter: &ScmpFilterContext) -> Result<Vec<u8>, CompileError> {
    use std::io::{Read, Seek};
    // SAFETY: a plain system call with a static name.
    let fd = unsafe { libc::memfd_create(c"seccomp-bpf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(CompileError::Export(std::io::Error::last_os_error()));
    }
    // SAFETY: the descriptor was just created and is owned here.
    let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    filter
        .export_bpf(&file)
        .map_err(|e| CompileError::Export(std::io::Error::other(e)))?;
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(CompileError::Export)?;
    Ok(bytes)
}

/// The running kernel's `MAJOR.MINOR`.
pub fn running_kernel() -> (u32, u32) {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| crate::profile::kernel_version(&u.release().to_string_lossy()))
        .unwrap_or((0, 0))
}
