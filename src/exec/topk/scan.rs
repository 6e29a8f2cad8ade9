//! The range scan behind the gather and band passes: for each block of 64 keys, a bit
//! mask of the keys whose magnitude key lies in `[lo, hi]` and one of those above `hi`.
//! On x86-64 the masks come from vector compares: sixteen keys per instruction with
//! AVX-512 (the compares give bit masks directly), eight with AVX2; elsewhere, and for
//! the last partial block, from the scalar loop. All give the same bits: the scan is
//! exact, only faster.

use crate::ir::reference::magnitude_key;

/// Keys per mask.
pub const BLOCK: usize = 64;

/// Calls `f(block, inside, above)` for each block of 64 keys of `keys` in order (the last
/// may be shorter): bit `i` of `inside` is set when `lo <= magnitude_key(block[i]) <= hi`,
/// and of `above` when it is `> hi`.
#[inline(always)]
pub fn range_masks(keys: &[f32], lo: u32, hi: u32, f: &mut impl FnMut(&[f32], u64, u64)) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use simd::Masks;
        if let Some(simd) = simd::Avx512::try_new() {
            done = simd.run(keys, lo, hi, f);
        } else if let Some(simd) = pulp::x86::V3::try_new() {
            done = simd.run(keys, lo, hi, f);
        }
    }
    for block in keys[done..].chunks(BLOCK) {
        let (inside, above) = scalar_masks(block, lo, hi);
        f(block, inside, above);
    }
}

/// The masks of one block of at most 64 keys, one key at a time.
#[inline(always)]
fn scalar_masks(block: &[f32], lo: u32, hi: u32) -> (u64, u64) {
    let (mut inside, mut above) = (0u64, 0u64);
    for (i, &x) in block.iter().enumerate() {
        let k = magnitude_key(x);
        inside |= ((lo <= k && k <= hi) as u64) << i;
        above |= ((k > hi) as u64) << i;
    }
    (inside, above)
}

