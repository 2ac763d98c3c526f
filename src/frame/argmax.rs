//! Model output to a label map at frame resolution.
//!
//! Scores smaller than the frame are up-sampled bilinearly with half-pixel centres (the
//! convention of PyTorch's `interpolate(mode="bilinear", align_corners=False)`), fused with
//! the argmax so no full-resolution score volume is ever allocated. Scores a model gives
//! before its own final Resize (taken off its graph, see `infer::resize`) are up-sampled here
//! with that Resize's factor and convention ([`Upsampling`]), as if it had run.

use rayon::prelude::*;

use super::Geometry;
use super::LabelMap;

/// Where output sample `d` of one axis reads from in a source axis of `n` samples.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tap {
    pub i0: usize,
    pub i1: usize,
    pub w1: f32,
}

/// Bilinear taps for `out` positions reading a source of `n` samples with `scale` = source
/// samples per output sample.
pub(crate) fn taps(out: usize, n: usize, scale: f64) -> Vec<Tap> {
    taps_at(out, n, |d| (d as f64 + 0.5) * scale - 0.5)
}

/// Bilinear taps for `out` positions, output sample `d` reading source position `src(d)`
/// (clamped to the `n` samples).
fn taps_at(out: usize, n: usize, src: impl Fn(usize) -> f64) -> Vec<Tap> {
    (0..out)
        .map(|d| {
            let src = src(d).max(0.0);
            let i0 = (src.floor() as usize).min(n - 1);
            let i1 = (i0 + 1).min(n - 1);
            Tap {
                i0,
                i1,
                w1: (src - i0 as f64) as f32,
            }
        })
        .collect()
}

/// Where a bilinear Resize puts its input samples (ONNX's `coordinate_transformation_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alignment {
    /// `half_pixel` (PyTorch's `align_corners=False`): sample centres at half-pixel
    /// positions, so input sample `i` sits at output position `(i + 0.5) * factor - 0.5`.
    HalfPixel,
    /// `align_corners` (PyTorch's `align_corners=True`, smp's `UpsamplingBilinear2d`): the
    /// first and last samples sit on the first and last output pixels.
    Corners,
}

/// A model's final bilinear up-sampling of its scores by whole factors, done by the argmax
/// instead of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upsampling {
    /// Output samples per input sample: rows, columns.
    pub factor: (u32, u32),
    pub alignment: Alignment,
}

impl std::fmt::Display for Upsampling {
    /// `x4 align_corners`, `x2/x4 half_pixel` (rows/columns where they differ).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (fy, fx) = self.factor;
        match fy == fx {
            true => write!(f, "x{fy}")?,
            false => write!(f, "x{fy}/x{fx}")?,
        }
        f.write_str(match self.alignment {
            Alignment::Corners => " align_corners",
            Alignment::HalfPixel => " half_pixel",
        })
    }
}

impl Upsampling {
    /// Taps reading `n` samples for `out` frame pixels, where the up-sampled axis
    /// (`n * factor` samples) would have been mapped to the frame with `scale` (source
    /// samples per frame pixel, half-pixel centres): the two steps composed, exact where
    /// the up-sampled axis is the model input's size and the frame is padded (the frame's
    /// pixels are then its samples).
    pub(crate) fn taps(&self, out: usize, n: usize, factor: u32, scale: f64) -> Vec<Tap> {
        let (f, big) = (factor as f64, n as f64 * factor as f64);
        taps_at(out, n, |d| {
            let p = ((d as f64 + 0.5) * scale - 0.5).clamp(0.0, big - 1.0);
            match self.alignment {
                Alignment::HalfPixel => (p + 0.5) / f - 0.5,
                Alignment::Corners if big > 1.0 => p * (n as f64 - 1.0) / (big - 1.0),
                Alignment::Corners => 0.0,
            }
        })
    }
}

/// Source samples per frame pixel along one axis: scores of size `out` cover the model input
/// of size `model`, which covers the frame (`frame`) either stretched or padded.
pub(crate) fn axis_scale(out: usize, model: u32, frame: u32, stretched: bool) -> f64 {
    if stretched {
        out as f64 / frame as f64
    } else {
        out as f64 / model as f64
    }
}

