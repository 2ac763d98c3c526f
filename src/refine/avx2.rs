//! One band of a mean-field pass for rows of one to four eight-lane blocks (up to 32
//! classes), with every pixel's row held in AVX2 registers from the slice through the
//! softmax to the splat. The portable version in `crf` keeps the row in memory, where each
//! step waits on the store of the step before it.

use std::arch::x86_64::*;

use super::crf::{unary_row, Kernels, Sink};
use super::lanes::exp8;
use crate::frame::ScoreKind;

/// The largest lane, in every lane.
#[inline(always)]
unsafe fn hmax(v: __m256) -> __m256 {
    let t = _mm256_max_ps(v, _mm256_permute2f128_ps::<1>(v, v));
    let t = _mm256_max_ps(t, _mm256_permute_ps::<0b01_00_11_10>(t));
    _mm256_max_ps(t, _mm256_permute_ps::<0b10_11_00_01>(t))
}

/// The sum of the lanes, in every lane.
#[inline(always)]
unsafe fn hsum(v: __m256) -> __m256 {
    let t = _mm256_add_ps(v, _mm256_permute2f128_ps::<1>(v, v));
    let t = _mm256_add_ps(t, _mm256_permute_ps::<0b01_00_11_10>(t));
    _mm256_add_ps(t, _mm256_permute_ps::<0b10_11_00_01>(t))
}

/// `acc += w * row` for a row of `B` blocks.
#[inline(always)]
unsafe fn gather<const B: usize>(acc: &mut [__m256; B], w: f32, row: &[f32]) {
    let (w, row) = (_mm256_set1_ps(w), row[..8 * B].as_ptr());
    for (b, acc) in acc.iter_mut().enumerate() {
        *acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(row.add(8 * b)), *acc);
    }
}

/// `row += w * p` for a row of `B` blocks.
#[inline(always)]
unsafe fn scatter<const B: usize>(row: &mut [f32], w: f32, p: &[__m256; B]) {
    let (w, row) = (_mm256_set1_ps(w), row[..8 * B].as_mut_ptr());
    for (b, p) in p.iter().enumerate() {
        let v = _mm256_fmadd_ps(w, *p, _mm256_loadu_ps(row.add(8 * b)));
        _mm256_storeu_ps(row.add(8 * b), v);
    }
}

/// See [`super::crf`]'s portable band: the same pass, for `cp == 8 * B`.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn band<const B: usize>(
    k: &Kernels,
    y0: usize,
    scores: Option<(&[f32], usize, ScoreKind)>,
    base: &mut [f32],
    mut sink: Sink,
) {
    let Kernels {
        w,
        cp,
        classes,
        grid,
        lattice,
    } = *k;
    debug_assert_eq!(cp, 8 * B);
    // The lanes of the last block that hold classes.
    let live = classes - 8 * (B - 1);
    let lanes: [i32; 8] = std::array::from_fn(|l| if l < live { -1 } else { 0 });
    let mask = _mm256_castsi256_ps(_mm256_loadu_si256(lanes.as_ptr().cast()));
    let mut spill = [0f32; 32];
    for (j, b) in base.chunks_exact_mut(cp).enumerate() {
        let (x, y) = (j % w, y0 + j / w);
        let i = y * w + x;
        let corners = grid.map(|(g, _)| g.corners(x, y, cp));
        let mut acc = [_mm256_setzero_ps(); B];
        let mut acc2 = [_mm256_setzero_ps(); B];
        if let Some((scores, n, kind)) = scores {
            for (l, v) in b[..classes].iter_mut().enumerate() {
                *v = scores[l * n + i];
            }
            unary_row::<true>(b, classes, kind);
        } else {
            if let (Some((g, cells)), Some((corners, norm))) = (grid, corners) {
                let post = g.weight() * norm;
                for (at, wgt) in corners {
                    gather::<B>(&mut acc, wgt * post, &cells[at..]);
                }
            }
            if let Some((l, values)) = lattice {
                let dp1 = l.dim() + 1;
                let post = l.post[i];
                let vertices = &l.offset[i * dp1..i * dp1 + dp1];
                for (&o, &bary) in vertices.iter().zip(&l.bary[i * dp1..]) {
                    gather::<B>(&mut acc2, bary * post, &values[o as usize * cp..]);
                }
            }
        }
        // Q = softmax(-U + messages), padding lanes 0.
        let row = b.as_ptr();
        for (bk, (a, a2)) in acc.iter_mut().zip(&acc2).enumerate() {
            *a = _mm256_add_ps(_mm256_add_ps(*a, *a2), _mm256_loadu_ps(row.add(8 * bk)));
        }
        let mut m = acc[0];
        for a in &acc[1..] {
            m = _mm256_max_ps(m, *a);
        }
        let m = hmax(m);
        let mut sum = _mm256_setzero_ps();
        for (bk, a) in acc.iter_mut().enumerate() {
            *a = exp8(_mm256_sub_ps(*a, m));
            if bk == B - 1 {
                *a = _mm256_and_ps(*a, mask);
            }
            sum = _mm256_add_ps(sum, *a);
        }
        let inv = _mm256_div_ps(_mm256_set1_ps(1.0), hsum(sum));
        for a in acc.iter_mut() {
            *a = _mm256_mul_ps(*a, inv);
        }
        let p = acc;

        if let Some(q) = &mut sink.q {
            for (bk, p) in p.iter().enumerate() {
                _mm256_storeu_ps(q[j * cp..j * cp + cp].as_mut_ptr().add(8 * bk), *p);
            }
        }
        if let (Some((into, from)), Some((corners, norm))) = (&mut sink.cells, corners) {
            for (at, wgt) in corners {
                scatter::<B>(&mut into[at - *from..], wgt * norm, &p);
            }
        }
        if let (Some(into), Some((l, _))) = (&mut sink.vertices, lattice) {
            let dp1 = l.dim() + 1;
            let pre = l.pre[i];
            let vertices = &l.offset[i * dp1..i * dp1 + dp1];
            for (&o, &bary) in vertices.iter().zip(&l.bary[i * dp1..]) {
                scatter::<B>(&mut into[o as usize * cp..], bary * pre, &p);
            }
        }
        if let Some((planes, labels)) = &mut sink.last {
            for (bk, p) in p.iter().enumerate() {
                _mm256_storeu_ps(spill.as_mut_ptr().add(8 * bk), *p);
            }
            let mut best = 0;
            for (l, &v) in spill[..classes].iter().enumerate() {
                planes[l][j] = v;
                if v > spill[best] {
                    best = l;
                }
            }
            labels[j] = best as u8;
        }
    }
}
