//! Model output to a label map at frame resolution.
//!
//! Scores smaller than the frame are up-sampled bilinearly with half-pixel centres (the
//! convention of PyTorch's `interpolate(mode="bilinear", align_corners=False)`), fused with
//! the argmax so no full-resolution score volume is ever allocated.

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
    (0..out)
        .map(|d| {
            let src = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
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

/// Source samples per frame pixel along one axis: scores of size `out` cover the model input
/// of size `model`, which covers the frame (`frame`) either stretched or padded.
fn axis_scale(out: usize, model: u32, frame: u32, stretched: bool) -> f64 {
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
    let mut labels = vec![0u8; fw * fh];

    if sy == 1.0 && sx == 1.0 {
        // Scores at frame resolution (padded input cropped back): a plain argmax, row by row.
        let mut best = vec![f32::NEG_INFINITY; fw];
        let mut arg = vec![0f32; fw];
        for y in 0..fh {
            best.fill(f32::NEG_INFINITY);
            arg.fill(0.0);
            for c in 0..classes {
                let row = &scores[c * plane + y * w..c * plane + y * w + fw];
                argmax_step(&mut best, &mut arg, row, c);
            }
            for (l, &a) in labels[y * fw..(y + 1) * fw].iter_mut().zip(&arg) {
                *l = a as u8;
            }
        }
        return LabelMap::new(fw as u32, fh as u32, labels);
    }

    // Separable: interpolate each class's two source rows vertically once, then along the
    // row, so every output pixel costs one lerp per class.
    let ty = taps(fh, h, sy);
    let tx = taps(fw, w, sx);
    let mut column = vec![0f32; w];
    let mut values = vec![0f32; fw];
    let mut best = vec![f32::NEG_INFINITY; fw];
    let mut arg = vec![0f32; fw];
    for (y, t) in ty.iter().enumerate() {
        best.fill(f32::NEG_INFINITY);
        arg.fill(0.0);
        for c in 0..classes {
            let p = &scores[c * plane..(c + 1) * plane];
            let (r0, r1) = (&p[t.i0 * w..(t.i0 + 1) * w], &p[t.i1 * w..(t.i1 + 1) * w]);
            for ((v, &a), &b) in column.iter_mut().zip(r0).zip(r1) {
                *v = a + t.w1 * (b - a);
            }
            for (v, s) in values.iter_mut().zip(&tx) {
                *v = column[s.i0] + s.w1 * (column[s.i1] - column[s.i0]);
            }
            argmax_step(&mut best, &mut arg, &values, c);
        }
        for (l, &a) in labels[y * fw..(y + 1) * fw].iter_mut().zip(&arg) {
            *l = a as u8;
        }
    }
    LabelMap::new(fw as u32, fh as u32, labels)
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

    #[test]
    fn ties_go_to_the_lowest_class() {
        let scores = vec![1.0f32; 3 * 4];
        let l = argmax_scores(&scores, 3, 2, 2, &geometry(2, 2, 2, 2, false));
        assert_eq!(l.data, vec![0; 4]);
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