/// One class of a running argmax, branch-free so it vectorizes: `arg` holds class indices
/// as floats (same lane width as the scores). Ties keep the lower class.
#[inline]
pub(crate) fn argmax_step(best: &mut [f32], arg: &mut [f32], scores: &[f32], class: usize) {
    let c = class as f32;
    for ((b, a), &v) in best.iter_mut().zip(arg.iter_mut()).zip(scores) {
        let gt = v > *b;
        *a = if gt { c } else { *a };
        *b = if gt { v } else { *b };
    }
}

/// Argmax over `classes` score planes of `h x w` (NCHW, batch item 0), mapped to the frame.
/// Ties go to the lowest class index, as with NumPy's argmax.
pub fn argmax_scores(scores: &[f32], classes: usize, h: usize, w: usize, g: &Geometry) -> LabelMap {
    let (fw, fh) = (g.frame_width as usize, g.frame_height as usize);
    let sy = axis_scale(h, g.model_height, g.frame_height, g.stretched);
    let sx = axis_scale(w, g.model_width, g.frame_width, g.stretched);
    let plane = h * w;

    if sy == 1.0 && sx == 1.0 {
        // Scores at frame resolution (padded input cropped back): a plain argmax, rows in
        // parallel.
        let mut labels = vec![0u8; fw * fh];
        labels.par_chunks_mut(fw).enumerate().for_each_init(
            || (vec![0f32; fw], vec![0f32; fw]),
            |buffers, (y, out)| argmax_run(scores, classes, plane, y * w, out, buffers),
        );
        return LabelMap::new(fw as u32, fh as u32, labels);
    }
    argmax_with_taps(scores, classes, (h, w), &taps(fh, h, sy), &taps(fw, w, sx))
}

/// [`argmax_scores`] of scores `h x w` that a model's final Resize (`up`, taken off its
/// graph) would have up-sampled to `h * factor x w * factor` first: the labels as if it had,
/// without the up-sampled volume.
pub fn argmax_upsampled(
    scores: &[f32],
    classes: usize,
    h: usize,
    w: usize,
    g: &Geometry,
    up: &Upsampling,
) -> LabelMap {
    let (fw, fh) = (g.frame_width as usize, g.frame_height as usize);
    let (uh, uw) = (h * up.factor.0 as usize, w * up.factor.1 as usize);
    let sy = axis_scale(uh, g.model_height, g.frame_height, g.stretched);
    let sx = axis_scale(uw, g.model_width, g.frame_width, g.stretched);
    let ty = up.taps(fh, h, up.factor.0, sy);
    let tx = up.taps(fw, w, up.factor.1, sx);
    argmax_with_taps(scores, classes, (h, w), &ty, &tx)
}

/// The argmax at every frame pixel of the bilinear mix its row and column taps (`ty`, `tx`)
/// give of the `h x w` scores.
fn argmax_with_taps(
    scores: &[f32],
    classes: usize,
    (h, w): (usize, usize),
    ty: &[Tap],
    tx: &[Tap],
) -> LabelMap {
    let (fw, fh) = (tx.len(), ty.len());
    let plane = h * w;
    let mut labels = vec![0u8; fw * fh];
    // Each output pixel mixes the four source samples around it; the classes that can win
    // there are found once per block of four samples (see `Candidates`), so most pixels
    // compare one class, and pixels near a class boundary a few. Rows run in parallel.
    let cells = candidates(scores, classes, h, w);
    // Runs of output pixels between the same source columns: a run whose block has one
    // candidate is filled at once.
    let mut runs: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    for (x, s) in tx.iter().enumerate() {
        match runs.last_mut() {
            Some((i0, r)) if *i0 == s.i0 => r.end = x + 1,
            _ => runs.push((s.i0, x..x + 1)),
        }
    }
    labels.par_chunks_mut(fw).zip(ty).for_each(|(row, t)| {
        let (r0, r1) = (t.i0 * w, t.i1 * w);
        let cells = &cells[t.i0 * w..(t.i0 + 1) * w];
        // Every pixel its block's first candidate (the label where it is the only one),
        // then the blocks with several compared pixel by pixel.
        for (o, s) in row.iter_mut().zip(tx) {
            *o = cells[s.i0].classes[0];
        }
        for (i0, run) in &runs {
            let cell = &cells[*i0];
            if cell.count == 1 {
                continue;
            }
            for x in run.clone() {
                let at = Mix {
                    s: &tx[x],
                    t,
                    r0,
                    r1,
                };
                row[x] = pixel(scores, plane, classes, cell, at);
            }
        }
    });
    LabelMap::new(fw as u32, fh as u32, labels)
}

