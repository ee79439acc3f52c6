//! Seccomp: compiles a resolved [`crate::profile::Seccomp`] into the BPF
//! programs to install, in order, just before `execve`.
//!
//! Semantics (documented in README.md, "Profiles"): an *entry* is an allow-list
//! syscall (action allow), a deny-list syscall (action `deny_action`) or a
//! `[[seccomp.rule]]` whose arguments match (its own action). For a call,
//! if no entry matches, `default_action` applies; otherwise the MOST
//! RESTRICTIVE action among the matching entries applies. This is exactly
//! what the kernel computes for stacked filters, so it compiles to:
//!
//! 1. an x32 guard (hand-written BPF): any syscall number with bit
//!    0x40000000 set is killed (seccompiler does not check it);
//! 2. a base filter: every entry → allow, anything else → `default_action`
//!    (omitted when `default_action` is allow);
//! 3. one filter per distinct non-allow action A among the entries: the
//!    entries with action A → A, anything else → allow.
//!
//! Every filter built by seccompiler first checks the audit architecture
//! and kills on mismatch, so i386 `int 0x80` calls on x86_64 are refused.

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

/// Hand-written guard: on x86_64, kill any x32-ABI syscall (nr & 0x40000000).
/// Other architectures pass (the seccompiler filters kill them).
pub fn x32_guard() -> BpfProgram {
    vec![
        ins(BPF_LD_W_ABS, 0, 0, DATA_ARCH),
        ins(BPF_JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        ins(BPF_LD_W_ABS, 0, 0, DATA_NR),
        ins(BPF_JSET_K, 0, 1, X32_SYSCALL_BIT),
        ins(BPF_RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        ins(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const BPF_JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;

fn audit_arch(arch: TargetArch) -> u32 {
    match arch {
        TargetArch::aarch64 => 0xc000_00b7,
        TargetArch::riscv64 => 0xc000_00f3,
        _ => AUDIT_ARCH_X86_64,
    }
}

/// The base filter (every entry → allow, anything else → `default`). The
/// unconditional entries become sorted ranges of syscall numbers, three
/// instructions each, that fall through to a seccompiler filter for the
/// entries with argument conditions (which returns `default` for anything
/// else). An allow-list of ~300 syscalls is ~1300 instructions from
/// seccompiler alone (a compare per syscall plus jump trampolines) and
/// ~5x fewer this way; the kernel checks and JIT-compiles every
/// instruction at each install, which is on every run's critical path.
fn base_filter(
    all: Entries,
    default: &SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, SeccompError> {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    let mut conditional: Entries = BTreeMap::new();
    for (nr, alts) in all {
        if alts.is_some() {
            conditional.insert(nr, alts);
            continue;
        }
        let nr = nr as u32;
        match ranges.last_mut() {
            Some((_, hi)) if *hi + 1 == nr => *hi = nr,
            _ => ranges.push((nr, nr)),
        }
    }
    let mut f = vec![
        ins(BPF_LD_W_ABS, 0, 0, DATA_ARCH),
        ins(BPF_JEQ_K, 1, 0, audit_arch(arch)),
        ins(BPF_RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        ins(BPF_LD_W_ABS, 0, 0, DATA_NR),
    ];
    for (lo, hi) in ranges {
        f.push(ins(BPF_JGE_K, 0, 2, lo)); // below: try the next range
        f.push(ins(BPF_JGT_K, 1, 0, hi)); // above: try the next range
        f.push(ins(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW));
    }
    // Relative jumps only: the seccompiler program runs as is after ours.
    f.extend(build(
        conditional,
        to_backend(default),
        SAction::Allow,
        arch,
    )?);
    Ok(f)
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
    // Every entry (for the base filter), and the entries grouped by action.
    let mut all: Entries = BTreeMap::new();
    let mut by_action: BTreeMap<(u8, String), (SeccompAction, Entries)> = BTreeMap::new();
    let mut add_action = |a: &SeccompAction, n: i64, args: &[ArgCond]| {
        if *a != SeccompAction::Allow {
            let key = (rank(a), format!("{a:?}"));
            let e = by_action
                .entry(key)
                .or_insert_with(|| (a.clone(), BTreeMap::new()));
            add(&mut e.1, n, args);
        }
    };
    for name in &s.allow {
        if let Some(n) = nr(name)? {
            add(&mut all, n, &[]);
        }
    }
    for name in &s.deny {
        if let Some(n) = nr(name)? {
            add(&mut all, n, &[]);
            add_action(&s.deny_action, n, &[]);
        }
    }
    for r in &s.rules {
        if let Some(n) = nr(&r.syscall)? {
            add(&mut all, n, &r.args);
            add_action(&r.action, n, &r.args);
        }
    }
    // Filters are installed one after another with the seccomp(2) syscall,
    // so a filter that may refuse seccomp(2) itself must come last; the
    // kernel's verdict does not depend on the order.
    let seccomp_nr = for_arch("seccomp", arch);
    let touches = |e: &Entries| seccomp_nr.is_some_and(|n| e.contains_key(&n));
    let mut out = Vec::new();
    let mut last: Vec<BpfProgram> = Vec::new();
    if arch == TargetArch::x86_64 {
        out.push(x32_guard());
    }
    for (_, (a, entries)) in by_action.into_iter().rev() {
        let blocks = touches(&entries);
        let f = build(entries, SAction::Allow, to_backend(&a), arch)?;
        if blocks { last.push(f) } else { out.push(f) }
    }
    if s.default_action != SeccompAction::Allow {
        let allowed = seccomp_nr.is_some_and(|n| matches!(all.get(&n), Some(None)));
        let f = base_filter(all, &s.default_action, arch)?;
        if allowed { out.push(f) } else { last.push(f) }
    }
    if last.len() > 1 {
        return Err(SeccompError::SelfBlocking);
    }
    out.extend(last);
    if out.len() <= usize::from(arch == TargetArch::x86_64) {
        // No seccompiler filter (default allow, no entries): still add one
        // for its architecture check, which refuses foreign-ABI syscalls.
        out.push(build(
            BTreeMap::new(),
            SAction::Allow,
            SAction::KillProcess,
            arch,
        )?);
    }
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

    fn ret_value(a: &SeccompAction) -> u32 {
        match a {
            SeccompAction::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
            SeccompAction::KillThread => libc::SECCOMP_RET_KILL_THREAD,
            SeccompAction::Trap => libc::SECCOMP_RET_TRAP,
            SeccompAction::Errno(n, _) => libc::SECCOMP_RET_ERRNO | *n as u32,
            SeccompAction::Log => libc::SECCOMP_RET_LOG,
            SeccompAction::Allow => libc::SECCOMP_RET_ALLOW,
        }
    }

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

    #[test]
    fn range_base_filter_matches_seccompiler() {
        for name in crate::profile::bundled::names() {
            let p = load(&name).unwrap();
            let s = &p.seccomp;
            if !s.enabled || s.default_action == SeccompAction::Allow {
                continue;
            }
            let mut all: Entries = BTreeMap::new();
            let nr = |n: &str| for_arch(n, TargetArch::x86_64);
            for n in s.allow.iter().chain(&s.deny) {
                if let Some(n) = nr(n) {
                    add(&mut all, n, &[]);
                }
            }
            for r in &s.rules {
                if let Some(n) = nr(&r.syscall) {
                    add(&mut all, n, &r.args);
                }
            }
            let ours = base_filter(all.clone(), &s.default_action, TargetArch::x86_64).unwrap();
            let theirs = build(
                all,
                to_backend(&s.default_action),
                SAction::Allow,
                TargetArch::x86_64,
            )
            .unwrap();
            assert!(
                ours.len() * 3 < theirs.len(),
                "{} vs {}",
                ours.len(),
                theirs.len()
            );
            let x86 = AUDIT_ARCH_X86_64;
            assert_eq!(eval(&ours, 0, x86, [0; 6]), libc::SECCOMP_RET_ALLOW, "read");
            assert_eq!(eval(&ours, 599, x86, [0; 6]), ret_value(&s.default_action));
            let argsets = [
                [0u64; 6],
                [0xffff_ffff, 0x5412, 0, 0, 0, 0],
                [0x1000_0000, 1, 2, 3, 4, 5],
                [0x7E02_0000, 0x541C, 0, 0, 0, 0],
                [u64::MAX, 16, 0, 0, 0, 0],
                [0x1_ffff_ffff, 10, 0, 0, 0, 0],
            ];
            for arch in [AUDIT_ARCH_X86_64, 0x4000_0003] {
                for n in 0..600u32 {
                    for a in argsets {
                        assert_eq!(
                            eval(&ours, n, arch, a),
                            eval(&theirs, n, arch, a),
                            "profile {name}, syscall {n}, arch {arch:#x}, args {a:?}"
                        );
                    }
                }
            }
        }
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
            // x32 guard, the ERRNO filters, then the base (kill) filter last.
            assert_eq!(x[0], x32_guard());
            assert!(x.len() >= 3, "{name}: {}", x.len());
            let a = compile_for(&p.seccomp, TargetArch::aarch64).unwrap();
            assert_eq!(a.len(), x.len() - 1, "{name}: no x32 guard on aarch64");
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
        // Still an x32 guard and an arch-checking filter.
        assert_eq!(compile_for(&s, TargetArch::x86_64).unwrap().len(), 2);
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
