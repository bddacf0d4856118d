//! The v2 device filter: an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`,
//! attached to the container's cgroup, answering 1 (allow) or 0 (deny) for each device
//! access (the kernel asks it before the v1 controller, on the task's cgroup2 cgroup,
//! which is why it works on hybrid hosts too). Generated from the rules, as runc does:
//! one block per rule, falling through to deny. Hand-assembled (about ten instructions
//! per rule) rather than through libbpf, a C library and a build-time dependency for
//! what is a list of compares.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::devices::{DeviceKind, DeviceRule, RWM};
use crate::Error;

/// One `struct bpf_insn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

// Opcodes: class | op | source.
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`, with
// access_type = (access << 16) | type.
const DEVCG_DEV_BLOCK: i32 = 1;
const DEVCG_DEV_CHAR: i32 = 2;

/// The program for `rules` (allow rules; everything else is denied).
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    // r2 = type, r3 = access, r4 = major, r5 = minor.
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for rule in rules {
        // Each test jumps past the block's end when it fails: offsets are filled in
        // once the block's length is known.
        let mut block: Vec<Insn> = Vec::new();
        let mut skips: Vec<usize> = Vec::new();
        match rule.kind {
            DeviceKind::All => {}
            DeviceKind::Block | DeviceKind::Char => {
                let t = if rule.kind == DeviceKind::Block {
                    DEVCG_DEV_BLOCK
                } else {
                    DEVCG_DEV_CHAR
                };
                skips.push(block.len());
                block.push(insn(JMP_JNE_K, 2, 0, 0, t));
            }
        }
        if rule.access & RWM != RWM {
            // The asked access must be within the allowed: (access & allowed) == access.
            block.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            block.push(insn(ALU32_AND_K, 1, 0, 0, i32::from(rule.access)));
            skips.push(block.len());
            block.push(insn(JMP_JNE_X, 1, 3, 0, 0));
        }
        if let Some(major) = rule.major {
            skips.push(block.len());
            block.push(insn(JMP_JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor {
            skips.push(block.len());
            block.push(insn(JMP_JNE_K, 5, 0, 0, minor as i32));
        }
        block.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let end = block.len();
        for at in skips {
            block[at].off = (end - at - 1) as i16;
        }
        p.extend(block);
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr`, as much of it as these two commands use; the rest stays zero.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn put_u32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn put_u64(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }
}

fn bpf(cmd: libc::c_int, attr: &mut Attr) -> libc::c_long {
    // SAFETY: attr is a zeroed bpf_attr of the size given, filled for `cmd`.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len()) }
}

/// Loads the program for `rules` and attaches it to the cgroup2 directory `dir`. The
/// attachment keeps the program alive for as long as the cgroup exists.
pub fn attach(dir: &Path, rules: &[DeviceRule]) -> Result<(), Error> {
    let insns = program(rules);
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 16 * 1024];
    let mut attr = Attr([0; 128]);
    attr.put_u32(0, BPF_PROG_TYPE_CGROUP_DEVICE);
    attr.put_u32(4, insns.len() as u32);
    attr.put_u64(8, insns.as_ptr() as u64);
    attr.put_u64(16, license.as_ptr() as u64);
    attr.put_u32(24, 1); // log_level
    attr.put_u32(28, log.len() as u32);
    attr.put_u64(32, log.as_mut_ptr() as u64);
    attr.0[48..48 + 9].copy_from_slice(b"container");
    attr.put_u32(68, BPF_CGROUP_DEVICE); // expected_attach_type
    let fd = bpf(BPF_PROG_LOAD, &mut attr);
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        let text = String::from_utf8_lossy(&log);
        let text = text.trim_end_matches('\0').trim();
        return Err(Error::Bpf {
            step: "load device program",
            source: err,
            log: text.lines().last().unwrap_or("").to_string(),
        });
    }
    // SAFETY: the kernel just gave us this descriptor.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cgroup = std::fs::File::open(dir).map_err(Error::at("open", dir))?;
    let mut attr = Attr([0; 128]);
    attr.put_u32(0, cgroup.as_raw_fd() as u32);
    attr.put_u32(4, prog.as_raw_fd() as u32);
    attr.put_u32(8, BPF_CGROUP_DEVICE);
    attr.put_u32(12, BPF_F_ALLOW_MULTI);
    if bpf(BPF_PROG_ATTACH, &mut attr) < 0 {
        return Err(Error::Bpf {
            step: "attach device program",
            source: std::io::Error::last_os_error(),
            log: String::new(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::{allows, DEFAULT_RULES, MKNOD, READ, WRITE};

    /// A tiny interpreter of the instructions `program` emits, to check the jumps
    /// against `devices::allows` for every kind and access (the kernel test is in
    /// tests/cgroups.rs).
    fn run(p: &[Insn], kind: i32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
                ALU32_AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                ALU32_MOV_X => r[dst] = r[src] as u32 as u64,
                ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
                JMP_JNE_K if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                JMP_JNE_X if r[dst] != r[src] => pc += i.off as usize,
                JMP_JNE_K | JMP_JNE_X => {}
                JMP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_program_decides_as_the_rules_do() {
        let extra = DeviceRule {
            kind: DeviceKind::Block,
            major: Some(7),
            minor: Some(0),
            access: READ,
        };
        let mut rules = DEFAULT_RULES.to_vec();
        rules.push(extra);
        let p = program(&rules);
        for (kind, k) in [(DeviceKind::Block, 1), (DeviceKind::Char, 2)] {
            for (major, minor) in [(1, 3), (1, 1), (5, 2), (136, 4), (7, 0), (7, 1), (8, 0)] {
                for access in [READ, WRITE, MKNOD, READ | WRITE, RWM] {
                    let want = allows(&rules, kind, major, minor, access);
                    let got = run(&p, k, u32::from(access), major, minor) == 1;
                    assert_eq!(got, want, "{kind:?} {major}:{minor} {access:#b}");
                }
            }
        }
        let all = program(&[DeviceRule::everything()]);
        assert_eq!(run(&all, 1, 2, 8, 0), 1);
    }
}
