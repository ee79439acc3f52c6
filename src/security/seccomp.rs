//! Seccomp: compiles a resolved [`crate::profile::Seccomp`] into the BPF
//! programs to install, in order, just before `execve`.
//!
//! Semantics (documented in docs/profiles.md, "Precedence"): an *entry* is an allow-list
//! syscall (action allow), a deny-list syscall (action `deny_action`) or a
//! `[[seccomp.rule]]` whose arguments match (its own action). For a call,
//! if no entry matches, `default_action` applies; otherwise the MOST
//! RESTRICTIVE action among the matching entries applies. This is what the
//! kernel computes for stacked filters (the most restrictive verdict
//! wins), so it compiles to:
//!
//! 1. a main filter (hand-written BPF): wrong audit architecture → kill;
//!    on x86_64 any x32-ABI number (bit 0x40000000) → kill (seccompiler
//!    does not check it); then a binary search over the syscall number. A
//!    syscall with unconditional entries returns the most restrictive of
//!    their actions; one with only argument-conditional entries goes on to
//!    a seccompiler program (some entry matches → allow, else
//!    `default_action`); any other returns `default_action`;
//! 2. one seccompiler filter per distinct non-allow action A among the
//!    *conditional* entries: those entries → A, anything else → allow.
//!
//! Few filters of few instructions matter: every install is on each run's
//! critical path, and the kernel checks, JIT-compiles and, for its
//! always-allow cache, emulates each filter for every syscall number.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction as SAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule as SRule, TargetArch, sock_filter,
};

use crate::profile::{ArgCond, ArgOp, Seccomp, SeccompAction};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: syscall \"{0}\" is unknown on every supported architecture")]
    UnknownSyscall(String),
    #[error("seccomp: {0}")]
    Backend(#[from] seccompiler::BackendError),
    #[error("seccomp: {0}")]
    Compile(#[from] seccompiler::Error),
    #[error(
        "seccomp: the seccomp syscall itself is refused by more than one filter (give it a single action: an allow-list default or one deny/rule action)"
    )]
    SelfBlocking,
    #[error("seccomp: cannot install filter: {0}")]
    Install(std::io::Error),
    #[error("seccomp: this architecture is not supported")]
    UnsupportedArch,
}

#[cfg(target_arch = "x86_64")]
const ARCH: Option<TargetArch> = Some(TargetArch::x86_64);
#[cfg(target_arch = "aarch64")]
const ARCH: Option<TargetArch> = Some(TargetArch::aarch64);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH: Option<TargetArch> = None;

/// Syscall number of `name` on the native architecture (`None` if it does
/// not exist here, e.g. `open` on aarch64).
pub fn resolve_syscall(name: &str) -> Option<i64> {
    crate::profile::names::native_nr(name)
}

fn for_arch(name: &str, arch: TargetArch) -> Option<i64> {
    match arch {
        TargetArch::x86_64 => crate::profile::names::x86_64_nr(name),
        TargetArch::aarch64 => crate::profile::names::aarch64_nr(name),
        _ => None,
    }
}

fn to_backend(a: &SeccompAction) -> SAction {
    match a {
        SeccompAction::KillProcess => SAction::KillProcess,
        SeccompAction::KillThread => SAction::KillThread,
        SeccompAction::Trap => SAction::Trap,
        SeccompAction::Errno(n, _) => SAction::Errno(*n as u32),
        SeccompAction::Log => SAction::Log,
        SeccompAction::Allow => SAction::Allow,
    }
}

/// Kernel precedence: higher = more restrictive (wins across stacked filters).
fn rank(a: &SeccompAction) -> u8 {
    match a {
        SeccompAction::KillProcess => 6,
        SeccompAction::KillThread => 5,
        SeccompAction::Trap => 4,
        SeccompAction::Errno(..) => 3,
        SeccompAction::Log => 1,
        SeccompAction::Allow => 0,
    }
}

