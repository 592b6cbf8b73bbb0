//! Whether the hypervisor keeps this vCPU's vector registers: fill all sixteen XMM
//! registers and MXCSR with a pattern, run one instruction that enters the hypervisor
//! (a `syscall`, a trapped instruction), read them back. The hypervisor's own code uses
//! the XMM registers on some paths and must save and restore the guest's around them;
//! on others it must not touch them at all (its fast path and lanes set no CR0.TS: see
//! the hypervisor's `entry.S`). Used by the `xmm_preserved` self-test and by the fuzzer,
//! which probes every random hypercall it makes.

/// MXCSR at reset: every exception masked, round to nearest.
pub static MXCSR_DEFAULT: u32 = 0x1f80;

/// MXCSR while probing: a rounding mode other than the default (round toward -inf).
pub static MXCSR_PROBE: u32 = 0x3f80;

/// The pattern of round `round`: 32 words, two per XMM register, none alike.
pub fn pattern(round: u64) -> [u64; 32] {
    core::array::from_fn(|i| 0x0101_0101_0101_0101 * (i as u64 + 1) + round)
}

/// What changed across the instruction, if anything: the first XMM register that did
/// not come back as it went in, or MXCSR (before, after).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Changed {
    /// `xmmN` changed.
    Xmm(usize),
    /// MXCSR went from the first value to the second.
    Mxcsr(u32, u32),
}

/// Compares what came back (`after`, MXCSR `mxcsr_out`) with round `round`'s pattern.
pub fn changed(round: u64, after: &[u64; 32], mxcsr_out: u32) -> Option<Changed> {
    let pattern = pattern(round);
    if let Some(word) = after.iter().zip(&pattern).position(|(a, b)| a != b) {
        return Some(Changed::Xmm(word / 2));
    }
    (mxcsr_out != MXCSR_PROBE).then_some(Changed::Mxcsr(MXCSR_PROBE, mxcsr_out))
}

impl core::fmt::Display for Changed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Changed::Xmm(n) => write!(f, "xmm{n} changed"),
            Changed::Mxcsr(before, after) => write!(f, "MXCSR changed: {before:#x} -> {after:#x}"),
        }
    }
}

/// Runs `$insn` with the XMM registers and MXCSR holding round `$round`'s pattern and rax,
/// rdi, rsi, rdx, r10 and r8 as given (rcx and r11 clobbered, as by `syscall`); evaluates
/// to `(rax after, Option<Changed>)`. Unsafe: the caller vouches for what `$insn` does
/// with those registers (for a hypercall: what the call may write).
macro_rules! across {
    ($insn:literal, $round:expr, [$rax:expr, $rdi:expr, $rsi:expr, $rdx:expr, $r10:expr, $r8:expr]) => {{
        let round: u64 = $round;
        let pattern = $crate::xmm_probe::pattern(round);
        let mut after = [0u64; 32];
        let mut mxcsr_out: u32 = 0;
        let rax_out: u64;
        core::arch::asm!(
            "ldmxcsr [{mi}]",
            "movdqu xmm0, [{p}]", "movdqu xmm1, [{p} + 16]", "movdqu xmm2, [{p} + 32]",
            "movdqu xmm3, [{p} + 48]", "movdqu xmm4, [{p} + 64]", "movdqu xmm5, [{p} + 80]",
            "movdqu xmm6, [{p} + 96]", "movdqu xmm7, [{p} + 112]", "movdqu xmm8, [{p} + 128]",
            "movdqu xmm9, [{p} + 144]", "movdqu xmm10, [{p} + 160]", "movdqu xmm11, [{p} + 176]",
            "movdqu xmm12, [{p} + 192]", "movdqu xmm13, [{p} + 208]", "movdqu xmm14, [{p} + 224]",
            "movdqu xmm15, [{p} + 240]",
            $insn,
            "movdqu [{a}], xmm0", "movdqu [{a} + 16], xmm1", "movdqu [{a} + 32], xmm2",
            "movdqu [{a} + 48], xmm3", "movdqu [{a} + 64], xmm4", "movdqu [{a} + 80], xmm5",
            "movdqu [{a} + 96], xmm6", "movdqu [{a} + 112], xmm7", "movdqu [{a} + 128], xmm8",
            "movdqu [{a} + 144], xmm9", "movdqu [{a} + 160], xmm10", "movdqu [{a} + 176], xmm11",
            "movdqu [{a} + 192], xmm12", "movdqu [{a} + 208], xmm13", "movdqu [{a} + 224], xmm14",
            "movdqu [{a} + 240], xmm15",
            "stmxcsr [{mo}]",
            "ldmxcsr [{md}]",
            p = in(reg) pattern.as_ptr(),
            a = in(reg) after.as_mut_ptr(),
            mi = in(reg) &$crate::xmm_probe::MXCSR_PROBE,
            mo = in(reg) &mut mxcsr_out,
            md = in(reg) &$crate::xmm_probe::MXCSR_DEFAULT,
            inlateout("rax") $rax => rax_out,
            inlateout("rdi") $rdi => _,
            inlateout("rsi") $rsi => _,
            inlateout("rdx") $rdx => _,
            inlateout("r10") $r10 => _,
            inlateout("r8") $r8 => _,
            out("rcx") _, out("r11") _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(nostack),
        );
        (rax_out, $crate::xmm_probe::changed(round, &after, mxcsr_out))
    }};
}
pub(crate) use across;