/// One output pixel of a block with several candidates (`count` 0: every class): the
/// candidates' mixed values compared, ties to the lower class.
#[inline]
fn pixel(scores: &[f32], plane: usize, classes: usize, cell: &Candidates, at: Mix) -> u8 {
    let Mix { s, t, r0, r1 } = at;
    let mix = |c: usize| {
        let p = &scores[c * plane..(c + 1) * plane];
        let c0 = p[r0 + s.i0] + t.w1 * (p[r1 + s.i0] - p[r0 + s.i0]);
        let c1 = p[r0 + s.i1] + t.w1 * (p[r1 + s.i1] - p[r0 + s.i1]);
        c0 + s.w1 * (c1 - c0)
    };
    let (mut best, mut arg) = (f32::NEG_INFINITY, 0usize);
    let mut consider = |c: usize| {
        let v = mix(c);
        if v > best {
            (best, arg) = (v, c);
        }
    };
    match cell.count {
        0 => (0..classes).for_each(&mut consider),
        n => (cell.classes[..n as usize].iter()).for_each(|&c| consider(c as usize)),
    }
    arg as u8
}

/// Where an output pixel reads: its column and row taps, and the offsets of its two source
/// rows in a plane.
#[derive(Clone, Copy)]
struct Mix<'a> {
    s: &'a Tap,
    t: &'a Tap,
    r0: usize,
    r1: usize,
}

/// The classes that can win anywhere between source samples `(x, y)`, `(x + 1, y)`,
/// `(x, y + 1)` and `(x + 1, y + 1)` (clamped at the edges), in ascending order: any mix of
/// the four gives class `c` at least its smallest value `lo_c` and at most its largest
/// `hi_c`, so a class whose `hi_c` is below the largest `lo` can never win. `count` 1 also
/// where the four samples share their argmax; 0 means more than four (every class is
/// compared).
#[derive(Clone, Copy, Default)]
struct Candidates {
    count: u8,
    classes: [u8; 4],
}

fn candidates(scores: &[f32], classes: usize, h: usize, w: usize) -> Vec<Candidates> {
    let plane = h * w;
    let low = source_argmax(scores, classes, plane);
    let mut cells = vec![Candidates::default(); plane];
    cells.par_chunks_mut(w).enumerate().for_each_init(
        || (vec![0f32; w], vec![0f32; w], vec![0f32; classes * w]),
        |(floor, span, tops), (y, out)| {
            let y1 = (y + 1).min(h - 1);
            floor.fill(f32::NEG_INFINITY);
            // Per class, the smallest and largest of each block's four samples (the smallest
            // kept only as the running largest over classes), written as comparisons so
            // the loops vectorize.
            for (c, top) in tops.chunks_exact_mut(w).enumerate() {
                let p = &scores[c * plane..(c + 1) * plane];
                let (a, b) = (&p[y * w..(y + 1) * w], &p[y1 * w..(y1 + 1) * w]);
                // Down the column pair first: `span` holds the column minima, `top` maxima.
                for (((lo, hi), &a), &b) in span.iter_mut().zip(top.iter_mut()).zip(a).zip(b) {
                    (*lo, *hi) = if a < b { (a, b) } else { (b, a) };
                }
                // Then across to the next column (the last column is its own neighbour).
                for x in 0..w - 1 {
                    let (l, l1) = (span[x], span[x + 1]);
                    let (t, t1) = (top[x], top[x + 1]);
                    span[x] = if l1 < l { l1 } else { l };
                    top[x] = if t1 > t { t1 } else { t };
                }
                for (f, &l) in floor.iter_mut().zip(span.iter()) {
                    *f = if l > *f { l } else { *f };
                }
            }
            // A margin for the rounding of the mix (a few ulp of the largest magnitude).
            span.fill(f32::NEG_INFINITY);
            for top in tops.chunks_exact(w) {
                for (m, &t) in span.iter_mut().zip(top) {
                    *m = if t > *m { t } else { *m };
                }
            }
            for (f, &t) in floor.iter_mut().zip(span.iter()) {
                *f -= 1e-5 * (1.0 + f.abs().max(t.abs()));
            }
            for (x, cell) in out.iter_mut().enumerate() {
                let x1 = (x + 1).min(w - 1);
                let a = low[y * w + x];
                if a == low[y * w + x1] && a == low[y1 * w + x] && a == low[y1 * w + x1] {
                    *cell = Candidates {
                        count: 1,
                        classes: [a, 0, 0, 0],
                    };
                    continue;
                }
                let f = floor[x];
                let mut count = 0usize;
                for c in 0..classes {
                    if tops[c * w + x] >= f {
                        if count < 4 {
                            cell.classes[count] = c as u8;
                        }
                        count += 1;
                    }
                }
                cell.count = if count > 4 { 0 } else { count as u8 };
            }
        },
    );
    cells
}

