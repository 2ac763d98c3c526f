//! Mean-field inference for the fully connected CRF with Gaussian edge potentials
//! (Krähenbühl and Koltun, 2011), computed as Krähenbühl's densecrf computes it.
//!
//! Unaries are `-ln p` with `p` clipped at [`CLIP`] (densecrf's `unary_from_softmax`); two
//! Gaussian kernels with Potts compatibility and symmetric normalization: a smoothness
//! kernel on position and an appearance kernel on position and colour. Each iteration is
//! `Q = softmax(-U + Σ_k w_k · n_k ⊙ K_k (n_k ⊙ Q))`, with `n_k = (K_k 1)^-1/2`.
//!
//! Layout: per pixel, one row of class values padded to a multiple of eight lanes, so every
//! splat, blur and slice step is a short vector operation; both lattices are built once and
//! reused by every iteration; the slice of both kernels, the unary and the softmax are one
//! fused pass per pixel. Every pass runs on rayon's pool (the caller's, via `install`).

use rayon::prelude::*;

use std::cell::RefCell;

use super::lattice::{FilterBuffers, Lattice, LatticeBuffers, LatticeError, MAX_DIM};
use crate::frame::{RgbImage, ScoreKind};

/// Smallest probability a unary reads: `-ln` of it bounds the unary (as densecrf's
/// `unary_from_softmax` clips).
pub const CLIP: f32 = 1e-5;

/// Pixels per parallel task in the per-pixel passes.
const CHUNK: usize = 2048;

/// Value of padding lanes in the unary rows: never the maximum, exponentiates to zero.
const PAD: f32 = -1e30;

/// A Gaussian kernel on position (`smooth = { sxy, weight }` in a pipeline file).
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Smooth {
    /// Standard deviation in pixels.
    pub sxy: f32,
    /// Potts weight.
    pub weight: f32,
}

/// A Gaussian kernel on position and colour (`appearance = { sxy, srgb, weight }`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Appearance {
    /// Standard deviation in pixels.
    pub sxy: f32,
    /// Standard deviation in colour levels (0-255), the same for R, G and B.
    pub srgb: f32,
    /// Potts weight.
    pub weight: f32,
}

/// The CRF's parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrfParams {
    /// Mean-field iterations.
    pub iterations: usize,
    pub smooth: Smooth,
    pub appearance: Appearance,
}

impl Default for Smooth {
    /// DeepLab's usual setting.
    fn default() -> Self {
        Smooth {
            sxy: 3.0,
            weight: 3.0,
        }
    }
}

impl Default for Appearance {
    /// DeepLab's usual setting.
    fn default() -> Self {
        Appearance {
            sxy: 80.0,
            srgb: 13.0,
            weight: 10.0,
        }
    }
}