/// Values and masks that fit in 32 bits compare the low 32 bits of the
/// argument (the kernel truncates `int` arguments, so upper garbage bits
/// must not let a call slip past, as in the TIOCSTI ioctl bypass); wider
/// ones compare all 64 bits.
fn condition(c: &ArgCond) -> Result<SeccompCondition, SeccompError> {
    let wide =
        c.value > u32::MAX as u64 || matches!(c.op, ArgOp::MaskedEq(m) if m > u32::MAX as u64);
    let len = if wide {
        SeccompCmpArgLen::Qword
    } else {
        SeccompCmpArgLen::Dword
    };
    let op = match c.op {
        ArgOp::Eq => SeccompCmpOp::Eq,
        ArgOp::Ne => SeccompCmpOp::Ne,
        ArgOp::Lt => SeccompCmpOp::Lt,
        ArgOp::Le => SeccompCmpOp::Le,
        ArgOp::Gt => SeccompCmpOp::Gt,
        ArgOp::Ge => SeccompCmpOp::Ge,
        ArgOp::MaskedEq(m) => SeccompCmpOp::MaskedEq(m),
    };
    Ok(SeccompCondition::new(c.index, len, op, c.value)?)
}

/// Entries per syscall number: `None` = matches unconditionally, else the
/// alternative argument conditions (OR of ANDs).
type Entries = BTreeMap<i64, Option<Vec<Vec<ArgCond>>>>;

fn add(map: &mut Entries, nr: i64, args: &[ArgCond]) {
    let slot = map.entry(nr).or_insert_with(|| Some(Vec::new()));
    match (slot.as_mut(), args.is_empty()) {
        (_, true) => *slot = None,
        (Some(v), false) => v.push(args.to_vec()),
        (None, false) => {}
    }
}

fn build(
    map: Entries,
    mismatch: SAction,
    matched: SAction,
    arch: TargetArch,
) -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SRule>> = BTreeMap::new();
    for (nr, alts) in map {
        let v = match alts {
            None => Vec::new(),
            Some(alts) => alts
                .iter()
                .map(|conds| {
                    let c = conds.iter().map(condition).collect::<Result<Vec<_>, _>>()?;
                    Ok(SRule::new(c)?)
                })
                .collect::<Result<Vec<_>, SeccompError>>()?,
        };
        rules.insert(nr, v);
    }
    let filter = SeccompFilter::new(rules, mismatch, matched, arch)?;
    Ok(filter.try_into()?)
}

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// `offsetof(struct seccomp_data, nr)` and `.arch`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const BPF_JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;

fn audit_arch(arch: TargetArch) -> u32 {
    match arch {
        TargetArch::aarch64 => 0xc000_00b7,
        TargetArch::riscv64 => 0xc000_00f3,
        _ => AUDIT_ARCH_X86_64,
    }
}

/// The value a filter returns for `a`.
fn ret_value(a: &SeccompAction) -> u32 {
    match a {
        SeccompAction::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        SeccompAction::KillThread => libc::SECCOMP_RET_KILL_THREAD,
        SeccompAction::Trap => libc::SECCOMP_RET_TRAP,
        SeccompAction::Errno(n, _) => {
            libc::SECCOMP_RET_ERRNO | (*n as u32 & libc::SECCOMP_RET_DATA)
        }
        SeccompAction::Log => libc::SECCOMP_RET_LOG,
        SeccompAction::Allow => libc::SECCOMP_RET_ALLOW,
    }
}

/// What the main filter does for a run of syscall numbers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Leaf {
    Ret(u32),
    /// Only argument-conditional entries: on to the seccompiler program.
    Cond,
}

/// Placeholder opcode for a jump to the conditional program, patched once
/// its offset is known.
const COND_JUMP: u16 = 0xffff;

/// Binary search over `iv` (runs of numbers: start, leaf; sorted, the
/// first start being the lowest number that can reach this node).
fn search(iv: &[(u32, Leaf)]) -> Vec<sock_filter> {
    if let [(_, leaf)] = iv {
        return vec![match leaf {
            Leaf::Ret(k) => ins(BPF_RET_K, 0, 0, *k),
            Leaf::Cond => ins(COND_JUMP, 0, 0, 0),
        }];
    }
    let mid = iv.len() / 2;
    let (left, right) = (search(&iv[..mid]), search(&iv[mid..]));
    let mut out = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        // nr >= split: over the left half; else fall into it.
        Ok(n) => out.push(ins(BPF_JGE_K, n, 0, iv[mid].0)),
        Err(_) => {
            // Conditional jumps reach 255 instructions at most.
            out.push(ins(BPF_JGE_K, 0, 1, iv[mid].0));
            out.push(ins(BPF_JA, 0, 0, left.len() as u32));
        }
    }
    out.extend(left);
    out.extend(right);
    out
}

