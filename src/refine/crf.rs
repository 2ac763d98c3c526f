//! Mean-field inference for the fully connected CRF with Gaussian edge potentials
//! (Krähenbühl and Koltun, 2011), as Krähenbühl's densecrf computes it.
//!
//! Unaries are `-ln p` with `p` clipped at [`CLIP`] (densecrf's `unary_from_softmax`); two
//! Gaussian kernels with Potts compatibility and symmetric normalization: a smoothness
//! kernel on position and an appearance kernel on position and colour. Each iteration is
//! `Q = softmax(-U + Σ_k w_k · n_k ⊙ K_k (n_k ⊙ Q))`, with `n_k = (K_k 1)^-1/2`.
//!
//! The appearance kernel is filtered on a permutohedral lattice that follows densecrf's
//! arithmetic ([`super::lattice`]); the smoothness kernel on a regular coarse grid with the
//! same spread ([`super::grid`]), which needs no hashing. Layout: per pixel, one row of
//! class values padded to a multiple of eight lanes. Both kernels are built once per frame;
//! each iteration is then one pass over the pixels that slices both kernels, adds `-U`,
//! takes the softmax and splats the new `Q` into the next iteration's kernels, with the
//! row in AVX2 registers throughout where the CPU has them ([`super::avx2`]). Every pass
//! runs on rayon's pool (the caller's, via `install`).
//!
//! A pixel whose largest probability exceeds [`CrfParams::settle`] after an iteration is
//! settled: its `Q` goes into its `base` row, its splats into frozen buffers that every
//! later pass adds to its sums (the exact grid's cells and stored `Q` rows simply keep
//! them), and later passes skip it, reading its row only to output it after the last.

use rayon::prelude::*;

use std::cell::RefCell;

pub use super::band::CLIP;
use super::band::{Fill, FirstPass, Kernels, Sink, PAD};
use super::grid::{Grid, GridBuffers};
use super::lanes::sum_into;
use super::lattice::{
    refill, FilterBuffers, Lattice, LatticeBuffers, LatticeError, MAX_DIM, SCATTER_LIMIT,
};
use crate::frame::{RgbImage, ScoreKind};

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

/// [`CrfParams::settle`] by default: on densecrf.py's test frames no pixel that
/// confident after an iteration has another label at the end.
pub const DEFAULT_SETTLE: f32 = 0.999;

/// The CRF's parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrfParams {
    /// Mean-field iterations.
    pub iterations: usize,
    pub smooth: Smooth,
    pub appearance: Appearance,
    /// A pixel whose largest probability exceeds this after an iteration (from the first
    /// to the one before the last) is settled: later iterations keep its `Q` and its
    /// splats instead of computing them again. 1 settles none: exact mean field.
    pub settle: f32,
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
            settle: DEFAULT_SETTLE,
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
    /// `classes` planes of per-pixel probabilities (empty where they were not asked for).
    pub probabilities: Vec<f32>,
    /// The most probable class per pixel (ties to the lower class).
    pub labels: Vec<u8>,
}

/// What refinements reuse from frame to frame: at 1920x1080 with 19 classes a few hundred
/// megabytes, which first-touched afresh for every frame would cost more than the
/// arithmetic. A stage keeps one per worker; [`mean_field`] uses one per thread.
#[derive(Default)]
pub struct Workspace {
    /// `-U`, one row of `cp` lanes per pixel.
    base: Vec<f32>,
    /// `Q` rows, kept only when the appearance lattice is splatted in a pass of its own.
    q: Vec<f32>,
    lattice: LatticeBuffers,
    filter: FilterBuffers,
    /// The smoothness kernel's cells.
    cells: GridBuffers,
    /// Per pixel, 1 once settled.
    settled: Vec<u8>,
    /// Per band, the lattice splats of its settled pixels.
    frozen: Vec<Vec<f32>>,
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
    with_workspace(|ws| mean_field_in(ws, image, scores, classes, kind, params, true, stop))
}