impl Default for CrfParams {
    /// DeepLab's usual settings.
    fn default() -> Self {
        CrfParams {
            iterations: 5,
            smooth: Smooth::default(),
            appearance: Appearance::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CrfError {
    #[error(transparent)]
    Lattice(#[from] LatticeError),
    /// The caller's `stop` said so (a time budget ran out).
    #[error("refinement stopped before it finished")]
    Stopped,
}

/// The CRF's result at the input's resolution.
pub struct Refined {
    pub classes: usize,
    /// `classes` planes of per-pixel probabilities.
    pub probabilities: Vec<f32>,
    /// The most probable class per pixel (ties to the lower class).
    pub labels: Vec<u8>,
}

/// What refinements reuse from frame to frame: at 1920x1080 with 19 classes close to a
/// gigabyte, which first-touched afresh for every frame would cost more than the
/// arithmetic. A stage keeps one per worker; [`mean_field`] uses one per thread.
#[derive(Default)]
pub struct Workspace {
    /// Scores resampled to the working grid (`refine_frame`).
    pub(crate) unaries: Vec<f32>,
    base: Vec<f32>,
    q: Vec<f32>,
    lattices: [LatticeBuffers; 2],
    filters: [FilterBuffers; 2],
}

thread_local! {
    static WORKSPACE: RefCell<Workspace> = RefCell::default();
}

/// Runs `f` with this thread's workspace.
pub(crate) fn with_workspace<R>(f: impl FnOnce(&mut Workspace) -> R) -> R {
    let mut ws = WORKSPACE.with(|w| w.take());
    let result = f(&mut ws);
    WORKSPACE.with(|w| *w.borrow_mut() = ws);
    result
}

/// Runs mean-field inference on `image` with class `scores` (`classes` planes of the
/// image's size, logits or probabilities). `stop` is asked between passes; when it answers
/// true the work is abandoned with [`CrfError::Stopped`].
pub fn mean_field(
    image: &RgbImage,
    scores: &[f32],
    classes: usize,
    kind: ScoreKind,
    params: &CrfParams,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Refined, CrfError> {
    with_workspace(|ws| mean_field_in(ws, image, scores, classes, kind, params, stop))
}

/// [`mean_field`] with the caller's workspace.
pub fn mean_field_in(
    ws: &mut Workspace,
    image: &RgbImage,
    scores: &[f32],
    classes: usize,
    kind: ScoreKind,
    params: &CrfParams,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Refined, CrfError> {
    let (w, h) = (image.width as usize, image.height as usize);
    let n = w * h;
    assert_eq!(
        scores.len(),
        classes * n,
        "scores are classes x height x width"
    );
    assert!((1..=256).contains(&classes), "1 to 256 classes");
    // Rows of eight-lane blocks: every per-pixel step is whole AVX2 vectors.
    let cp = classes.div_ceil(8) * 8;

    // -U per pixel row, and the initial Q = softmax(-U).
    // Every element is written below: no need to clear what an earlier frame left.
    let (base, q) = (&mut ws.base, &mut ws.q);
    base.resize(n * cp, 0.0);
    q.resize(n * cp, 0.0);
    base.par_chunks_mut(CHUNK * cp)
        .zip(q.par_chunks_mut(CHUNK * cp))
        .enumerate()
        .for_each(|(c, (base, q))| {
            simd::unaries(scores, n, c * CHUNK, base, q, cp, classes, kind);
        });
    if stop() {
        return Err(CrfError::Stopped);
    }

    let Smooth {
        sxy: s_xy,
        weight: s_w,
    } = params.smooth;
    let Appearance {
        sxy: a_xy,
        srgb,
        weight: a_w,
    } = params.appearance;
    let rgb = &image.data;
    let [b0, b1] = std::mem::take(&mut ws.lattices);
    let (smooth, appearance) = rayon::join(
        || {
            Lattice::new_in(
                n,
                2,
                |i, f: &mut [f32; MAX_DIM]| {
                    f[0] = (i % w) as f32 / s_xy;
                    f[1] = (i / w) as f32 / s_xy;
                },
                b0,
            )
        },
        || {
            Lattice::new_in(
                n,
                5,
                |i, f: &mut [f32; MAX_DIM]| {
                    f[0] = (i % w) as f32 / a_xy;
                    f[1] = (i / w) as f32 / a_xy;
                    for ch in 0..3 {
                        f[2 + ch] = rgb[i * 3 + ch] as f32 / srgb;
                    }
                },
                b1,
            )
        },
    );
    let mut lattices = [(smooth?, s_w), (appearance?, a_w)];
    let ones = vec![1f32; n];
    for (l, weight) in &mut lattices {
        let norm: Vec<f32> = l
            .filter_scalar(&ones)
            .into_par_iter()
            .map(|v| 1.0 / (v + 1e-20).sqrt())
            .collect();
        let factor = l.alpha() * *weight;
        l.rescale(&norm, &norm, factor);
    }
    drop(ones);
    if stop() {
        return Err(CrfError::Stopped);
    }

    let filtered = &mut ws.filters;
    for _ in 0..params.iterations {
        for ((l, _), buffers) in lattices.iter().zip(filtered.iter_mut()) {
            l.splat_blur(q, cp, buffers);
            if stop() {
                return Err(CrfError::Stopped);
            }
        }
        let kernels = [
            (&lattices[0].0, &filtered[0].values[..]),
            (&lattices[1].0, &filtered[1].values[..]),
        ];
        q.par_chunks_mut(CHUNK * cp)
            .zip(base.par_chunks(CHUNK * cp))
            .enumerate()
            .for_each(|(c, (q, base))| {
                simd::slice_softmax(&kernels, c * CHUNK, q, base, cp, classes);
            });
    }

    // Back to class planes, with the argmax.
    let mut probabilities = vec![0f32; classes * n];
    let mut labels = vec![0u8; n];
    let chunks = n.div_ceil(CHUNK);
    let mut parts: Vec<Vec<&mut [f32]>> = (0..chunks).map(|_| Vec::new()).collect();
    for plane in probabilities.chunks_mut(n) {
        for (k, part) in plane.chunks_mut(CHUNK).enumerate() {
            parts[k].push(part);
        }
    }
    parts
        .into_par_iter()
        .zip(labels.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(c, (mut planes, labels))| {
            for (k, label) in labels.iter_mut().enumerate() {
                let row = &q[(c * CHUNK + k) * cp..(c * CHUNK + k) * cp + classes];
                let mut best = 0;
                for (l, &v) in row.iter().enumerate() {
                    planes[l][k] = v;
                    if v > row[best] {
                        best = l;
                    }
                }
                *label = best as u8;
            }
            drop(planes.drain(..));
        });
    let [(l0, _), (l1, _)] = lattices;
    ws.lattices = [l0.into_buffers(), l1.into_buffers()];
    Ok(Refined {
        classes,
        probabilities,
        labels,
    })
}

/// Turns a row of scores (eight-lane blocks, padding lanes ignored) into
/// `-U = ln(max(p, CLIP))`, padding lanes to [`PAD`].
#[inline(always)]
fn unary_row<const F: bool>(row: &mut [f32], classes: usize, kind: ScoreKind) {
    let floor = CLIP.ln();
    match kind {
        ScoreKind::Logits => {
            row[classes..].fill(PAD);
            let m = row_max(row);
            let mut s8 = [0f32; 8];
            for block in row.chunks_exact(8) {
                for k in 0..8 {
                    s8[k] += fast_exp::<F>(block[k] - m);
                }
            }
            let lse = m + s8.iter().sum::<f32>().ln();
            for block in row.chunks_exact_mut(8) {
                for v in block {
                    let u = *v - lse;
                    *v = if u > floor { u } else { floor };
                }
            }
        }
        ScoreKind::Probabilities => {
            for block in row.chunks_exact_mut(8) {
                for v in block {
                    let p = if *v > CLIP { *v } else { CLIP };
                    let p = if p < 1.0 { p } else { 1.0 };
                    *v = fast_ln(p);
                }
            }
        }
    }
    row[classes..].fill(PAD);
}

/// Largest value of a row of eight-lane blocks (a lane-wise max, which vectorizes).
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut m8 = [f32::NEG_INFINITY; 8];
    for block in row.chunks_exact(8) {
        for k in 0..8 {
            m8[k] = if block[k] > m8[k] { block[k] } else { m8[k] };
        }
    }
    m8.iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// In-place softmax of a row of eight-lane blocks over its first `classes` lanes; padding
/// lanes (which hold [`PAD`] plus small terms, never the maximum) become 0.
#[inline(always)]
fn softmax_row<const F: bool>(row: &mut [f32], classes: usize) {
    let m = row_max(row);
    let mut s8 = [0f32; 8];
    for block in row.chunks_exact_mut(8) {
        for k in 0..8 {
            let e = fast_exp::<F>(block[k] - m);
            block[k] = e;
            s8[k] += e;
        }
    }
    let inv = 1.0 / s8.iter().sum::<f32>();
    for block in row.chunks_exact_mut(8) {
        for v in block {
            *v *= inv;
        }
    }
    // Exactly zero, never a denormal that would slow later passes.
    row[classes..].fill(0.0);
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

/// `acc += w * x` over rows of eight-lane blocks.
#[inline(always)]
pub(crate) fn axpy<const F: bool>(acc: &mut [f32], w: f32, x: &[f32]) {
    for (a, x) in acc.chunks_exact_mut(8).zip(x.chunks_exact(8)) {
        for k in 0..8 {
            a[k] = fma::<F>(w, x[k], a[k]);
        }
    }
}

/// `e^x` to about 2 ulp, branch-free so it vectorizes (Cephes' polynomial); inputs below
/// -87 give about 1e-38.
#[inline(always)]
pub(crate) fn fast_exp<const F: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -87.0 { -87.0 } else { x };
    let x = if x > 88.0 { 88.0 } else { x };
    let big = x * LOG2E + ROUND;
    let n = big - ROUND;
    // The integer n sits in the low mantissa bits of `big`.
    let ni = big.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = fma::<F>(1.987_569_1e-4, r, 1.398_199_9e-3);
    let p = fma::<F>(p, r, 8.333_452e-3);
    let p = fma::<F>(p, r, 4.166_579_6e-2);
    let p = fma::<F>(p, r, 1.666_666_5e-1);
    let p = fma::<F>(p, r, 0.5);
    let y = fma::<F>(p, r * r, r + 1.0);
    y * f32::from_bits((ni.wrapping_add(127) << 23) as u32)
}

/// `ln x` for positive normal `x`, branch-free (Cephes' polynomial).
#[inline(always)]
pub(crate) fn fast_ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 126;
    let m = f32::from_bits((bits & 0x807f_ffff) | 0x3f00_0000);
    let small = m < std::f32::consts::FRAC_1_SQRT_2;
    let e = (e - small as i32) as f32;
    let m = if small { m + m - 1.0 } else { m - 1.0 };
    let z = m * m;
    let p = ((((((((7.037_683_6e-2 * m - 1.151_461e-1) * m + 1.167_699_9e-1) * m
        - 1.242_014_1e-1)
        * m
        + 1.424_932_3e-1)
        * m
        - 1.666_805_8e-1)
        * m
        + 2.000_071_4e-1)
        * m
        - 2.499_999_4e-1)
        * m
        + 3.333_333e-1)
        * m
        * z;
    let y = p - 2.121_944_4e-4 * e - 0.5 * z;
    m + y + 0.693_359_4 * e
}

/// The fused per-pixel pass, compiled for the baseline and for AVX2 with FMA.
mod simd {
    use super::{axpy, softmax_row, unary_row, Lattice, ScoreKind};

    /// Gathers pixels `first..` from the class planes into rows of `-U`, and `Q` from it.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn unaries_body<const F: bool>(
        scores: &[f32],
        n: usize,
        first: usize,
        base: &mut [f32],
        q: &mut [f32],
        cp: usize,
        classes: usize,
        kind: ScoreKind,
    ) {
        // Row by row, each written whole; the planes are read as parallel sequential streams.
        let rows = base.len() / cp;
        let planes: Vec<&[f32]> = (0..classes)
            .map(|l| &scores[l * n + first..l * n + first + rows])
            .collect();
        let rows = base.chunks_exact_mut(cp).zip(q.chunks_exact_mut(cp));
        for (k, (b, q)) in rows.enumerate() {
            for (v, p) in b.iter_mut().zip(&planes) {
                *v = p[k];
            }
            unary_row::<F>(b, classes, kind);
            q.copy_from_slice(b);
            softmax_row::<F>(q, classes);
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn unaries_avx2(
        scores: &[f32],
        n: usize,
        first: usize,
        base: &mut [f32],
        q: &mut [f32],
        cp: usize,
        classes: usize,
        kind: ScoreKind,
    ) {
        unaries_body::<true>(scores, n, first, base, q, cp, classes, kind)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn unaries(
        scores: &[f32],
        n: usize,
        first: usize,
        base: &mut [f32],
        q: &mut [f32],
        cp: usize,
        classes: usize,
        kind: ScoreKind,
    ) {
        #[cfg(target_arch = "x86_64")]
        if super::super::lattice::simd::avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            return unsafe { unaries_avx2(scores, n, first, base, q, cp, classes, kind) };
        }
        unaries_body::<false>(scores, n, first, base, q, cp, classes, kind)
    }

    /// The fused pass, with FMA when `F`: the row accumulates in place (L1-resident), which
    /// vectorizes as whole eight-lane blocks; a fixed-size local array did not (LLVM
    /// unrolled it into scalar operations with spills).
    #[inline(always)]
    fn body_for<const F: bool>(
        kernels: &[(&Lattice, &[f32]); 2],
        first: usize,
        q: &mut [f32],
        base: &[f32],
        cp: usize,
        classes: usize,
    ) {
        for (k, (q, b)) in q
            .chunks_exact_mut(cp)
            .zip(base.chunks_exact(cp))
            .enumerate()
        {
            let i = first + k;
            q.copy_from_slice(b);
            for (l, values) in kernels {
                let dp1 = l.dim() + 1;
                let (off, bary) = (
                    &l.offset[i * dp1..i * dp1 + dp1],
                    &l.bary[i * dp1..i * dp1 + dp1],
                );
                let post = l.post[i];
                for (&o, &b) in off.iter().zip(bary) {
                    let row = &values[o as usize * cp..o as usize * cp + cp];
                    axpy::<F>(q, b * post, row);
                }
            }
            softmax_row::<F>(q, classes);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn body_avx2(
        kernels: &[(&Lattice, &[f32]); 2],
        first: usize,
        q: &mut [f32],
        base: &[f32],
        cp: usize,
        classes: usize,
    ) {
        body_for::<true>(kernels, first, q, base, cp, classes)
    }

    pub(super) fn slice_softmax(
        kernels: &[(&Lattice, &[f32]); 2],
        first: usize,
        q: &mut [f32],
        base: &[f32],
        cp: usize,
        classes: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        if super::super::lattice::simd::avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            return unsafe { body_avx2(kernels, first, q, base, cp, classes) };
        }
        body_for::<false>(kernels, first, q, base, cp, classes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_and_ln_are_accurate() {
        for i in -8000..=800 {
            let x = i as f32 / 100.0;
            let (a, b) = (fast_exp::<false>(x), x.exp());
            assert!((a - b).abs() <= 4e-7 * b, "exp({x}) = {a}, expected {b}");
        }
        for i in 1..=100_000 {
            let x = i as f32 / 100_000.0;
            let (a, b) = (fast_ln(x), x.ln());
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "ln({x}) = {a}, expected {b}"
            );
        }
    }

    #[test]
    fn unaries_match_unary_from_softmax() {
        let logits = [2.0f32, -1.0, 0.5, -30.0];
        let m = 2.0f32;
        let sum: f32 = logits.iter().map(|v| (v - m).exp()).sum();
        let mut row = logits.to_vec();
        row.extend([0.0; 4]);
        unary_row::<false>(&mut row, 4, ScoreKind::Logits);
        for (l, &v) in logits.iter().enumerate() {
            let p = ((v - m).exp() / sum).max(CLIP);
            assert!(
                (row[l] - p.ln()).abs() < 1e-5,
                "{l}: {} vs {}",
                row[l],
                p.ln()
            );
        }
        assert_eq!(row[4..], [PAD; 4]);
    }

    #[test]
    fn strong_unaries_survive_and_weak_ones_follow_the_image() {
        // Left half red, right half blue; class 0 confident on the left, class 1 on the
        // right, except a column near the edge whose unaries are undecided.
        let (w, h) = (40usize, 20usize);
        let mut rgb = vec![0u8; w * h * 3];
        let mut p = vec![0f32; 2 * w * h];
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let left = x < 20;
                rgb[i * 3..i * 3 + 3].copy_from_slice(if left {
                    &[200, 20, 20]
                } else {
                    &[20, 20, 200]
                });
                let p0 = if x == 17 {
                    0.45
                } else if left {
                    0.9
                } else {
                    0.1
                };
                p[i] = p0;
                p[w * h + i] = 1.0 - p0;
            }
        }
        let image = RgbImage::new(w as u32, h as u32, rgb);
        let r = mean_field(
            &image,
            &p,
            2,
            ScoreKind::Probabilities,
            &CrfParams::default(),
            &|| false,
        )
        .unwrap();
        for y in 0..h {
            for x in 0..w {
                assert_eq!(r.labels[y * w + x], (x >= 20) as u8, "({x}, {y})");
            }
        }
        let sum: f32 = (0..2).map(|c| r.probabilities[c * w * h]).sum();
        assert!((sum - 1.0).abs() < 1e-5);
    }

    #[test]
    fn stop_abandons_the_work() {
        let image = RgbImage::new(4, 4, vec![0; 48]);
        let p = vec![0.5f32; 32];
        let r = mean_field(
            &image,
            &p,
            2,
            ScoreKind::Probabilities,
            &CrfParams::default(),
            &|| true,
        );
        assert!(matches!(r, Err(CrfError::Stopped)));
    }
}
