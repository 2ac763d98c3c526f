//! refine: a fully connected CRF over the model's class scores, so labels follow the
//! image's edges.
//!
//! `[[transforms]] type = "refine", iterations = 5, scale = 2, workers = 2, budget_ms = 80`
//!
//! The model's scores are mapped to the working resolution (the frame, or a half or quarter
//! of it), refined by mean-field inference ([`crf`]: the appearance kernel on the
//! permutohedral lattice of [`lattice`], the smoothness kernel on a coarse grid), and the
//! refined probabilities up-sampled to the frame for the argmax. The frame leaves with the
//! refined labels and the refined probabilities in `scores`. With `masks = true`, each
//! instance's mask is refined too, with two labels inside its box ([`refine_mask`]). With
//! a time budget, a frame whose refinement runs out of time leaves unrefined and is
//! counted.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod band;
mod config;
pub mod crf;
mod grid;
mod lanes;
pub mod lattice;
mod mask;

pub use config::RefineConfig;
use crf::mean_field_with;
pub use crf::{
    mean_field, mean_field_in, Appearance, CrfError, CrfParams, Refined, Smooth, Workspace,
};
pub use mask::{refine_mask, refine_mask_with};

use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::frame::argmax::{axis_scale, taps, Tap};
use crate::frame::{
    argmax_scores, ClassScores, Frame, Geometry, Instance, LabelMap, RgbImage, ScoreKind,
};
use crate::runtime::{BoxError, Output, Stage};

#[derive(Debug, thiserror::Error)]
pub enum RefineError {
    #[error(
        "frame {seq} has no class scores (refine needs an infer transform before it, \
         untiled, with a logits or probabilities model)"
    )]
    NoScores { seq: u64 },
    #[error("frame {seq}: {source}")]
    Crf { seq: u64, source: CrfError },
    #[error("cannot start refine's thread pool: {0}")]
    Pool(String),
}

/// Everything a refine stage is configured with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefineOptions {
    pub params: CrfParams,
    /// The CRF runs at 1/scale of the frame's resolution.
    pub scale: u32,
    /// Threads for one frame's CRF; 0 uses rayon's global pool.
    pub threads: usize,
    /// Most time spent on one frame before it passes through unrefined.
    pub budget: Option<Duration>,
    /// Also refine each instance's mask in its box.
    pub masks: bool,
    /// Hand the refined probabilities on as the frame's scores (a later stage reads them);
    /// else the frame leaves without scores, and at full scale none are made.
    pub keep_scores: bool,
}

