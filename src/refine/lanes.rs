//! Weighted sums of rows of eight-lane blocks: the inner loop of the grid kernel's two
//! passes, written with AVX2 intrinsics where the caller runs with AVX2 and FMA, because the
//! plain loop kept its accumulators in memory and checked bounds on every tap.

/// `out[..cp] = Σ_e w_e · row_e[..cp]` for `e in 0..count`, where `source(e)` gives the
/// start of `row_e` and `w_e`; with AVX2 and FMA when `F` (the caller must be compiled
/// with them).
///
/// # Safety
/// Every `source(e)` for `e < count` points to `cp` readable floats; `cp` is a multiple
/// of 8; `out` holds `cp` floats.
#[inline(always)]
pub(crate) unsafe fn weighted_sum<const F: bool>(
    count: usize,
    source: impl Fn(usize) -> (*const f32, f32),
    cp: usize,
    out: &mut [f32],
) {
    debug_assert!(cp.is_multiple_of(8) && out.len() >= cp);
    #[cfg(target_arch = "x86_64")]
    if F {
        // The rows and their broadcast weights found once, not once per block.
        use std::arch::x86_64::*;
        assert!(count <= ROWS, "a weighted sum of {count} rows");
        let mut rows = [(std::ptr::null::<f32>(), _mm256_setzero_ps()); ROWS];
        for (e, row) in rows.iter_mut().enumerate().take(count) {
            let (p, w) = source(e);
            *row = (p, _mm256_set1_ps(w));
        }
        let rows = &rows[..count];
        let mut at = 0;
        while cp - at >= 32 {
            at += blocks::<4>(rows, at, out);
        }
        match (cp - at) / 8 {
            0 => {}
            1 => drop(blocks::<1>(rows, at, out)),
            2 => drop(blocks::<2>(rows, at, out)),
            _ => drop(blocks::<3>(rows, at, out)),
        }
        return;
    }
    out[..cp].fill(0.0);
    for e in 0..count {
        let (row, w) = source(e);
        let row = std::slice::from_raw_parts(row, cp);
        for (o, &v) in out.iter_mut().zip(row) {
            *o += w * v;
        }
    }
}

/// [`weighted_sum`] from code not compiled for AVX2: picks the version at run time.
///
/// # Safety
/// As for [`weighted_sum`].
pub(crate) unsafe fn sum(
    count: usize,
    source: impl Fn(usize) -> (*const f32, f32),
    cp: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(
            count: usize,
            source: impl Fn(usize) -> (*const f32, f32),
            cp: usize,
            out: &mut [f32],
        ) {
            weighted_sum::<true>(count, source, cp, out)
        }
        return avx2(count, source, cp, out);
    }
    weighted_sum::<false>(count, source, cp, out)
}

/// Most rows [`weighted_sum`] sums with AVX2: its table of rows and weights. The grid's
/// blurs have at most 15 taps (a sampled Gaussian of at most 2 cells, cut at 1/1000).
#[cfg(target_arch = "x86_64")]
const ROWS: usize = 16;

/// `B` blocks of the sum of `rows` (start, broadcast weight) from lane `at`, accumulated
/// in registers in row order; returns the lanes done.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn blocks<const B: usize>(
    rows: &[(*const f32, std::arch::x86_64::__m256)],
    at: usize,
    out: &mut [f32],
) -> usize {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); B];
    for &(row, w) in rows {
        for (b, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(row.add(at + 8 * b)), *acc);
        }
    }
    for (b, acc) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.as_mut_ptr().add(at + 8 * b), *acc);
    }
    8 * B
}

/// `acc += w * x` over the whole eight-lane blocks the two rows share; with AVX2 and FMA
/// when `F` (the caller must be compiled with them).
#[inline(always)]
pub(crate) fn axpy<const F: bool>(acc: &mut [f32], w: f32, x: &[f32]) {
    let len = acc.len().min(x.len()) / 8 * 8;
    #[cfg(target_arch = "x86_64")]
    if F {
        use std::arch::x86_64::*;
        // SAFETY: lanes 0..len lie in both rows; the caller runs with AVX2 and FMA.
        unsafe {
            let wv = _mm256_set1_ps(w);
            let (a, x) = (acc.as_mut_ptr(), x.as_ptr());
            for i in (0..len).step_by(8) {
                let v = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.add(i)), _mm256_loadu_ps(a.add(i)));
                _mm256_storeu_ps(a.add(i), v);
            }
        }
        return;
    }
    for (a, &x) in acc[..len].iter_mut().zip(&x[..len]) {
        *a = fma::<F>(w, x, *a);
    }
}

/// Eight lanes of [`fast_exp`](super::crf::fast_exp), operation for operation (so both give
/// the same bits).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn exp8(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const ROUND: f32 = 12_582_912.0;
    let s = _mm256_set1_ps;
    let x = _mm256_min_ps(_mm256_max_ps(x, s(-80.0)), s(88.0));
    let big = _mm256_add_ps(_mm256_mul_ps(x, s(LOG2E)), s(ROUND));
    let n = _mm256_sub_ps(big, s(ROUND));
    let ni = _mm256_sub_epi32(
        _mm256_castps_si256(big),
        _mm256_set1_epi32(ROUND.to_bits() as i32),
    );
    let r = _mm256_sub_ps(
        _mm256_sub_ps(x, _mm256_mul_ps(n, s(0.693_359_4))),
        _mm256_mul_ps(n, s(-2.121_944_4e-4)),
    );
    let p = _mm256_fmadd_ps(s(1.987_569_1e-4), r, s(1.398_199_9e-3));
    let p = _mm256_fmadd_ps(p, r, s(8.333_452e-3));
    let p = _mm256_fmadd_ps(p, r, s(4.166_579_6e-2));
    let p = _mm256_fmadd_ps(p, r, s(1.666_666_5e-1));
    let p = _mm256_fmadd_ps(p, r, s(0.5));
    let y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, s(1.0)));
    let scale = _mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23);
    _mm256_mul_ps(y, _mm256_castsi256_ps(scale))
}