/// The vector scans: one loop over whole blocks, generic over how an instruction set
/// computes a block's masks.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::BLOCK;
    use pulp::bytemuck::cast;
    use pulp::x86::V3;
    use std::arch::x86_64 as arch;

    /// `|x|`'s bits with every NaN as this one value, just above infinity's: in that form
    /// the magnitude order (NaN above everything) is the order of signed 32-bit integers.
    pub(super) const NAN: u32 = 0x7f80_0001;

    /// The bounds in the canonical form, as signed compares take them: `k >= lo` iff
    /// `canon(k) > lo_c - 1`, `k <= hi` iff `canon(k) <= hi_c`, where a NaN's key is
    /// `u32::MAX` and its canonical form [`NAN`]. Returns `(lo_c - 1, hi_c)` (`lo_c - 1 >=
    /// -1`: no overflow).
    fn bounds(lo: u32, hi: u32) -> (i32, i32) {
        let lo_c = lo.min(NAN);
        let hi_c = match hi {
            u32::MAX => NAN,
            h => h.min(NAN - 1),
        };
        (lo_c as i32 - 1, hi_c as i32)
    }

    /// An instruction set's masks of one whole block of [`BLOCK`] keys.
    pub trait Masks: Copy {
        /// The bounds `(lo_c - 1, hi_c)` in the form the compares take.
        type Bounds: Copy;
        fn prepare(self, below: i32, top: i32) -> Self::Bounds;
        /// `(inside, above)` of one block.
        fn masks(self, b: Self::Bounds, block: &[f32]) -> (u64, u64);
        /// [`scan`] compiled with the instruction set enabled.
        fn run<F: FnMut(&[f32], u64, u64)>(
            self,
            keys: &[f32],
            lo: u32,
            hi: u32,
            f: &mut F,
        ) -> usize;
    }

    /// AVX2: eight keys per compare, the masks by movemask.
    impl Masks for V3 {
        type Bounds = [std::arch::x86_64::__m256i; 4];
        #[inline(always)]
        fn prepare(self, below: i32, top: i32) -> Self::Bounds {
            [0x7fff_ffff, NAN as i32, below, top].map(|x| self.avx._mm256_set1_epi32(x))
        }
        #[inline(always)]
        fn masks(self, [abs, nan, below, top]: Self::Bounds, block: &[f32]) -> (u64, u64) {
            let (mut inside, mut above) = (0u64, 0u64);
            for (g, eight) in block.chunks_exact(8).enumerate() {
                let eight: [f32; 8] = eight.try_into().expect("eight keys");
                let bits: std::arch::x86_64::__m256i = cast(eight);
                let k = self.avx2._mm256_and_si256(bits, abs);
                let k = self.avx2._mm256_min_epi32(k, nan);
                let ge_lo = self.avx2._mm256_cmpgt_epi32(k, below);
                let gt_hi = self.avx2._mm256_cmpgt_epi32(k, top);
                let ins = self.avx2._mm256_andnot_si256(gt_hi, ge_lo);
                let m_in = self.avx._mm256_movemask_ps(cast(ins)) as u32 as u64;
                let m_hi = self.avx._mm256_movemask_ps(cast(gt_hi)) as u32 as u64;
                inside |= m_in << (8 * g);
                above |= m_hi << (8 * g);
            }
            (inside, above)
        }
        #[inline(always)]
        fn run<F: FnMut(&[f32], u64, u64)>(
            self,
            keys: &[f32],
            lo: u32,
            hi: u32,
            f: &mut F,
        ) -> usize {
            self.vectorize(Scan {
                simd: self,
                keys,
                lo,
                hi,
                f,
            })
        }
    }

    /// AVX-512F, found at run time: written with `std::arch` rather than pulp's `V4`,
    /// whose cargo feature (`x86-v4`) would also switch faer, and with it the bits of
    /// `extract-lora`'s factorisation, to AVX-512 kernels on CPUs that have them.
    #[derive(Clone, Copy)]
    pub struct Avx512(());

    impl Avx512 {
        pub fn try_new() -> Option<Self> {
            is_x86_feature_detected!("avx512f").then_some(Self(()))
        }
    }

    /// [`scan`] with AVX-512F enabled: the masks' intrinsics inline into its loop.
    ///
    /// # Safety
    /// The CPU has AVX-512F (an [`Avx512`] exists).
    #[target_feature(enable = "avx512f")]
    fn scan_avx512<F: FnMut(&[f32], u64, u64)>(
        simd: Avx512,
        keys: &[f32],
        lo: u32,
        hi: u32,
        f: &mut F,
    ) -> usize {
        scan(simd, keys, lo, hi, f)
    }

    /// Sixteen keys per compare, whose results are bit masks already.
    impl Masks for Avx512 {
        type Bounds = [arch::__m512i; 4];
        #[inline(always)]
        fn prepare(self, below: i32, top: i32) -> Self::Bounds {
            // SAFETY: `self` exists only where the CPU has AVX-512F.
            [0x7fff_ffff, NAN as i32, below, top].map(|x| unsafe { arch::_mm512_set1_epi32(x) })
        }
        #[inline(always)]
        fn masks(self, [abs, nan, below, top]: Self::Bounds, block: &[f32]) -> (u64, u64) {
            let (mut inside, mut above) = (0u64, 0u64);
            for (g, sixteen) in block.chunks_exact(16).enumerate() {
                // SAFETY: the CPU has AVX-512F (`self` exists); the load reads the
                // sixteen keys of `sixteen`, unaligned loads allowed.
                let (ins, gt_hi) = unsafe {
                    let bits = arch::_mm512_loadu_si512(sixteen.as_ptr().cast());
                    let k = arch::_mm512_and_si512(bits, abs);
                    let k = arch::_mm512_min_epi32(k, nan);
                    let ge_lo = arch::_mm512_cmpgt_epi32_mask(k, below);
                    // Inside as a masked compare (in mask registers): with `ge_lo &
                    // !gt_hi` in integer code, LLVM gathered the four blocks' masks into
                    // a vector register to combine them, a dozen instructions more per
                    // 64 keys.
                    let ins = arch::_mm512_mask_cmple_epi32_mask(ge_lo, k, top);
                    (ins, arch::_mm512_cmpgt_epi32_mask(k, top))
                };
                inside |= (ins as u64) << (16 * g);
                above |= (gt_hi as u64) << (16 * g);
            }
            (inside, above)
        }
        #[inline(always)]
        fn run<F: FnMut(&[f32], u64, u64)>(
            self,
            keys: &[f32],
            lo: u32,
            hi: u32,
            f: &mut F,
        ) -> usize {
            // SAFETY: `self` exists only where the CPU has AVX-512F.
            unsafe { scan_avx512(self, keys, lo, hi, f) }
        }
    }

    /// [`scan`] as a function pulp compiles with the instruction set enabled (a closure
    /// would not be inlined there, and every intrinsic would become a call).
    pub struct Scan<'a, S, F> {
        pub simd: S,
        pub keys: &'a [f32],
        pub lo: u32,
        pub hi: u32,
        pub f: &'a mut F,
    }

    impl<S: Masks, F: FnMut(&[f32], u64, u64)> pulp::NullaryFnOnce for Scan<'_, S, F> {
        type Output = usize;
        #[inline(always)]
        fn call(self) -> usize {
            scan(self.simd, self.keys, self.lo, self.hi, self.f)
        }
    }

    /// The masks of every whole block of `keys`, to `f`; returns how many keys it read.
    #[inline(always)]
    fn scan<S: Masks>(
        simd: S,
        keys: &[f32],
        lo: u32,
        hi: u32,
        f: &mut impl FnMut(&[f32], u64, u64),
    ) -> usize {
        let (below, top) = bounds(lo, hi);
        let b = simd.prepare(below, top);
        let whole = keys.len() / BLOCK * BLOCK;
        for block in keys[..whole].chunks_exact(BLOCK) {
            let (inside, above) = simd.masks(b, block);
            f(block, inside, above);
        }
        whole
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::simd::{Avx512, Masks, NAN};
    use super::{BLOCK, scalar_masks};
    use crate::ir::reference::magnitude_key;

    /// Every pair of special bounds over keys mixing the special values: `scan`'s masks
    /// (and the number of keys it read) are the scalar loop's.
    /// A scan under test: `(keys, lo, hi, masks out) -> keys read`.
    type ScanFn<'a> = dyn FnMut(&[f32], u32, u32, &mut Vec<(u64, u64)>) -> usize + 'a;

    fn matches_scalar(scan: &mut ScanFn) {
        let special = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            f32::MIN_POSITIVE,
            1e-42,
            f32::MAX,
            -f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7fc0_1234),
            f32::from_bits(0xff80_0001),
            0.5,
            -0.25,
        ];
        let keys: Vec<f32> = (0..BLOCK * 4)
            .map(|i| special[(i * 7 + i / 16) % special.len()])
            .collect();
        let mut bounds: Vec<u32> = special.iter().map(|&x| magnitude_key(x)).collect();
        bounds.extend([
            0,
            1,
            u32::MAX - 1,
            u32::MAX,
            NAN,
            NAN - 1,
            NAN + 1,
            0x7f80_0000,
        ]);
        for &lo in &bounds {
            for &hi in &bounds {
                let mut got = Vec::new();
                let n = scan(&keys, lo, hi, &mut got);
                assert_eq!(n, keys.len());
                let want: Vec<(u64, u64)> = keys
                    .chunks(BLOCK)
                    .map(|b| scalar_masks(b, lo, hi))
                    .collect();
                assert_eq!(got, want, "lo {lo:#x} hi {hi:#x}");
            }
        }
    }

    /// [`matches_scalar`] for the scan of one instruction set.
    fn check<S: Masks>(simd: S) {
        matches_scalar(&mut |keys, lo, hi, got| {
            simd.run(keys, lo, hi, &mut |_: &[f32], i, a| got.push((i, a)))
        });
    }

    #[test]
    fn the_avx2_masks_are_the_scalar_masks() {
        if let Some(simd) = pulp::x86::V3::try_new() {
            check(simd);
        }
    }

    #[test]
    fn the_avx512_masks_are_the_scalar_masks() {
        match Avx512::try_new() {
            Some(simd) => check(simd),
            None => eprintln!("no AVX-512 on this CPU: its scan is not tested here"),
        }
    }
}