/// [`mean_field`] with the caller's workspace, the probability planes made only when
/// `probabilities` (else [`Refined::probabilities`] is empty and only the labels are
/// written).
///
/// Each pass reads `-U` and the two kernels' blurred values and, pixel by pixel, slices
/// the messages, takes the softmax and splats the new `Q` straight into the next pass's
/// kernels (per band of rows, so threads never share a row): `Q` itself is never stored,
/// and a pass streams through memory once.
#[allow(clippy::too_many_arguments)]
pub fn mean_field_in(
    ws: &mut Workspace,
    image: &RgbImage,
    scores: &[f32],
    classes: usize,
    kind: ScoreKind,
    params: &CrfParams,
    probabilities: bool,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Refined, CrfError> {
    let (w, h) = (image.width as usize, image.height as usize);
    let n = w * h;
    assert_eq!(
        scores.len(),
        classes * n,
        "scores are classes x height x width"
    );
    let fill = |y: usize, xs: std::ops::Range<usize>, rows: &mut [f32], cp: usize| {
        transpose_into(scores, classes, y * w + xs.start, xs.len(), rows, cp);
    };
    mean_field_with(ws, image, &fill, classes, kind, params, probabilities, stop)
}

/// [`mean_field_in`] with the class scores written by `fill`, row by row, where pass 0
/// needs them: scores at another resolution are resampled straight into the rows the
/// passes read, never held as planes of the working size. The probability planes are made
/// only when `keep`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn mean_field_with(
    ws: &mut Workspace,
    image: &RgbImage,
    fill: &Fill,
    classes: usize,
    kind: ScoreKind,
    params: &CrfParams,
    keep: bool,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Refined, CrfError> {
    let (w, h) = (image.width as usize, image.height as usize);
    let n = w * h;
    assert!((1..=256).contains(&classes), "1 to 256 classes");
    // Rows of eight-lane blocks: every per-pixel step is whole AVX2 vectors.
    let cp = classes.div_ceil(8) * 8;

    // The smoothness kernel on a coarse grid, the appearance kernel on a permutohedral
    // lattice; a kernel of weight 0 is left out.
    let Smooth {
        sxy: s_xy,
        weight: s_w,
    } = params.smooth;
    let Appearance {
        sxy: a_xy,
        srgb,
        weight: a_w,
    } = params.appearance;
    let grid = (s_w != 0.0).then(|| Grid::new(w, h, s_xy, s_w));
    let rgb = &image.data;
    let buffers = std::mem::take(&mut ws.lattice);
    let lattice = if a_w != 0.0 {
        // Features by table: the same quotients as dividing per pixel, without the divisions.
        let fx: Vec<f32> = (0..w).map(|x| x as f32 / a_xy).collect();
        let fy: Vec<f32> = (0..h).map(|y| y as f32 / a_xy).collect();
        let fc: Vec<f32> = (0..256).map(|v| v as f32 / srgb).collect();
        let mut l = Lattice::new_in(
            n,
            5,
            |i, f: &mut [f32; MAX_DIM]| {
                f[0] = fx[i % w];
                f[1] = fy[i / w];
                for ch in 0..3 {
                    f[2 + ch] = fc[rgb[i * 3 + ch] as usize];
                }
            },
            buffers,
        )?;
        l.normalize(a_w);
        Ok(l)
    } else {
        Err(buffers)
    };
    if stop() {
        return Err(CrfError::Stopped);
    }

    // Bands of rows, one task each. The lattice's vertex rows get a copy per band when
    // they are few enough; else Q is stored and splatted in a pass of its own.
    let bands = rayon::current_num_threads().clamp(1, h.max(1));
    let band_rows = h.div_ceil(bands).max(1);
    let bands = h.div_ceil(band_rows).max(1);
    let fused = match &lattice {
        Ok(l) => bands * (l.vertices() + 1) * cp <= SCATTER_LIMIT,
        Err(_) => true,
    };
    let Workspace {
        base,
        q,
        filter,
        cells,
        settled,
        frozen,
        ..
    } = ws;
    base.resize(n * cp, 0.0);
    if !fused {
        q.resize(n * cp, 0.0);
    }
    // A frame's worth of fresh memory (158 MB at 1080p with 19 classes), so not made when
    // nothing reads it.
    let mut probabilities = if keep {
        vec![0f32; classes * n]
    } else {
        Vec::new()
    };
    let mut labels = vec![0u8; n];
    let iterations = params.iterations;
    // Pixels settle in passes 1 to iterations - 1 (see `CrfParams::settle`).
    let settling = params.settle < 1.0 && iterations >= 2;
    if settling {
        settled.clear();
        settled.resize(n, 0);
    }
    // Pass 0 makes -U and Q = softmax(-U); pass k > 0 is mean-field iteration k.
    for pass in 0..=iterations {
        let last = pass == iterations;
        let splat = !last;
        let settles = settling && pass >= 1 && !last;
        // The frozen splats start at zero in the first pass that settles pixels.
        let freeze = settling && pass == 1;
        // Where this pass splats: the grid's cells and the lattice's vertex rows.
        if splat {
            if let Some(g) = &grid {
                cells.reset(g, (bands, band_rows, cp), freeze);
            }
            if let (Ok(l), true) = (&lattice, fused) {
                let len = (l.vertices() + 1) * cp;
                let mut buffers = vec![&mut filter.partials];
                if freeze {
                    buffers.push(&mut *frozen);
                }
                for v in buffers {
                    v.resize_with(bands, Vec::new);
                    v.par_iter_mut().for_each(|v| refill(v, len));
                }
            }
        }
        let (blurred, cell_into, frozen_cells) = match &grid {
            Some(g) => cells.split(g, band_rows, cp, settles),
            None => (&[][..], Vec::new(), Vec::new()),
        };
        let kernels = Kernels {
            w,
            cp,
            classes,
            grid: grid.as_ref().map(|g| (g, blurred)),
            lattice: lattice.as_ref().ok().map(|l| (l, &filter.values[..])),
        };
        // Per band: its rows of -U (written by pass 0) and of Q (when stored), its splat
        // copies, and after the last pass its part of each class plane and of the labels.
        let mut planes: Vec<Vec<&mut [f32]>> = (0..bands).map(|_| Vec::new()).collect();
        if last {
            for plane in probabilities.chunks_mut(n) {
                for (b, part) in plane.chunks_mut(band_rows * w).enumerate() {
                    planes[b].push(part);
                }
            }
        }
        let mut label_parts: Vec<Option<&mut [u8]>> = (0..bands).map(|_| None).collect();
        if last {
            for (b, part) in labels.chunks_mut(band_rows * w).enumerate() {
                label_parts[b] = Some(part);
            }
        }
        let mut q_parts: Vec<Option<&mut [f32]>> = (0..bands).map(|_| None).collect();
        if !fused && !last {
            for (b, part) in q.chunks_mut(band_rows * w * cp).enumerate() {
                q_parts[b] = Some(part);
            }
        }
        let mut cell_into = cell_into.into_iter().filter(|_| splat);
        let cell_into: Vec<Option<(&mut [f32], usize)>> =
            (0..bands).map(|_| cell_into.next()).collect();
        let mut vertex_into: Vec<Option<&mut [f32]>> = (0..bands).map(|_| None).collect();
        if splat && fused && lattice.is_ok() {
            for (b, v) in filter.partials.iter_mut().enumerate() {
                vertex_into[b] = Some(&mut v[..]);
            }
        }
        // Per band: its settled flags, and where its newly settled pixels splat instead.
        let mut settled_parts: Vec<Option<&mut [u8]>> = (0..bands).map(|_| None).collect();
        if settling && pass >= 1 {
            for (b, part) in settled.chunks_mut(band_rows * w).enumerate() {
                settled_parts[b] = Some(part);
            }
        }
        let mut frozen_cells = frozen_cells.into_iter();
        let mut frozen_vertices = frozen
            .iter_mut()
            .filter(|_| settles && fused && lattice.is_ok());
        type Frozen<'a> = (Option<&'a mut [f32]>, Option<&'a mut [f32]>);
        let frozen_parts: Vec<Frozen> = (0..bands)
            .map(|_| {
                (
                    frozen_cells.next(),
                    frozen_vertices.next().map(|v| &mut v[..]),
                )
            })
            .collect();
        let scores_in: FirstPass = (pass == 0).then_some((fill, kind));
        let settle = settles.then_some(params.settle);
        base.par_chunks_mut(band_rows * w * cp)
            .zip(planes)
            .zip(label_parts)
            .zip(q_parts)
            .zip(cell_into)
            .zip(vertex_into)
            .zip(settled_parts)
            .zip(frozen_parts)
            .enumerate()
            .for_each(
                |(b, (((((((base, planes), labels), q), cells), vertices), settled), frozen))| {
                    let sink = Sink {
                        q,
                        cells,
                        vertices,
                        last: labels.map(|l| (planes, l)),
                        settled,
                        skip: settling && pass >= 2,
                        settle,
                        frozen_cells: frozen.0,
                        frozen_vertices: frozen.1,
                    };
                    simd::band(&kernels, b * band_rows, scores_in, base, sink);
                },
            );
        if last {
            break;
        }
        // The splats, summed over bands and blurred, are what the next pass slices.
        if let Some(g) = &grid {
            cells.blur(g, band_rows, cp, settles);
        }
        if let Ok(l) = &lattice {
            if fused {
                let frozen = if settles { &frozen[..] } else { &[] };
                let parts: Vec<(&[f32], usize)> = (filter.partials.iter().chain(frozen))
                    .map(|p| (&p[..], 0))
                    .collect();
                filter.values.resize((l.vertices() + 1) * cp, 0.0);
                sum_into(&mut filter.values, &parts);
                l.blur(cp, filter);
            } else {
                l.splat_blur(q, cp, filter);
            }
        }
        if stop() {
            return Err(CrfError::Stopped);
        }
    }

    ws.lattice = match lattice {
        Ok(l) => l.into_buffers(),
        Err(b) => b,
    };
    Ok(Refined {
        classes,
        probabilities,
        labels,
    })
}

/// Pixels `at..at + len` of the `classes` planes in `scores` into `rows`, one row of `cp`
/// lanes per pixel, class `c` in lane `c`: eight pixels by eight classes at a time as an
/// AVX2 transpose where the CPU has it (padding lanes of those blocks become 0), one value
/// at a time elsewhere.
fn transpose_into(
    scores: &[f32],
    classes: usize,
    at: usize,
    len: usize,
    rows: &mut [f32],
    cp: usize,
) {
    let n = scores.len() / classes;
    assert!(at + len <= n && rows.len() >= len * cp && classes <= cp);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if super::lanes::avx2() && cp.is_multiple_of(8) {
        // SAFETY: the CPU has AVX2; every block's loads lie in the planes (pixels below
        // `at + len`, classes below `classes`) and its stores in `rows` (lanes below `cp`).
        done = unsafe { transpose8(scores, n, at, len, rows, cp, classes) };
    }
    for (c, plane) in scores.chunks_exact(n.max(1)).enumerate() {
        let src = &plane[at + done..at + len];
        for (row, &v) in rows[done * cp..].chunks_exact_mut(cp).zip(src) {
            row[c] = v;
        }
    }
}

/// The whole blocks of eight pixels of [`transpose_into`]; returns the pixels done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose8(
    scores: &[f32],
    n: usize,
    at: usize,
    len: usize,
    rows: &mut [f32],
    cp: usize,
    classes: usize,
) -> usize {
    use std::arch::x86_64::*;
    let whole = len / 8 * 8;
    let (src, out) = (scores.as_ptr(), rows.as_mut_ptr());
    for p in (0..whole).step_by(8) {
        for c0 in (0..classes).step_by(8) {
            let v: [__m256; 8] = std::array::from_fn(|k| match c0 + k < classes {
                true => _mm256_loadu_ps(src.add((c0 + k) * n + at + p)),
                false => _mm256_setzero_ps(),
            });
            // v[k] holds class c0 + k for pixels p..p + 8; t[j], pixel p + j's classes.
            let a0 = _mm256_unpacklo_ps(v[0], v[1]);
            let a1 = _mm256_unpackhi_ps(v[0], v[1]);
            let a2 = _mm256_unpacklo_ps(v[2], v[3]);
            let a3 = _mm256_unpackhi_ps(v[2], v[3]);
            let a4 = _mm256_unpacklo_ps(v[4], v[5]);
            let a5 = _mm256_unpackhi_ps(v[4], v[5]);
            let a6 = _mm256_unpacklo_ps(v[6], v[7]);
            let a7 = _mm256_unpackhi_ps(v[6], v[7]);
            let b0 = _mm256_shuffle_ps::<0b01_00_01_00>(a0, a2);
            let b1 = _mm256_shuffle_ps::<0b11_10_11_10>(a0, a2);
            let b2 = _mm256_shuffle_ps::<0b01_00_01_00>(a1, a3);
            let b3 = _mm256_shuffle_ps::<0b11_10_11_10>(a1, a3);
            let b4 = _mm256_shuffle_ps::<0b01_00_01_00>(a4, a6);
            let b5 = _mm256_shuffle_ps::<0b11_10_11_10>(a4, a6);
            let b6 = _mm256_shuffle_ps::<0b01_00_01_00>(a5, a7);
            let b7 = _mm256_shuffle_ps::<0b11_10_11_10>(a5, a7);
            let t = [
                _mm256_permute2f128_ps::<0x20>(b0, b4),
                _mm256_permute2f128_ps::<0x20>(b1, b5),
                _mm256_permute2f128_ps::<0x20>(b2, b6),
                _mm256_permute2f128_ps::<0x20>(b3, b7),
                _mm256_permute2f128_ps::<0x31>(b0, b4),
                _mm256_permute2f128_ps::<0x31>(b1, b5),
                _mm256_permute2f128_ps::<0x31>(b2, b6),
                _mm256_permute2f128_ps::<0x31>(b3, b7),
            ];
            for (j, t) in t.iter().enumerate() {
                _mm256_storeu_ps(out.add((p + j) * cp + c0), *t);
            }
        }
    }
    whole
}