/// Refines one frame: `scores` (mapped onto `image` by their geometry) to refined labels at
/// the frame's size and refined probabilities at the working resolution. Kernel sizes are
/// given in frame pixels and shrink with `scale`. `stop` is asked between passes.
pub fn refine_frame(
    image: &RgbImage,
    scores: &ClassScores,
    params: &CrfParams,
    scale: u32,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<(LabelMap, ClassScores), CrfError> {
    crf::with_workspace(|ws| refine_frame_in(ws, image, scores, params, scale, stop))
}

/// [`refine_frame`] with the caller's workspace.
pub fn refine_frame_in(
    ws: &mut Workspace,
    image: &RgbImage,
    scores: &ClassScores,
    params: &CrfParams,
    scale: u32,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<(LabelMap, ClassScores), CrfError> {
    let (labels, scores) = refine_labels_in(ws, image, scores, params, scale, true, stop)?;
    Ok((labels, scores.expect("probabilities kept")))
}

/// [`refine_frame_in`], with the refined probabilities returned only when `keep`: at full
/// scale they are then never made (at reduced scale the labels are up-sampled from them).
/// The refine stage keeps them only where a later stage reads the frame's scores.
pub fn refine_labels_in(
    ws: &mut Workspace,
    image: &RgbImage,
    scores: &ClassScores,
    params: &CrfParams,
    scale: u32,
    keep: bool,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<(LabelMap, Option<ClassScores>), CrfError> {
    let scale = scale.max(1);
    let (fw, fh) = (image.width, image.height);
    let (ww, wh) = (fw.div_ceil(scale), fh.div_ceil(scale));
    let small;
    let work = if scale == 1 {
        image
    } else {
        small = downsample(image, scale, ww, wh);
        &small
    };
    let mut p = *params;
    p.smooth.sxy /= scale as f32;
    p.appearance.sxy /= scale as f32;
    let (classes, kind) = (scores.classes, scores.kind);
    let planes = keep || scale > 1;
    let refined = if identity(scores, fw, fh, ww, wh) {
        mean_field_in(ws, work, &scores.data, classes, kind, &p, planes, stop)?
    } else {
        let r = Resampler::new(scores, fw, fh, ww, wh);
        mean_field_with(
            ws,
            work,
            &|y, xs, rows, cp| r.fill(y, xs, rows, cp),
            classes,
            kind,
            &p,
            planes,
            stop,
        )?
    };
    let geometry = Geometry {
        frame_width: fw,
        frame_height: fh,
        model_width: ww,
        model_height: wh,
        stretched: true,
    };
    let labels = if scale == 1 {
        LabelMap::new(fw, fh, refined.labels)
    } else {
        argmax_scores(
            &refined.probabilities,
            refined.classes,
            wh as usize,
            ww as usize,
            &geometry,
        )
    };
    let scores = keep.then_some(ClassScores {
        kind: ScoreKind::Probabilities,
        classes: refined.classes,
        width: ww,
        height: wh,
        data: refined.probabilities,
        geometry,
        upsampling: None,
    });
    Ok((labels, scores))
}

/// Whether the scores already are the working grid, sample for sample.
fn identity(s: &ClassScores, fw: u32, fh: u32, ww: u32, wh: u32) -> bool {
    let g = &s.geometry;
    let covers = if g.stretched {
        (fw, fh) == (ww, wh)
    } else {
        (g.model_width, g.model_height) == (ww, wh) && (fw, fh) == (ww, wh)
    };
    covers && (s.width, s.height) == (ww, wh) && s.upsampling.is_none()
}

/// Mean of each `scale x scale` block (the part inside the image at the edges). Each output
/// row first sums its input rows into one row of totals (a loop over bytes that
/// vectorizes), then sums each block's columns of it.
fn downsample(image: &RgbImage, scale: u32, ww: u32, wh: u32) -> RgbImage {
    let (fw, fh, s) = (image.width as usize, image.height as usize, scale as usize);
    let mut data = vec![0u8; ww as usize * wh as usize * 3];
    data.par_chunks_mut(ww as usize * 3)
        .enumerate()
        .for_each_init(Vec::new, |totals: &mut Vec<u32>, (y, row)| {
            let ys = y * s..((y + 1) * s).min(fh);
            totals.clear();
            totals.resize(fw * 3, 0);
            for yy in ys.clone() {
                let line = &image.data[yy * fw * 3..(yy + 1) * fw * 3];
                for (t, &v) in totals.iter_mut().zip(line) {
                    *t += v as u32;
                }
            }
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let xs = x * s..((x + 1) * s).min(fw);
                let mut sum = [0u32; 3];
                for t in totals[xs.start * 3..xs.end * 3].chunks_exact(3) {
                    for c in 0..3 {
                        sum[c] += t[c];
                    }
                }
                let n = (ys.len() * xs.len()) as u32;
                for c in 0..3 {
                    px[c] = ((sum[c] + n / 2) / n) as u8;
                }
            }
        });
    RgbImage::new(ww, wh, data)
}

/// The scores at `ww x wh`, a grid over the `fw x fh` frame, bilinearly as the argmax of
/// `infer` maps them (stretched or padded model input). Scores the model gave before its
/// final Resize (taken off its graph) are read as that Resize's output: the working grid's
/// taps go through its up-sampling, so the CRF reads the 16 times smaller scores directly
/// and no plane at the model input's size is ever made.
struct Resampler<'a> {
    scores: &'a ClassScores,
    tx: Vec<Tap>,
    ty: Vec<Tap>,
}

impl<'a> Resampler<'a> {
    fn new(s: &'a ClassScores, fw: u32, fh: u32, ww: u32, wh: u32) -> Self {
        let (w, h) = (s.width as usize, s.height as usize);
        let g = &s.geometry;
        // The samples covering the model input: the up-sampled ones, where the Resize was
        // taken off.
        let (fy, fx) = s.upsampling.map_or((1, 1), |u| u.factor);
        let (uw, uh) = (w * fx as usize, h * fy as usize);
        // Source samples per frame pixel, as infer's argmax maps them, then per working pixel.
        let sx = axis_scale(uw, g.model_width, fw, g.stretched) * fw as f64 / ww as f64;
        let sy = axis_scale(uh, g.model_height, fh, g.stretched) * fh as f64 / wh as f64;
        let (tx, ty) = match &s.upsampling {
            Some(u) => (
                u.taps(ww as usize, w, fx, sx),
                u.taps(wh as usize, h, fy, sy),
            ),
            None => (taps(ww as usize, w, sx), taps(wh as usize, h, sy)),
        };
        Resampler { scores: s, tx, ty }
    }

    /// Working row `y`, columns `xs`, into `rows` of `cp` lanes (class `c` in lane `c`,
    /// the padding lanes 0): each sample mixes its four source samples directly, so
    /// down-sampling (the usual case) reads only the source columns its taps name. The mix
    /// down the two source rows is done once per source column the run reaches, into a row
    /// of `cp` lanes per column, then across for each sample as whole rows of lanes (eight
    /// at a time with AVX2): the same operations in the same order as mixing each sample's
    /// four samples on their own.
    fn fill(&self, y: usize, xs: std::ops::Range<usize>, rows: &mut [f32], cp: usize) {
        thread_local! {
            /// The run's source columns mixed down, one row of `cp` lanes each, kept
            /// between runs (each run writes every lane it reads, so nothing is cleared).
            static DOWN: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let s = self.scores;
        let (w, classes) = (s.width as usize, s.classes);
        let Tap { i0, i1, w1: t } = self.ty[y];
        let tx = &self.tx[xs];
        // Taps are in order, so the run reaches source columns `lo..=hi`.
        let (lo, hi) = match (tx.first(), tx.last()) {
            (Some(f), Some(l)) => (f.i0.min(f.i1), l.i0.max(l.i1)),
            _ => return,
        };
        DOWN.with_borrow_mut(|down| {
            let cols = hi - lo + 1;
            if down.len() < cols * cp {
                down.resize(cols * cp, 0.0);
            }
            let down = &mut down[..cols * cp];
            for (c, plane) in s.data.chunks_exact(w * s.height as usize).enumerate() {
                let (a, b) = (&plane[i0 * w..(i0 + 1) * w], &plane[i1 * w..(i1 + 1) * w]);
                for ((d, &a), &b) in down
                    .iter_mut()
                    .skip(c)
                    .step_by(cp)
                    .zip(&a[lo..=hi])
                    .zip(&b[lo..=hi])
                {
                    *d = a + t * (b - a);
                }
            }
            for col in down.chunks_exact_mut(cp) {
                col[classes..].fill(0.0);
            }
            across(down, lo, tx, rows, cp);
        });
    }
}

/// Each sample's row of `cp` lanes mixed across from the two mixed-down source columns
/// its tap names (`down`: a row of `cp` lanes per source column from `lo`).
fn across(down: &[f32], lo: usize, tx: &[Tap], rows: &mut [f32], cp: usize) {
    #[inline(always)]
    fn body(down: &[f32], lo: usize, tx: &[Tap], rows: &mut [f32], cp: usize) {
        for (row, x) in rows.chunks_exact_mut(cp).zip(tx) {
            let (d0, d1) = (
                &down[(x.i0 - lo) * cp..][..cp],
                &down[(x.i1 - lo) * cp..][..cp],
            );
            for ((o, &v0), &v1) in row.iter_mut().zip(d0).zip(d1) {
                *o = v0 + x.w1 * (v1 - v0);
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if lanes::avx2() {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(down: &[f32], lo: usize, tx: &[Tap], rows: &mut [f32], cp: usize) {
            body(down, lo, tx, rows, cp)
        }
        // SAFETY: the CPU has AVX2.
        return unsafe { avx2(down, lo, tx, rows, cp) };
    }
    body(down, lo, tx, rows, cp)
}

/// The refine stage.
pub struct Refine {
    options: RefineOptions,
    pool: Option<rayon::ThreadPool>,
    /// This worker's buffers, kept between frames.
    workspace: Workspace,
}

impl Refine {
    pub fn new(options: RefineOptions) -> Self {
        Refine {
            options,
            pool: None,
            workspace: Workspace::default(),
        }
    }
}

impl Stage for Refine {
    fn start(&mut self) -> Result<(), BoxError> {
        if self.options.threads > 0 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(self.options.threads)
                .thread_name(|i| format!("segstream-refine-crf-{i}"))
                .build()
                .map_err(|e| RefineError::Pool(e.to_string()))?;
            self.pool = Some(pool);
        }
        Ok(())
    }

    fn process(&mut self, mut frame: Frame, out: &mut Output) -> Result<(), BoxError> {
        let scores = frame.scores.clone();
        let masks = self.options.masks && frame.instances.is_some();
        if scores.is_none() && !masks {
            return Err(RefineError::NoScores { seq: frame.seq }.into());
        }
        let started = Instant::now();
        let budget = self.options.budget;
        let stop = move || budget.is_some_and(|b| started.elapsed() >= b);
        let (o, ws) = (&self.options, &mut self.workspace);
        let image = &frame.image;
        let instances = frame.instances.clone();
        let work = || {
            let labels = scores
                .as_ref()
                .map(|s| refine_labels_in(ws, image, s, &o.params, o.scale, o.keep_scores, &stop));
            // Each mask is a small CRF of its own; they refine in parallel.
            let masks = instances.filter(|_| masks && !stop()).map(|found| {
                found
                    .par_iter()
                    .map(|inst| Instance {
                        mask: refine_mask_with(image, inst, &o.params),
                        ..inst.clone()
                    })
                    .collect::<Vec<_>>()
            });
            (labels, masks)
        };
        let (labels, refined_masks) = match &self.pool {
            Some(pool) => pool.install(work),
            None => work(),
        };
        let mut skipped = masks && refined_masks.is_none();
        match labels {
            Some(Ok((labels, probabilities))) => {
                frame.labels = Some(Arc::new(labels));
                frame.scores = probabilities.map(Arc::new);
            }
            Some(Err(CrfError::Stopped)) => skipped = true,
            Some(Err(source)) => {
                return Err(RefineError::Crf {
                    seq: frame.seq,
                    source,
                }
                .into())
            }
            None => {}
        }
        if let Some(found) = refined_masks {
            frame.instances = Some(Arc::new(found));
        }
        if skipped {
            out.count_skipped();
            tracing::trace!(
                stage = "refine",
                seq = frame.seq,
                "Frame passed unrefined: budget spent."
            );
        }
        out.send(frame)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores covering a `w x h` frame sample for sample.
    fn whole(w: u32, h: u32) -> Geometry {
        Geometry {
            frame_width: w,
            frame_height: h,
            model_width: w,
            model_height: h,
            stretched: false,
        }
    }

    fn scores(
        w: u32,
        h: u32,
        geometry: Geometry,
        f: impl Fn(usize, u32, u32) -> f32,
    ) -> ClassScores {
        let data = (0..2)
            .flat_map(|c| (0..h).flat_map(move |y| (0..w).map(move |x| (c, x, y))))
            .map(|(c, x, y)| f(c, x, y))
            .collect();
        ClassScores {
            kind: ScoreKind::Logits,
            classes: 2,
            width: w,
            height: h,
            data,
            geometry,
            upsampling: None,
        }
    }

    #[test]
    fn resampling_follows_the_argmax_mapping() {
        // Quarter-resolution scores of a padded 8x4 input over a 6x4 frame: working at full
        // resolution must give what infer's bilinear argmax gives.
        let g = Geometry {
            frame_width: 6,
            frame_height: 4,
            model_width: 8,
            model_height: 4,
            stretched: false,
        };
        let s = scores(4, 2, g, |c, x, y| {
            if c == 0 {
                1.0
            } else {
                x as f32 * 0.7 - y as f32 * 0.2
            }
        });
        let mut r = [0f32; 2 * 24];
        let resampler = Resampler::new(&s, 6, 4, 6, 4);
        for (y, row) in r.chunks_exact_mut(2 * 6).enumerate() {
            resampler.fill(y, 0..6, row, 2);
        }
        assert!(!identity(&s, 6, 4, 6, 4));
        let labels: Vec<u8> = r.chunks_exact(2).map(|p| (p[1] > p[0]) as u8).collect();
        assert_eq!(labels, argmax_scores(&s.data, 2, 2, 4, &g).data);
    }

    /// The fill mixes each source column down once per run and then across; every working
    /// sample gets the bits of mixing its own four source samples, down then across, for
    /// down-sampled, up-sampled and Resize-composed taps, runs of any length and offset.
    #[test]
    fn fill_mixes_each_sample_as_its_four_samples_do() {
        let g = |mw, mh| Geometry {
            frame_width: 37,
            frame_height: 23,
            model_width: mw,
            model_height: mh,
            stretched: false,
        };
        let value = |c: usize, x: u32, y: u32| ((x * 7 + y * 13 + c as u32 * 5) % 17) as f32 * 0.37;
        let mut low = scores(10, 6, g(40, 24), value);
        low.upsampling = Some(crate::frame::Upsampling {
            factor: (4, 4),
            alignment: crate::frame::Alignment::Corners,
        });
        let cases = [
            (scores(37, 23, g(37, 23), value), 10, 6),
            (scores(37, 23, g(37, 23), value), 37, 23),
            (scores(12, 7, g(48, 28), value), 37, 23),
            (low, 19, 12),
        ];
        for (s, ww, wh) in &cases {
            let r = Resampler::new(s, 37, 23, *ww, *wh);
            let w = s.width as usize;
            let plane = w * s.height as usize;
            // Rows of two lanes (no padding), and of eight (the stage's, six padding lanes).
            for (y, cp) in (0..*wh as usize).flat_map(|y| [(y, 2), (y, 8)]) {
                for (x0, x1) in [(0, *ww as usize), (3, 9), (5, 6)] {
                    let mut rows = vec![f32::NAN; (x1 - x0) * cp];
                    r.fill(y, x0..x1, &mut rows, cp);
                    let ty = r.ty[y];
                    for (k, x) in (x0..x1).enumerate() {
                        let tx = r.tx[x];
                        for c in 0..2 {
                            let (a, b) = (
                                &s.data[c * plane + ty.i0 * w..],
                                &s.data[c * plane + ty.i1 * w..],
                            );
                            let v0 = a[tx.i0] + ty.w1 * (b[tx.i0] - a[tx.i0]);
                            let v1 = a[tx.i1] + ty.w1 * (b[tx.i1] - a[tx.i1]);
                            let want = v0 + tx.w1 * (v1 - v0);
                            assert_eq!(
                                rows[k * cp + c].to_bits(),
                                want.to_bits(),
                                "{ww}x{wh} at {x},{y}"
                            );
                        }
                        assert!(rows[k * cp + 2..(k + 1) * cp].iter().all(|&v| v == 0.0));
                    }
                }
            }
        }
    }

    /// Scores from before a model's final Resize (x4, corners aligned) are read as the
    /// Resize's output: at full resolution exactly (its samples are the frame's pixels). At
    /// half resolution a working pixel sits between two of the Resize's samples; reading the
    /// source there directly differs from mixing those two only where they straddle a source
    /// sample, by less than an eighth of the source's largest second difference.
    #[test]
    fn scores_before_the_final_resize_are_read_as_its_output() {
        let (w, h, f) = (5usize, 3usize, 4usize);
        let g = Geometry {
            frame_width: 18,
            frame_height: 11,
            model_width: (w * f) as u32,
            model_height: (h * f) as u32,
            stretched: false,
        };
        let value = |c: usize, x: f64, y: f64| {
            if c == 0 {
                0.5
            } else {
                (x * 1.3).sin() + y * 0.4
            }
        };
        let mut low = scores(w as u32, h as u32, g, |c, x, y| {
            value(c, x as f64, y as f64) as f32
        });
        low.upsampling = Some(crate::frame::Upsampling {
            factor: (f as u32, f as u32),
            alignment: crate::frame::Alignment::Corners,
        });
        // The Resize's output by its definition: output pixel d reads d * (n - 1) / (nf - 1).
        let at = |d: usize, n: usize| d as f64 * (n as f64 - 1.0) / ((n * f) as f64 - 1.0);
        let lerp = |c: usize, x: f64, y: f64| {
            let (x0, y0) = (x.floor() as usize, y.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
            let (tx, ty) = (x - x0 as f64, y - y0 as f64);
            let v = |xx: usize, yy: usize| low.data[c * w * h + yy * w + xx] as f64;
            let top = v(x0, y0) * (1.0 - tx) + v(x1, y0) * tx;
            let bottom = v(x0, y1) * (1.0 - tx) + v(x1, y1) * tx;
            (top * (1.0 - ty) + bottom * ty) as f32
        };
        let mut big = scores((w * f) as u32, (h * f) as u32, g, |c, x, y| {
            lerp(c, at(x as usize, w), at(y as usize, h))
        });
        big.upsampling = None;
        let v = |c: usize, x: usize, y: usize| low.data[c * w * h + y * w + x];
        let mut bend = 0f32;
        for c in 0..2 {
            for y in 0..h {
                for x in 1..w - 1 {
                    bend = bend.max((v(c, x - 1, y) - 2.0 * v(c, x, y) + v(c, x + 1, y)).abs());
                }
            }
            for y in 1..h - 1 {
                for x in 0..w {
                    bend = bend.max((v(c, x, y - 1) - 2.0 * v(c, x, y) + v(c, x, y + 1)).abs());
                }
            }
        }
        for (ww, wh, tolerance) in [(18u32, 11u32, 1e-5f32), (9, 6, bend / 8.0)] {
            let (a, b) = (
                Resampler::new(&low, 18, 11, ww, wh),
                Resampler::new(&big, 18, 11, ww, wh),
            );
            assert!(!identity(&low, 18, 11, ww, wh));
            let n = (ww * 2) as usize;
            let (mut ra, mut rb) = (vec![0f32; n], vec![0f32; n]);
            for y in 0..wh as usize {
                a.fill(y, 0..ww as usize, &mut ra, 2);
                b.fill(y, 0..ww as usize, &mut rb, 2);
                for (x, (p, q)) in ra.iter().zip(&rb).enumerate() {
                    assert!(
                        (p - q).abs() <= tolerance,
                        "{ww}x{wh}: row {y}, lane {x}: {p} vs {q}"
                    );
                }
            }
        }
    }

    #[test]
    fn downsampling_averages_blocks() {
        let image = RgbImage::new(3, 2, (0..18).map(|v| v as u8 * 10).collect());
        let d = downsample(&image, 2, 2, 1);
        // Block (0..2, 0..2) and the edge block (2..3, 0..2).
        assert_eq!(d.data, vec![60, 70, 80, 105, 115, 125]);
    }

    /// Without a later reader of the scores, the labels are the same and no probabilities
    /// come back, at every scale; the portable pass leaves them out as the AVX2 one does.
    #[test]
    fn labels_without_probabilities_are_the_same_labels() {
        let (w, h) = (61u32, 37u32);
        let image = RgbImage::new(
            w,
            h,
            (0..w * h * 3).map(|i| ((i * 37) % 251) as u8).collect(),
        );
        let g = whole(w, h);
        let s = scores(w, h, g, |c, x, y| {
            ((x * 3 + y * 5 + c as u32 * 7) % 11) as f32 * 0.3
        });
        let params = CrfParams::default();
        // One thread, so the portable switch (per thread) holds for the whole refinement.
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        for portable in [false, true] {
            for scale in [1, 2, 3] {
                let (all, probs, only, none) = one.install(|| {
                    crf::tests::set_portable(portable);
                    let mut ws = Workspace::default();
                    let run = |ws: &mut Workspace, keep| {
                        refine_labels_in(ws, &image, &s, &params, scale, keep, &|| false).unwrap()
                    };
                    let ((all, probs), (only, none)) = (run(&mut ws, true), run(&mut ws, false));
                    crf::tests::set_portable(false);
                    (all, probs, only, none)
                });
                assert!(probs.is_some() && none.is_none());
                assert_eq!(all.data, only.data, "scale {scale}, portable {portable}");
            }
        }
    }

    #[test]
    fn scaled_refinement_returns_frame_sized_labels() {
        let (w, h) = (64u32, 48u32);
        let image = RgbImage::new(w, h, vec![128; (w * h * 3) as usize]);
        let g = whole(w, h);
        let s = scores(
            w,
            h,
            g,
            |c, x, _| if (c == 1) == (x >= 32) { 2.0 } else { 0.0 },
        );
        for scale in [1, 2, 4] {
            let (labels, probs) =
                refine_frame(&image, &s, &CrfParams::default(), scale, &|| false).unwrap();
            assert_eq!((labels.width, labels.height), (w, h));
            assert_eq!((probs.width, probs.height), (w / scale, h / scale));
            assert_eq!(labels.data[10], 0);
            assert_eq!(labels.data[60], 1);
        }
    }
}
