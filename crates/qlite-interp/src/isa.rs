//! Instruction-set tiers of the fast kernels: detected once, cappable, stored in the
//! interpreter.
//!
//! The tiers are ordered; a kernel takes the best path its tier allows:
//! - [`Isa::Portable`]: plain Rust;
//! - [`Isa::Avx2`]: AVX2 (+FMA);
//! - [`Isa::Avx512`]: AVX-512 F, BW, DQ and VL;
//! - [`Isa::Avx512Vnni`]: the above and AVX-512 VNNI (`vpdpbusd`); kernels that also need VBMI
//!   check it on top.
//!
//! The host's tier is detected once per process. It can be capped for the whole process with
//! the environment variable `QLITE_ISA` (`portable`, `avx2`, `avx512`, `avx512-vnni`) and per
//! interpreter with [`crate::Interpreter::isa`]. An interpreter stores its tier, packs its
//! weights for it, and makes it the *current* tier of the thread that runs it (and of the
//! threads a split convolution starts) for the length of a run: the kernels ask [`current`].

use std::cell::Cell;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    Portable,
    Avx2,
    Avx512,
    Avx512Vnni,
}

impl Isa {
    /// Every tier, lowest first.
    pub const ALL: [Isa; 4] = [Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512-vnni",
        }
    }

    /// The best tier this CPU supports (not capped).
    pub fn host() -> Isa {
        static HOST: OnceLock<Isa> = OnceLock::new();
        *HOST.get_or_init(detect)
    }

    /// The host's tier capped by `QLITE_ISA`, read once: what an interpreter gets by default.
    pub fn process_default() -> Isa {
        static DEFAULT: OnceLock<Isa> = OnceLock::new();
        *DEFAULT.get_or_init(|| {
            let cap = std::env::var("QLITE_ISA").ok().and_then(|v| v.parse::<Isa>().ok());
            cap.map_or(Isa::host(), |c| c.min(Isa::host()))
        })
    }

    /// Every tier up to [`Isa::process_default`]: the tiers a test can run here.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|&t| t <= Isa::process_default()).collect()
    }

    pub fn has_avx2(self) -> bool {
        self >= Isa::Avx2
    }

    pub fn has_avx512(self) -> bool {
        self >= Isa::Avx512
    }

    pub fn has_vnni(self) -> bool {
        self >= Isa::Avx512Vnni
    }

    /// VNNI and VBMI (`vpermb`), for the depthwise row layout.
    pub fn has_vnni_vbmi(self) -> bool {
        self.has_vnni() && vbmi()
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Isa {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Isa::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| {
            format!("unknown instruction-set tier {s:?} (expected one of {})", Isa::ALL.map(Isa::name).join(", "))
        })
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    use std::arch::is_x86_feature_detected as has;
    let avx512 = has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl");
    if avx512 && has!("avx512vnni") {
        Isa::Avx512Vnni
    } else if avx512 {
        Isa::Avx512
    } else if has!("avx2") && has!("fma") {
        Isa::Avx2
    } else {
        Isa::Portable
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Portable
}

/// Whether this machine could run AMX-INT8 tile kernels (Intel Sapphire Rapids and later):
/// probed at run time, never assumed. qlite has no AMX kernels yet; this says whether they
/// could run here, so a benchmark can say what it measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amx {
    /// The CPU has no AMX-TILE / AMX-INT8 (CPUID leaf 7: EDX bits 24 and 25).
    NotOnCpu,
    /// The CPU has it but the OS does not save the tile state (XCR0 bits 17 and 18 clear).
    NotEnabledByOs,
    /// Both: a process may request the tile data permission and use it.
    Available,
}

impl Amx {
    pub fn probe() -> Amx {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{__cpuid, __cpuid_count};
            // SAFETY: CPUID exists on every x86_64 CPU; leaf 7 is read only if the maximum
            // leaf reaches it, and XGETBV only if CPUID says OSXSAVE.
            #[allow(unsafe_code)]
            unsafe {
                if __cpuid(0).eax < 7 {
                    return Amx::NotOnCpu;
                }
                let edx = __cpuid_count(7, 0).edx;
                if edx & (1 << 24) == 0 || edx & (1 << 25) == 0 {
                    return Amx::NotOnCpu;
                }
                if __cpuid(1).ecx & (1 << 27) == 0 {
                    return Amx::NotEnabledByOs;
                }
                let xcr0 = std::arch::x86_64::_xgetbv(0);
                if xcr0 & (0b11 << 17) != 0b11 << 17 {
                    return Amx::NotEnabledByOs;
                }
                Amx::Available
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Amx::NotOnCpu
    }

    pub fn describe(self) -> &'static str {
        match self {
            Amx::NotOnCpu => "AMX-INT8: not on this CPU",
            Amx::NotEnabledByOs => "AMX-INT8: on this CPU but not enabled by the OS",
            Amx::Available => "AMX-INT8: available (qlite has no AMX kernels yet)",
        }
    }
}

fn vbmi() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vbmi")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

thread_local! {
    static CURRENT: Cell<Option<Isa>> = const { Cell::new(None) };
}

/// The tier the fast kernels on this thread may use: the running interpreter's (see
/// [`with`]), else the process default.
pub fn current() -> Isa {
    CURRENT.with(Cell::get).unwrap_or_else(Isa::process_default)
}

/// Run `f` with `isa` as this thread's current tier (restored afterwards, also on unwind).
/// A tier above the host's is lowered to the host's: the kernels' `unsafe` SIMD paths rely on
/// the current tier never claiming what the CPU lacks.
pub fn with<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    let isa = isa.min(Isa::host());
    struct Restore(Option<Isa>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(Some(isa))));
    f()
}

/// Run `f` once at every tier the host has (up to `QLITE_ISA`), each as the current tier. For
/// tests: when the environment variable `QLITE_TIER_LOG` names a directory, a file per tier run
/// is left there, so that CI can check that every tier the CPU has was exercised.
pub fn for_each_tier(mut f: impl FnMut(Isa)) {
    for t in Isa::available() {
        with(t, || f(t));
        if let Some(dir) = std::env::var_os("QLITE_TIER_LOG") {
            let dir = std::path::PathBuf::from(dir);
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join(t.name()), b"");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_order_parse_and_nest() {
        for t in Isa::ALL {
            assert_eq!(t.name().parse::<Isa>().unwrap(), t);
        }
        assert!("sse2".parse::<Isa>().unwrap_err().contains("portable, avx2, avx512, avx512-vnni"));
        assert!(Isa::available().contains(&Isa::Portable));
        let outer = current();
        with(Isa::Portable, || {
            assert_eq!(current(), Isa::Portable);
            with(Isa::Avx2, || assert_eq!(current(), Isa::Avx2));
            assert_eq!(current(), Isa::Portable);
        });
        assert_eq!(current(), outer);
    }
}