/// A filter that checks the architecture (and on x86_64 kills x32-ABI
/// numbers), then binary-searches the syscall number:
/// numbers in `leaves` get their leaf, all others `gap`. `Leaf::Cond`
/// jumps to `cond`, a seccompiler program appended as is.
fn search_filter(
    leaves: &BTreeMap<u32, Leaf>,
    gap: u32,
    arch: TargetArch,
    cond: impl FnOnce() -> Result<BpfProgram, SeccompError>,
) -> Result<BpfProgram, SeccompError> {
    // Runs of numbers with the same leaf.
    let mut iv: Vec<(u32, Leaf)> = vec![(0, Leaf::Ret(gap))];
    let mut push = |start: u32, leaf: Leaf| match iv.last_mut() {
        Some((s, l)) if *s == start => *l = leaf,
        Some((_, l)) if *l == leaf => {}
        _ => iv.push((start, leaf)),
    };
    for (&nr, &leaf) in leaves {
        push(nr, leaf);
        if let Some(next) = nr.checked_add(1)
            && !leaves.contains_key(&next)
        {
            push(next, Leaf::Ret(gap));
        }
    }
    let mut f = vec![
        ins(BPF_LD_W_ABS, 0, 0, DATA_ARCH),
        ins(BPF_JEQ_K, 1, 0, audit_arch(arch)),
        ins(BPF_RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        ins(BPF_LD_W_ABS, 0, 0, DATA_NR),
    ];
    if arch == TargetArch::x86_64 {
        f.push(ins(BPF_JSET_K, 0, 1, X32_SYSCALL_BIT));
        f.push(ins(BPF_RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS));
    }
    f.extend(search(&iv));
    let cond_start = f.len();
    let mut jumps = false;
    for (i, x) in f.iter_mut().enumerate() {
        if x.code == COND_JUMP {
            *x = ins(BPF_JA, 0, 0, (cond_start - i - 1) as u32);
            jumps = true;
        }
    }
    if jumps {
        // Relative jumps only: the seccompiler program runs as is after ours.
        f.extend(cond()?);
    }
    Ok(f)
}

/// The main filter (see the module comment). `uncond`: the most restrictive
/// unconditional action per syscall number; `cond`: every entry with
/// argument conditions.
fn main_filter(
    uncond: &BTreeMap<i64, SeccompAction>,
    cond: Entries,
    default: &SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, SeccompError> {
    let mut leaves: BTreeMap<u32, Leaf> = BTreeMap::new();
    for (&nr, a) in uncond {
        leaves.insert(nr as u32, Leaf::Ret(ret_value(a)));
    }
    for &nr in cond.keys() {
        // With an allow default, "some entry matches → allow" always allows.
        let leaf = if *default == SeccompAction::Allow {
            Leaf::Ret(libc::SECCOMP_RET_ALLOW)
        } else {
            Leaf::Cond
        };
        leaves.entry(nr as u32).or_insert(leaf);
    }
    search_filter(&leaves, ret_value(default), arch, || {
        build(cond, to_backend(default), SAction::Allow, arch)
    })
}

/// Compile for the native architecture. Returns the filters to install IN
/// ORDER (each with `seccompiler::apply_filter`, after no_new_privs, as the
/// last step before execve). Empty when the profile disables seccomp.
pub fn compile(s: &Seccomp) -> Result<Vec<BpfProgram>, SeccompError> {
    match ARCH {
        Some(arch) => compile_for(s, arch),
        None => Err(SeccompError::UnsupportedArch),
    }
}

/// Compile for a given architecture (x86_64 or aarch64). Names that do not
/// exist on `arch` (e.g. `open` on aarch64) are skipped.
pub fn compile_for(s: &Seccomp, arch: TargetArch) -> Result<Vec<BpfProgram>, SeccompError> {
    if !s.enabled {
        return Ok(Vec::new());
    }
    let nr = |name: &str| -> Result<Option<i64>, SeccompError> {
        match for_arch(name, arch) {
            Some(n) => Ok(Some(n)),
            None if crate::profile::names::syscall_known(name) => Ok(None),
            None => Err(SeccompError::UnknownSyscall(name.to_string())),
        }
    };
    // The most restrictive unconditional action per number, every
    // conditional entry, and the conditional entries grouped by action.
    let mut uncond: BTreeMap<i64, SeccompAction> = BTreeMap::new();
    let mut cond: Entries = BTreeMap::new();
    let mut by_action: BTreeMap<(u8, String), (SeccompAction, Entries)> = BTreeMap::new();
    let mut set_uncond = |n: i64, a: &SeccompAction| {
        let slot = uncond.entry(n).or_insert(SeccompAction::Allow);
        if rank(a) > rank(slot) {
            *slot = a.clone();
        }
    };
    for name in &s.allow {
        if let Some(n) = nr(name)? {
            set_uncond(n, &SeccompAction::Allow);
        }
    }
    for name in &s.deny {
        if let Some(n) = nr(name)? {
            set_uncond(n, &s.deny_action);
        }
    }
    for r in &s.rules {
        let Some(n) = nr(&r.syscall)? else { continue };
        if r.args.is_empty() {
            set_uncond(n, &r.action);
            continue;
        }
        add(&mut cond, n, &r.args);
        if r.action != SeccompAction::Allow {
            let key = (rank(&r.action), format!("{:?}", r.action));
            let e = by_action
                .entry(key)
                .or_insert_with(|| (r.action.clone(), BTreeMap::new()));
            add(&mut e.1, n, &r.args);
        }
    }
    // Filters are installed one after another with the seccomp(2) syscall,
    // so a filter that may refuse seccomp(2) itself must come last; the
    // kernel's verdict does not depend on the order.
    let seccomp_nr = for_arch("seccomp", arch);
    let main_blocks = match seccomp_nr.and_then(|n| uncond.get(&n)) {
        Some(a) => *a != SeccompAction::Allow,
        None => s.default_action != SeccompAction::Allow,
    };
    let mut out = Vec::new();
    let mut last: Vec<BpfProgram> = Vec::new();
    let main = main_filter(&uncond, cond, &s.default_action, arch)?;
    if main_blocks {
        last.push(main)
    } else {
        out.push(main)
    }
    for (_, (a, entries)) in by_action.into_iter().rev() {
        let blocks = seccomp_nr.is_some_and(|n| entries.contains_key(&n));
        let f = build(entries, SAction::Allow, to_backend(&a), arch)?;
        if blocks { last.push(f) } else { out.push(f) }
    }
    if last.len() > 1 {
        return Err(SeccompError::SelfBlocking);
    }
    out.extend(last);
    Ok(out)
}

/// Set no_new_privs once and install `filters` (nothing at all when the
/// list is empty, i.e. seccomp is disabled) IN ORDER on the calling
/// thread with seccomp(2). Use this rather than `seccompiler::apply_filter`,
/// which calls prctl() again before every filter (and prctl may be refused
/// by the filters already installed). Allocates nothing: safe between fork
/// and exec.
pub fn install(filters: &[BpfProgram]) -> Result<(), SeccompError> {
    if filters.is_empty() {
        return Ok(());
    }
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) takes no pointers.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(SeccompError::Install(std::io::Error::last_os_error()));
    }
    for f in filters {
        if f.is_empty() || f.len() > u16::MAX as usize {
            return Err(SeccompError::Install(std::io::Error::from_raw_os_error(
                libc::EINVAL,
            )));
        }
        let prog = libc::sock_fprog {
            len: f.len() as u16,
            // seccompiler's sock_filter is #[repr(C)] with the same layout as libc's.
            filter: f.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points to `f`, a valid BPF program of `len`
        // instructions that outlives the call; the kernel copies it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(SeccompError::Install(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::load;

    /// A classic-BPF interpreter for seccomp programs (loads from
    /// `seccomp_data`, jumps, returns): enough to compare two filters.
    fn eval(prog: &[sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                0 => nr,
                4 => arch,
                8 | 12 => 0,
                o => {
                    let i = ((o - 16) / 8) as usize;
                    let a = args[i];
                    if (o - 16) % 8 == 0 {
                        a as u32
                    } else {
                        (a >> 32) as u32
                    }
                }
            }
        };
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = &prog[pc];
            let code = i.code as u32;
            match code & 0x07 {
                0x00 => acc = word(i.k), // BPF_LD (W|ABS)
                0x04 => match code & 0xf0 {
                    0x50 => acc &= i.k, // BPF_ALU|BPF_AND|BPF_K
                    op => panic!("alu op {op:#x}"),
                },
                0x05 => {
                    let taken = match code & 0xf0 {
                        0x00 => {
                            pc += i.k as usize + 1;
                            continue;
                        }
                        0x10 => acc == i.k,
                        0x20 => acc > i.k,
                        0x30 => acc >= i.k,
                        0x40 => acc & i.k != 0,
                        op => panic!("jmp op {op:#x}"),
                    };
                    pc += 1 + if taken { i.jt as usize } else { i.jf as usize };
                    continue;
                }
                0x06 => return i.k,
                c => panic!("unsupported class {c:#x}"),
            }
            pc += 1;
        }
    }

    /// Verdict of a stack of filters, as the kernel combines them: the
    /// most restrictive action wins; on a tie, the filter installed last.
    fn stacked(filters: &[BpfProgram], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let mut ret = libc::SECCOMP_RET_ALLOW;
        for f in filters.iter().rev() {
            let cur = eval(f, nr, arch, args);
            let key = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
            if key(cur) < key(ret) {
                ret = cur;
            }
        }
        ret
    }

    /// The straightforward compilation (what this module did before the
    /// main filter): an x32 guard, one seccompiler filter per non-allow
    /// action over every entry with it, and a seccompiler base filter
    /// (every entry → allow, else the default).
    fn reference(s: &Seccomp, arch: TargetArch) -> Vec<BpfProgram> {
        let nr = |n: &str| for_arch(n, arch);
        let mut all: Entries = BTreeMap::new();
        let mut by_action: BTreeMap<String, (SeccompAction, Entries)> = BTreeMap::new();
        let mut entry = |n: i64, a: &SeccompAction, args: &[ArgCond]| {
            add(&mut all, n, args);
            if *a != SeccompAction::Allow {
                let e = by_action
                    .entry(format!("{a:?}"))
                    .or_insert_with(|| (a.clone(), BTreeMap::new()));
                add(&mut e.1, n, args);
            }
        };
        for n in s.allow.iter().filter_map(|n| nr(n)) {
            entry(n, &SeccompAction::Allow, &[]);
        }
        for n in s.deny.iter().filter_map(|n| nr(n)) {
            entry(n, &s.deny_action, &[]);
        }
        for r in &s.rules {
            if let Some(n) = nr(&r.syscall) {
                entry(n, &r.action, &r.args);
            }
        }
        let mut out = vec![];
        if arch == TargetArch::x86_64 {
            out.push(vec![
                ins(BPF_LD_W_ABS, 0, 0, DATA_ARCH),
                ins(BPF_JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
                ins(BPF_LD_W_ABS, 0, 0, DATA_NR),
                ins(BPF_JSET_K, 0, 1, X32_SYSCALL_BIT),
                ins(BPF_RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
                ins(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
            ]);
        }
        for (_, (a, e)) in by_action {
            out.push(build(e, SAction::Allow, to_backend(&a), arch).unwrap());
        }
        if s.default_action != SeccompAction::Allow {
            out.push(build(all, to_backend(&s.default_action), SAction::Allow, arch).unwrap());
        } else {
            // Still seccompiler's architecture check.
            out.push(build(BTreeMap::new(), SAction::Allow, SAction::KillProcess, arch).unwrap());
        }
        out
    }

    /// Every call the kernel could see, for both compilations.
    fn assert_same_verdicts(what: &str, s: &Seccomp, arch: TargetArch) {
        let ours = compile_for(s, arch).unwrap();
        let theirs = reference(s, arch);
        let argsets = [
            [0u64; 6],
            [0xffff_ffff, 0x5412, 0, 0, 0, 0],
            [0x1000_0000, 1, 2, 3, 4, 5],
            [0x7E02_0000, 0x541C, 0, 0, 0, 0],
            [u64::MAX, 16, 0, 0, 0, 0],
            [0x1_ffff_ffff, 10, 0, 0, 0, 0],
            [4, 1, 0, 0, 0, 0],
            [2, 0, 0, 0, 0, 0],
        ];
        let native = audit_arch(arch);
        let numbers = (0..640u32)
            .chain([X32_SYSCALL_BIT, X32_SYSCALL_BIT + 1, X32_SYSCALL_BIT + 59])
            .chain([0x7fff_ffff, 0xffff_fffe, u32::MAX]);
        for n in numbers {
            for a in argsets {
                for arch_v in [native, 0x4000_0003, 0xc000_00b7] {
                    assert_eq!(
                        stacked(&ours, n, arch_v, a),
                        stacked(&theirs, n, arch_v, a),
                        "{what}: syscall {n:#x}, arch {arch_v:#x}, args {a:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn main_filter_matches_reference_compilation() {
        for name in crate::profile::bundled::names() {
            let p = load(&name).unwrap();
            for arch in [TargetArch::x86_64, TargetArch::aarch64] {
                assert_same_verdicts(&format!("{name} {arch:?}"), &p.seccomp, arch);
            }
            let n = compile_for(&p.seccomp, TargetArch::x86_64).unwrap();
            let r = reference(&p.seccomp, TargetArch::x86_64);
            let size = |v: &[BpfProgram]| v.iter().map(Vec::len).sum::<usize>();
            assert!(
                n.len() < r.len() && size(&n) * 3 < size(&r),
                "{name}: {} vs {}",
                size(&n),
                size(&r)
            );
        }
        // Mixed shapes: an allow default with a deny list, conditional and
        // unconditional entries of several actions on the same numbers.
        let base = load("strict").unwrap().seccomp;
        let mut s = base.clone();
        s.default_action = SeccompAction::Allow;
        s.allow.clear();
        assert_same_verdicts("deny-list", &s, TargetArch::x86_64);
        let mut s = base.clone();
        s.default_action = SeccompAction::Errno(1, "EPERM".into());
        s.deny_action = SeccompAction::KillThread;
        for r in s.rules.clone() {
            let mut u = r.clone();
            u.args.clear();
            u.action = SeccompAction::Log;
            s.rules.push(u);
            let mut t = r;
            t.action = SeccompAction::Trap;
            s.rules.push(t);
        }
        assert_same_verdicts("mixed", &s, TargetArch::x86_64);
        let mut s = base;
        s.allow.clear();
        s.deny.clear();
        assert_same_verdicts("rules only", &s, TargetArch::x86_64);
    }

    #[test]
    fn search_handles_long_halves() {
        // Enough runs that a left half exceeds a conditional jump's reach.
        let iv: Vec<(u32, Leaf)> = (0..700u32).map(|i| (i * 2, Leaf::Ret(i))).collect();
        let mut prog = vec![ins(BPF_LD_W_ABS, 0, 0, DATA_NR)];
        prog.extend(search(&iv));
        for n in 0..1400u32 {
            assert_eq!(eval(&prog, n, 0, [0; 6]), n / 2, "{n}");
        }
        assert!(prog.iter().any(|i| i.code == BPF_JA));
    }

    #[test]
    fn resolves_native_names() {
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(resolve_syscall("read"), Some(0));
            assert_eq!(resolve_syscall("open"), Some(2));
        }
        assert_eq!(resolve_syscall("no_such_call"), None);
    }

    #[test]
    fn compiles_bundled_profiles_for_both_arches() {
        for name in ["strict", "ci", "net-bind"] {
            let p = load(name).unwrap();
            let x = compile_for(&p.seccomp, TargetArch::x86_64).unwrap();
            // The conditional rules' filters, then the main (kill) filter last.
            assert!((1..=3).contains(&x.len()), "{name}: {}", x.len());
            assert_eq!(
                x.last().unwrap()[..2],
                [
                    ins(BPF_LD_W_ABS, 0, 0, DATA_ARCH),
                    ins(BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
                ]
            );
            let a = compile_for(&p.seccomp, TargetArch::aarch64).unwrap();
            assert_eq!(a.len(), x.len(), "{name}");
        }
    }

    #[test]
    fn disabled_and_allow_default() {
        let mut s = load("strict").unwrap().seccomp;
        s.enabled = false;
        assert!(compile_for(&s, TargetArch::x86_64).unwrap().is_empty());
        s.enabled = true;
        s.default_action = SeccompAction::Allow;
        s.allow.clear();
        s.deny.clear();
        s.rules.clear();
        // Still a filter, for the architecture and x32 checks.
        let f = compile_for(&s, TargetArch::x86_64).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            eval(&f[0], 0, AUDIT_ARCH_X86_64, [0; 6]),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            eval(&f[0], 0, 0x4000_0003, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        assert_eq!(
            eval(&f[0], X32_SYSCALL_BIT, AUDIT_ARCH_X86_64, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn unknown_syscall_is_an_error() {
        let mut s = load("strict").unwrap().seccomp;
        s.allow.push("opn".into());
        assert!(
            matches!(compile_for(&s, TargetArch::x86_64), Err(SeccompError::UnknownSyscall(n)) if n == "opn")
        );
    }
}