/// Tests compare the AVX2 pass with the portable one on the same machine.
#[cfg(test)]
fn forced_portable() -> bool {
    tests::portable()
}

#[cfg(not(test))]
fn forced_portable() -> bool {
    false
}

/// Turns a row of scores (eight-lane blocks, padding lanes ignored) into
/// `-U = ln(max(p, CLIP))`, padding lanes to [`PAD`].
#[inline(always)]
pub(super) fn unary_row<const F: bool>(row: &mut [f32], classes: usize, kind: ScoreKind) {
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
    if super::lanes::softmax_row::<F>(row, classes) {
        return;
    }
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

pub(crate) use super::lanes::{axpy, fma};

/// `e^x` to about 2 ulp, branch-free so it vectorizes (Cephes' polynomial). Inputs below
/// -80 give about 2e-35: results stay normal floats even after a softmax divides them by up
/// to 256, because every operation that makes a denormal costs a microcode assist of some
/// hundred cycles (padding lanes hit this once per pixel row and pass).
#[inline(always)]
pub(crate) fn fast_exp<const F: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -80.0 { -80.0 } else { x };
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
    use super::super::band::fill_row;
    use super::{axpy, softmax_row, unary_row, FirstPass, Kernels, Sink};

    /// One band of a pass, with FMA when `F`: for every pixel of rows `y0..` (as many as
    /// `base` holds), either `-U` from the class planes in `scores` (pass 0) or `-U` plus
    /// the sliced messages, then the softmax, then the sink. Each pixel's row accumulates
    /// in place (L1-resident) as whole eight-lane blocks.
    #[inline(always)]
    fn band_body<const F: bool>(
        k: &Kernels,
        y0: usize,
        scores: FirstPass,
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
        let mut cur = vec![0f32; cp];
        let pixels = base
            .chunks_exact_mut(w * cp)
            .enumerate()
            .flat_map(|(r, row)| {
                if let Some((fill, _)) = scores {
                    fill_row(fill, y0 + r, row, cp);
                }
                row.chunks_exact_mut(cp)
            })
            .enumerate();
        for (j, b) in pixels {
            let (x, y) = (j % w, y0 + j / w);
            let i = y * w + x;
            if sink.is_settled(j) {
                // Its final Q is its row; only the last pass reads it.
                if let Some((planes, labels)) = &mut sink.last {
                    output(planes, labels, j, b, classes);
                }
                continue;
            }
            match scores {
                Some((_, kind)) => {
                    unary_row::<F>(b, classes, kind);
                    cur.copy_from_slice(b);
                }
                None => {
                    cur.copy_from_slice(b);
                    if let Some((g, cells)) = grid {
                        let c = g.corners(x, y, cp);
                        let post = g.weight() * c.norm;
                        for &(at, wgt) in c.cells() {
                            axpy::<F>(&mut cur, wgt * post, &cells[at..at + cp]);
                        }
                    }
                    if let Some((l, values)) = lattice {
                        let dp1 = l.dim() + 1;
                        let post = l.post[i];
                        let vertices = &l.offset[i * dp1..i * dp1 + dp1];
                        for (&o, &bary) in vertices.iter().zip(&l.bary[i * dp1..]) {
                            let row = &values[o as usize * cp..o as usize * cp + cp];
                            axpy::<F>(&mut cur, bary * post, row);
                        }
                    }
                }
            }
            softmax_row::<F>(&mut cur, classes);
            // A pixel that settles splats into the frozen buffers instead.
            let settles = sink.settle.is_some_and(|t| super::row_max(&cur) > t);
            if let Some(q) = &mut sink.q {
                q[j * cp..j * cp + cp].copy_from_slice(&cur);
            }
            let from = sink.cells.as_ref().map(|c| c.1);
            if let (true, Some(into), Some((g, _)), Some(from)) =
                (settles, &mut sink.frozen_cells, grid, from)
            {
                let c = g.corners(x, y, cp);
                for &(at, wgt) in c.cells() {
                    axpy::<F>(&mut into[at - from..at - from + cp], wgt * c.norm, &cur);
                }
            } else if let (Some((into, from)), Some((g, _))) = (&mut sink.cells, grid) {
                let c = g.corners(x, y, cp);
                match c.single() {
                    Some(at) => {
                        let row = &mut into[at - *from..at - *from + cp];
                        for (o, &v) in row.iter_mut().zip(&cur) {
                            *o = c.norm * v;
                        }
                    }
                    None => {
                        for &(at, wgt) in c.cells() {
                            let row = &mut into[at - *from..at - *from + cp];
                            axpy::<F>(row, wgt * c.norm, &cur);
                        }
                    }
                }
            }
            let vertices_into = match &mut sink.frozen_vertices {
                Some(frozen) if settles => Some(frozen),
                _ => sink.vertices.as_mut(),
            };
            if let (Some(into), Some(l)) = (vertices_into, lattice.map(|(l, _)| l)) {
                let dp1 = l.dim() + 1;
                let pre = l.pre[i];
                let vertices = &l.offset[i * dp1..i * dp1 + dp1];
                for (&o, &bary) in vertices.iter().zip(&l.bary[i * dp1..]) {
                    let row = &mut into[o as usize * cp..o as usize * cp + cp];
                    axpy::<F>(row, bary * pre, &cur);
                }
            }
            if let Some((planes, labels)) = &mut sink.last {
                output(planes, labels, j, &cur, classes);
            }
            if settles {
                // Final from now on: its row keeps Q.
                if let Some(s) = &mut sink.settled {
                    s[j] = 1;
                }
                b.copy_from_slice(&cur);
            }
        }
    }

    /// A pixel's final `Q` into the class planes (those asked for) and its label.
    #[inline(always)]
    fn output(planes: &mut [&mut [f32]], labels: &mut [u8], j: usize, q: &[f32], classes: usize) {
        let mut best = 0;
        for (l, &v) in q[..classes].iter().enumerate() {
            if let Some(plane) = planes.get_mut(l) {
                plane[j] = v;
            }
            if v > q[best] {
                best = l;
            }
        }
        labels[j] = best as u8;
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn band_avx2(k: &Kernels, y0: usize, scores: FirstPass, base: &mut [f32], sink: Sink) {
        band_body::<true>(k, y0, scores, base, sink)
    }

    pub(super) fn band(k: &Kernels, y0: usize, scores: FirstPass, base: &mut [f32], sink: Sink) {
        #[cfg(target_arch = "x86_64")]
        if super::super::lanes::avx2() && !super::forced_portable() {
            return crate::refine::lanes::flush_denormals(|| {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                unsafe {
                    match k.cp / 8 {
                        1 => crate::refine::avx2::band::<1>(k, y0, scores, base, sink),
                        2 => crate::refine::avx2::band::<2>(k, y0, scores, base, sink),
                        3 => crate::refine::avx2::band::<3>(k, y0, scores, base, sink),
                        4 => crate::refine::avx2::band::<4>(k, y0, scores, base, sink),
                        _ => band_avx2(k, y0, scores, base, sink),
                    }
                }
            });
        }
        band_body::<false>(k, y0, scores, base, sink)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    thread_local! {
        static PORTABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Whether this thread runs the portable pass even where AVX2 is there.
    pub(super) fn portable() -> bool {
        PORTABLE.with(|p| p.get())
    }

    /// Makes this thread run the portable pass (or not) from now on.
    pub(in crate::refine) fn set_portable(portable: bool) {
        PORTABLE.with(|p| p.set(portable));
    }

    /// Class planes go into pixel rows value for value: whole blocks of eight pixels
    /// (transposed with AVX2 where the CPU has it) and the pixels after them alike.
    #[test]
    fn planes_transpose_into_rows() {
        let (n, classes, cp) = (53usize, 19usize, 24usize);
        let scores: Vec<f32> = (0..classes * n).map(|k| k as f32 * 0.5 - 3.0).collect();
        for (at, len) in [(0, 53), (5, 17), (8, 8), (13, 7), (0, 0)] {
            let mut rows = vec![f32::NAN; len * cp];
            transpose_into(&scores, classes, at, len, &mut rows, cp);
            for p in 0..len {
                for c in 0..classes {
                    assert_eq!(
                        rows[p * cp + c],
                        scores[c * n + at + p],
                        "pixel {p} class {c}"
                    );
                }
            }
        }
    }

    /// The AVX2 pass (rows in registers, no maximum subtracted) and the portable pass
    /// (rows in memory) give the same refinement, for one, three and four blocks of lanes,
    /// and for five (rows in memory with AVX2 against the baseline).
    #[test]
    fn the_avx2_and_portable_passes_agree() {
        let (w, h) = (61usize, 47usize);
        let n = w * h;
        let rgb: Vec<u8> = (0..n * 3)
            .map(|k| {
                let (i, ch) = (k / 3, k % 3);
                let (x, y) = (i % w, i / w);
                (((x / 9 + y / 7 + ch) % 3) * 100 + (x * 7 + y * 13) % 23) as u8
            })
            .collect();
        let image = RgbImage::new(w as u32, h as u32, rgb);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        for (classes, kind) in [
            (5, ScoreKind::Probabilities),
            (19, ScoreKind::Logits),
            (30, ScoreKind::Probabilities),
            (40, ScoreKind::Logits),
        ] {
            let mut scores = vec![0f32; classes * n];
            for i in 0..n {
                let (x, y) = (i % w, i / w);
                let mut row: Vec<f32> = (0..classes)
                    .map(|c| ((x * (c + 3) + y * (c + 1) * 5) % 17) as f32 / 4.0)
                    .collect();
                if kind == ScoreKind::Probabilities {
                    let sum: f32 = row.iter().map(|v| v.exp()).sum();
                    row.iter_mut().for_each(|v| *v = v.exp() / sum);
                }
                for (c, v) in row.into_iter().enumerate() {
                    scores[c * n + i] = v;
                }
            }
            // DeepLab's kernels, and those of a CRF at 1/4 scale (a smoothness kernel
            // narrower than a pixel: one grid cell per pixel).
            let mut quarter = CrfParams::default();
            quarter.smooth.sxy /= 4.0;
            quarter.appearance.sxy /= 4.0;
            for params in [CrfParams::default(), quarter] {
                let run = |portable: bool| {
                    one.install(|| {
                        PORTABLE.with(|p| p.set(portable));
                        let r = mean_field(&image, &scores, classes, kind, &params, &|| false);
                        PORTABLE.with(|p| p.set(false));
                        r.unwrap()
                    })
                };
                let (fast, portable) = (run(false), run(true));
                let worst = fast
                    .probabilities
                    .iter()
                    .zip(&portable.probabilities)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-4,
                    "{classes} classes: probabilities differ by {worst}"
                );
                let same = fast
                    .labels
                    .iter()
                    .zip(&portable.labels)
                    .filter(|(a, b)| a == b)
                    .count();
                assert!(
                    same * 1000 >= n * 999,
                    "{classes} classes: {same} of {n} agree"
                );
            }
        }
    }

    /// Settling skips most pixels in the later iterations of a frame with clear regions,
    /// and leaves the refinement as exact mean field gives it; settle = 1 settles none.
    #[test]
    fn settled_pixels_keep_the_exact_refinement() {
        let (w, h) = (64usize, 48usize);
        let n = w * h;
        // Four colour regions, each with a noisy but mostly right class.
        let region = |i: usize| (i % w) / 32 + 2 * ((i / w) / 24);
        let rgb: Vec<u8> = (0..n * 3)
            .map(|k| (region(k / 3) * 60 + k % 3 * 10) as u8)
            .collect();
        let image = RgbImage::new(w as u32, h as u32, rgb);
        let classes = 4;
        let mut scores = vec![0f32; classes * n];
        for i in 0..n {
            for c in 0..classes {
                let noise = ((i * 7919 + c * 104_729) % 97) as f32 / 97.0;
                scores[c * n + i] = if c == region(i) { 2.0 } else { 0.0 } + 2.5 * noise;
            }
        }
        let run = |settle: f32| {
            let params = CrfParams {
                settle,
                ..CrfParams::default()
            };
            let mut ws = Workspace::default();
            let r = mean_field_in(
                &mut ws,
                &image,
                &scores,
                classes,
                ScoreKind::Logits,
                &params,
                true,
                &|| false,
            )
            .unwrap();
            let settled = ws.settled.iter().filter(|&&v| v != 0).count();
            (r, settled)
        };
        let ((settled, count), (exact, none)) = (run(DEFAULT_SETTLE), run(1.0));
        assert!(count * 2 > n, "{count} of {n} pixels settled");
        assert_eq!(none, 0);
        assert_eq!(settled.labels, exact.labels);
        let worst = (settled.probabilities.iter().zip(&exact.probabilities))
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 2e-3, "probabilities differ by {worst}");
    }

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