/// The argmax of every source sample (ties to the lowest class).
fn source_argmax(scores: &[f32], classes: usize, plane: usize) -> Vec<u8> {
    const RUN: usize = 4096;
    let mut labels = vec![0u8; plane];
    labels.par_chunks_mut(RUN).enumerate().for_each_init(
        || (vec![0f32; RUN], vec![0f32; RUN]),
        |buffers, (r, out)| argmax_run(scores, classes, plane, r * RUN, out, buffers),
    );
    labels
}

/// The argmax of samples `at..at + out.len()` of every plane into `out`, with `buffers`
/// (at least `out.len()` each) for the running best value and class.
fn argmax_run(
    scores: &[f32],
    classes: usize,
    plane: usize,
    at: usize,
    out: &mut [u8],
    (best, arg): &mut (Vec<f32>, Vec<f32>),
) {
    let (best, arg) = (&mut best[..out.len()], &mut arg[..out.len()]);
    best.fill(f32::NEG_INFINITY);
    arg.fill(0.0);
    for c in 0..classes {
        argmax_step(best, arg, &scores[c * plane + at..][..out.len()], c);
    }
    for (l, &a) in out.iter_mut().zip(arg.iter()) {
        *l = a as u8;
    }
}

/// Class indices of `h x w` (batch item 0) mapped to the frame by nearest neighbour.
pub fn resample_labels(indices: &[i64], h: usize, w: usize, g: &Geometry) -> Result<LabelMap, i64> {
    let (fw, fh) = (g.frame_width as usize, g.frame_height as usize);
    let sy = axis_scale(h, g.model_height, g.frame_height, g.stretched);
    let sx = axis_scale(w, g.model_width, g.frame_width, g.stretched);
    let nearest = |d: usize, s: f64, n: usize| ((d as f64 * s).floor() as usize).min(n - 1);
    let cols: Vec<usize> = (0..fw).map(|x| nearest(x, sx, w)).collect();
    let mut labels = Vec::with_capacity(fw * fh);
    for y in 0..fh {
        let row = nearest(y, sy, h) * w;
        for &x in &cols {
            let v = indices[row + x];
            labels.push(u8::try_from(v).map_err(|_| v)?);
        }
    }
    Ok(LabelMap::new(fw as u32, fh as u32, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(fw: u32, fh: u32, mw: u32, mh: u32, stretched: bool) -> Geometry {
        Geometry {
            frame_width: fw,
            frame_height: fh,
            model_width: mw,
            model_height: mh,
            stretched,
        }
    }

    #[test]
    fn padded_full_resolution_scores_are_cropped() {
        // 2 classes on a 4x4 padded input, frame 3x2: class 1 wins where x >= 2.
        let mut scores = vec![0f32; 2 * 16];
        for y in 0..4 {
            for x in 0..4 {
                scores[16 + y * 4 + x] = x as f32 - 1.5;
            }
        }
        let l = argmax_scores(&scores, 2, 4, 4, &geometry(3, 2, 4, 4, false));
        assert_eq!(l.data, vec![0, 0, 1, 0, 0, 1]);
    }

    #[test]
    fn upsampling_matches_half_pixel_bilinear() {
        // One row of 2 samples up-sampled to 4: PyTorch gives [a, .75a+.25b, .25a+.75b, b].
        let taps = taps(4, 2, 0.5);
        let w: Vec<f32> = taps
            .iter()
            .map(|t| t.i0 as f32 * (1.0 - t.w1) + t.i1 as f32 * t.w1)
            .collect();
        assert_eq!(w, vec![0.0, 0.25, 0.75, 1.0]);
    }

    /// Every class up-sampled to the frame, then the argmax: the definition.
    fn upsample_then_argmax(
        scores: &[f32],
        classes: usize,
        h: usize,
        w: usize,
        g: &Geometry,
    ) -> Vec<(u8, f32)> {
        let (fw, fh) = (g.frame_width as usize, g.frame_height as usize);
        let ty = taps(
            fh,
            h,
            axis_scale(h, g.model_height, g.frame_height, g.stretched),
        );
        let tx = taps(
            fw,
            w,
            axis_scale(w, g.model_width, g.frame_width, g.stretched),
        );
        let mut out = Vec::new();
        for t in &ty {
            for s in &tx {
                let mut v: Vec<f32> = (0..classes)
                    .map(|c| {
                        let p = &scores[c * h * w..];
                        let c0 =
                            p[t.i0 * w + s.i0] + t.w1 * (p[t.i1 * w + s.i0] - p[t.i0 * w + s.i0]);
                        let c1 =
                            p[t.i0 * w + s.i1] + t.w1 * (p[t.i1 * w + s.i1] - p[t.i0 * w + s.i1]);
                        c0 + s.w1 * (c1 - c0)
                    })
                    .collect();
                let best = (0..classes).fold(0, |b, c| if v[c] > v[b] { c } else { b });
                let top = v[best];
                v.sort_by(|a, b| b.partial_cmp(a).unwrap());
                out.push((best as u8, top - v[1]));
            }
        }
        out
    }

    #[test]
    fn fused_upsampling_argmax_equals_upsampling_every_class_then_the_argmax() {
        // Smooth random fields (as models give), 19 classes, 1/4 and odd scales, stretched
        // and padded.
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        for (h, w, g) in [
            (27, 48, geometry(192, 108, 48, 27, true)),
            (16, 16, geometry(50, 37, 64, 64, false)),
        ] {
            let classes = 19;
            let scores: Vec<f32> = (0..classes * h * w)
                .map(|i| {
                    let (c, y, x) = (i / (h * w), (i / w) % h, i % w);
                    ((x as f32 * 0.3 + c as f32).sin() + (y as f32 * 0.2 * c as f32).cos()) * 2.0
                        + next() * 0.5
                })
                .collect();
            let cells = candidates(&scores, classes, h, w);
            assert!(
                cells.iter().any(|c| c.count > 1),
                "some blocks compare a few classes"
            );
            let got = argmax_scores(&scores, classes, h, w, &g);
            let want = upsample_then_argmax(&scores, classes, h, w, &g);
            let differ = got
                .data
                .iter()
                .zip(&want)
                .filter(|(a, (b, margin))| *a != b && *margin > 1e-5)
                .count();
            assert_eq!(differ, 0, "{} of {} pixels differ", differ, want.len());
            let boundary = want.iter().filter(|(_, m)| *m <= 1e-5).count();
            assert!(
                boundary <= want.len() / 500,
                "near-ties are rare: {boundary} of {}",
                want.len()
            );
        }
    }

    /// ONNX `Resize` (mode `linear`) of every class by whole factors, as its specification
    /// writes it: output pixel `d` reads input position `d * (n - 1) / (big - 1)` with
    /// `align_corners`, `(d + 0.5) / factor - 0.5` with `half_pixel`, clamped to the input.
    fn onnx_resize(
        scores: &[f32],
        classes: usize,
        h: usize,
        w: usize,
        up: &Upsampling,
    ) -> Vec<f32> {
        let (fy, fx) = (up.factor.0 as usize, up.factor.1 as usize);
        let (bh, bw) = (h * fy, w * fx);
        let axis = |d: usize, n: usize, f: usize| -> (usize, usize, f64) {
            let big = (n * f) as f64;
            let x = match up.alignment {
                Alignment::Corners => d as f64 * (n as f64 - 1.0) / (big - 1.0),
                Alignment::HalfPixel => (d as f64 + 0.5) / f as f64 - 0.5,
            };
            let x = x.clamp(0.0, n as f64 - 1.0);
            let i0 = x.floor() as usize;
            (i0, (i0 + 1).min(n - 1), x - i0 as f64)
        };
        let mut out = vec![0f32; classes * bh * bw];
        for c in 0..classes {
            let p = &scores[c * h * w..(c + 1) * h * w];
            for y in 0..bh {
                let (y0, y1, wy) = axis(y, h, fy);
                for x in 0..bw {
                    let (x0, x1, wx) = axis(x, w, fx);
                    let v = |yy: usize, xx: usize| p[yy * w + xx] as f64;
                    let top = v(y0, x0) * (1.0 - wx) + v(y0, x1) * wx;
                    let bottom = v(y1, x0) * (1.0 - wx) + v(y1, x1) * wx;
                    out[c * bh * bw + y * bw + x] = (top * (1.0 - wy) + bottom * wy) as f32;
                }
            }
        }
        out
    }

    /// The labels of scores a model's final Resize was taken off are those of the Resize's
    /// output (made here by its specification), on padded frames (where the up-sampled size
    /// is the model input's, as segstream cuts the Resize only for padded inputs), for both
    /// conventions.
    #[test]
    fn upsampling_in_the_argmax_equals_the_resize_then_the_argmax() {
        let (h, w, classes) = (23usize, 40usize, 19usize);
        let scores: Vec<f32> = (0..classes * h * w)
            .map(|i| {
                let (c, y, x) = (i / (h * w), (i / w) % h, i % w);
                ((x as f32 * 0.31 + c as f32).sin() + (y as f32 * 0.23 * c as f32).cos()) * 2.0
            })
            .collect();
        for alignment in [Alignment::Corners, Alignment::HalfPixel] {
            let up = Upsampling {
                factor: (4, 4),
                alignment,
            };
            let big = onnx_resize(&scores, classes, h, w, &up);
            for g in [
                geometry(160, 92, 160, 92, false),
                geometry(150, 90, 160, 92, false),
                geometry(97, 31, 160, 92, false),
            ] {
                let got = argmax_upsampled(&scores, classes, h, w, &g, &up);
                let want = argmax_scores(&big, classes, 4 * h, 4 * w, &g);
                let differ = got
                    .data
                    .iter()
                    .zip(&want.data)
                    .filter(|(a, b)| a != b)
                    .count();
                // Only float rounding at near-ties may differ.
                assert!(
                    differ <= want.data.len() / 2000,
                    "{alignment:?}, {}x{}: {differ} of {} pixels differ",
                    g.frame_width,
                    g.frame_height,
                    want.data.len()
                );
            }
        }
    }

    #[test]
    fn ties_go_to_the_lowest_class() {
        let scores = vec![1.0f32; 3 * 4];
        let l = argmax_scores(&scores, 3, 2, 2, &geometry(2, 2, 2, 2, false));
        assert_eq!(l.data, vec![0; 4]);
        let l = argmax_scores(&scores, 3, 2, 2, &geometry(5, 5, 2, 2, true));
        assert_eq!(l.data, vec![0; 25]);
    }

    /// Where many classes are close around a block of samples, every class is compared, and
    /// the result is still the definition's.
    #[test]
    fn many_close_classes_fall_back_to_every_class() {
        let (h, w, classes) = (6usize, 7usize, 12usize);
        let scores: Vec<f32> = (0..classes * h * w)
            .map(|i| {
                let (c, y, x) = (i / (h * w), (i / w) % h, i % w);
                1.0 + 0.01 * (((c * 7 + y * 3 + x * 5) % 11) as f32)
            })
            .collect();
        let cells = candidates(&scores, classes, h, w);
        assert!(
            cells.iter().any(|c| c.count == 0),
            "some blocks compare every class"
        );
        let g = geometry(29, 23, 7, 6, true);
        let got = argmax_scores(&scores, classes, h, w, &g);
        let want = upsample_then_argmax(&scores, classes, h, w, &g);
        for (i, (a, (b, margin))) in got.data.iter().zip(&want).enumerate() {
            assert!(a == b || *margin <= 1e-5, "pixel {i}: {a} vs {b}");
        }
    }

    #[test]
    fn labels_are_resampled_by_nearest_neighbour() {
        let idx = vec![0i64, 1, 2, 3];
        let l = resample_labels(&idx, 2, 2, &geometry(4, 4, 2, 2, true)).unwrap();
        assert_eq!(l.data, vec![0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]);
        assert_eq!(
            resample_labels(&[300], 1, 1, &geometry(1, 1, 1, 1, true)),
            Err(300)
        );
    }
}