/// In-place softmax of a row of eight-lane blocks over its first `classes` lanes, the
/// padding lanes (never the maximum) set to 0; with AVX2 and FMA when `F`. Returns false,
/// having done nothing, where the AVX2 version does not apply.
#[inline(always)]
pub(crate) fn softmax_row<const F: bool>(row: &mut [f32], classes: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if F {
        use std::arch::x86_64::*;
        let len = row.len() / 8 * 8;
        // SAFETY: every block lies in the row; the caller runs with AVX2 and FMA.
        unsafe {
            let p = row.as_mut_ptr();
            let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
            for i in (0..len).step_by(8) {
                m = _mm256_max_ps(m, _mm256_loadu_ps(p.add(i)));
            }
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), m);
            let m = _mm256_set1_ps(lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)));
            let mut sum = _mm256_setzero_ps();
            for i in (0..len).step_by(8) {
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), m));
                _mm256_storeu_ps(p.add(i), e);
                sum = _mm256_add_ps(sum, e);
            }
            _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
            let inv = _mm256_set1_ps(1.0 / lanes.iter().sum::<f32>());
            for i in (0..len).step_by(8) {
                _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), inv));
            }
        }
        row[classes..].fill(0.0);
        return true;
    }
    let _ = (row, classes);
    false
}

/// Runs `f` with denormal floats flushed to zero, in results and in operands (MXCSR's FTZ
/// and DAZ bits), then restores the thread's setting, also when `f` panics. The CRF's
/// smallest probabilities times small splat weights fall below `f32::MIN_POSITIVE`, and
/// every operation that makes or reads a denormal costs a microcode assist of some hundred
/// cycles; flushed, they count as the zeros they nearly are.
pub(crate) fn flush_denormals<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        struct Restore(u32);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: loads the control word read below.
                unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &self.0, options(nostack)) };
            }
        }
        let mut old = 0u32;
        // SAFETY: stores the SSE control word into a local; loads it with FTZ and DAZ set.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut old, options(nostack));
            let flush = old | 0x8040;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &flush, options(nostack));
        }
        let _restore = Restore(old);
        f()
    }
    #[cfg(not(target_arch = "x86_64"))]
    f()
}

/// Eight lanes of [`fast_ln`](super::crf::fast_ln) (with fused multiply-adds in the
/// polynomial), for positive normal inputs.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn ln8(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let s = _mm256_set1_ps;
    let bits = _mm256_castps_si256(x);
    let e = _mm256_and_si256(_mm256_srli_epi32::<23>(bits), _mm256_set1_epi32(0xff));
    let e = _mm256_sub_epi32(e, _mm256_set1_epi32(126));
    let m = _mm256_or_si256(
        _mm256_and_si256(bits, _mm256_set1_epi32(0x807f_ffff_u32 as i32)),
        _mm256_set1_epi32(0x3f00_0000),
    );
    let m = _mm256_castsi256_ps(m);
    let small = _mm256_cmp_ps::<_CMP_LT_OQ>(m, s(std::f32::consts::FRAC_1_SQRT_2));
    // All ones (-1) where small.
    let e = _mm256_cvtepi32_ps(_mm256_add_epi32(e, _mm256_castps_si256(small)));
    let m = _mm256_sub_ps(_mm256_add_ps(m, _mm256_and_ps(small, m)), s(1.0));
    let z = _mm256_mul_ps(m, m);
    let mut p = s(7.037_683_6e-2);
    for c in [
        -1.151_461e-1,
        1.167_699_9e-1,
        -1.242_014_1e-1,
        1.424_932_3e-1,
        -1.666_805_8e-1,
        2.000_071_4e-1,
        -2.499_999_4e-1,
        3.333_333e-1,
    ] {
        p = _mm256_fmadd_ps(p, m, s(c));
    }
    let p = _mm256_mul_ps(_mm256_mul_ps(p, m), z);
    let y = _mm256_sub_ps(
        _mm256_sub_ps(p, _mm256_mul_ps(s(2.121_944_4e-4), e)),
        _mm256_mul_ps(s(0.5), z),
    );
    _mm256_add_ps(_mm256_add_ps(m, y), _mm256_mul_ps(s(0.693_359_4), e))
}

/// `out = Σ parts`, each part `(values, offset)` added at its offset into `out` (zero where
/// no part reaches), in parallel: how per-task splat copies are combined.
pub(crate) fn sum_into(out: &mut [f32], parts: &[(&[f32], usize)]) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 14;
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
        let (a, b) = (c * CHUNK, c * CHUNK + out.len());
        out.fill(0.0);
        for &(part, at) in parts {
            let (lo, hi) = (a.max(at), b.min(at + part.len()));
            if lo < hi {
                for (o, &v) in out[lo - a..hi - a].iter_mut().zip(&part[lo - at..hi - at]) {
                    *o += v;
                }
            }
        }
    });
}

/// `a * b + c`, fused where the code is compiled for FMA (`F`); a plain multiply and add
/// elsewhere, where `mul_add` would be a library call.
#[inline(always)]
pub(crate) fn fma<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Whether the AVX2 versions can run here.
pub(crate) fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX2.get_or_init(|| {
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
