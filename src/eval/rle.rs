//! What scoring needs of COCO run-length encoded masks, on top of the instance module's
//! codec (`crate::instance::rle`): intersection and IoU as pycocotools computes them, and
//! polygon ground truth rasterized and merged exactly as `frPyObjects` and `merge` do.
//!
//! `let iou = detection.iou(&truth, truth_is_crowd);`
//!
//! Runs go down the columns (column-major), alternating background and foreground,
//! starting with background.

pub use crate::instance::rle::Rle;

impl Rle {
    /// Plain run lengths (COCO's uncompressed form); they must cover `height * width`.
    pub fn from_counts(height: u32, width: u32, counts: Vec<u32>) -> Result<Rle, String> {
        let total: u64 = counts.iter().map(|&c| c as u64).sum();
        if total != height as u64 * width as u64 {
            return Err(format!(
                "runs cover {total} pixels, but the mask is {height}x{width} (expected {})",
                height as u64 * width as u64
            ));
        }
        Ok(Rle {
            height,
            width,
            counts,
        })
    }

    /// Rasterizes one polygon `[x0, y0, x1, y1, ...]` (pixel coordinates) exactly as
    /// pycocotools' `frPyObjects` (`rleFrPoly` in maskApi.c): boundary points on a 5x finer
    /// grid, kept where they cross pixel columns.
    pub fn from_polygon(height: u32, width: u32, xy: &[f64]) -> Rle {
        let (h, w) = (height as i64, width as i64);
        let k = xy.len() / 2;
        if k == 0 {
            return Rle {
                height,
                width,
                counts: vec![height * width],
            };
        }
        let scale = 5.0;
        let mut x: Vec<i64> = (0..k)
            .map(|j| (scale * xy[2 * j] + 0.5) as i32 as i64)
            .collect();
        let mut y: Vec<i64> = (0..k)
            .map(|j| (scale * xy[2 * j + 1] + 0.5) as i32 as i64)
            .collect();
        x.push(x[0]);
        y.push(y[0]);
        let (mut u, mut v) = (Vec::new(), Vec::new());
        for j in 0..k {
            let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
            let (dx, dy) = ((xe - xs).abs(), (ys - ye).abs());
            let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
            if flip {
                std::mem::swap(&mut xs, &mut xe);
                std::mem::swap(&mut ys, &mut ye);
            }
            let s = if dx >= dy {
                (ye - ys) as f64 / dx as f64
            } else {
                (xe - xs) as f64 / dy as f64
            };
            if dx >= dy {
                for d in 0..=dx {
                    let t = if flip { dx - d } else { d };
                    u.push(t + xs);
                    v.push((ys as f64 + s * t as f64 + 0.5) as i32 as i64);
                }
            } else {
                for d in 0..=dy {
                    let t = if flip { dy - d } else { d };
                    v.push(t + ys);
                    u.push((xs as f64 + s * t as f64 + 0.5) as i32 as i64);
                }
            }
        }
        let mut a: Vec<u32> = Vec::new();
        for j in 1..u.len() {
            if u[j] == u[j - 1] {
                continue;
            }
            let xd = (if u[j] < u[j - 1] { u[j] } else { u[j] - 1 }) as f64;
            let xd = (xd + 0.5) / scale - 0.5;
            if xd.floor() != xd || xd < 0.0 || xd > (w - 1) as f64 {
                continue;
            }
            let yd = (if v[j] < v[j - 1] { v[j] } else { v[j - 1] }) as f64;
            let yd = ((yd + 0.5) / scale - 0.5).clamp(0.0, h as f64).ceil();
            a.push((xd as i64 * h + yd as i64) as u32);
        }
        a.push((h * w) as u32);
        a.sort_unstable();
        let mut p = 0;
        for c in a.iter_mut() {
            let t = *c;
            *c -= p;
            p = t;
        }
        let mut counts = vec![a[0]];
        let mut j = 1;
        while j < a.len() {
            if a[j] > 0 {
                counts.push(a[j]);
                j += 1;
            } else {
                j += 1;
                if j < a.len() {
                    *counts.last_mut().expect("one count at least") += a[j];
                    j += 1;
                }
            }
        }
        Rle {
            height,
            width,
            counts,
        }
    }

    /// The union of masks of one size, as pycocotools' `merge` (`rleMerge`).
    pub fn union(masks: &[Rle]) -> Rle {
        let mut merged = masks[0].clone();
        for b in &masks[1..] {
            let a = &merged;
            let mut counts = Vec::new();
            let (mut ca, mut cb) = (a.counts[0], b.counts[0]);
            let (mut v, mut va, mut vb) = (false, false, false);
            let (mut ia, mut ib, mut cc) = (1, 1, 0u32);
            loop {
                let c = ca.min(cb);
                cc += c;
                let mut ct = 0u64;
                ca -= c;
                if ca == 0 && ia < a.counts.len() {
                    ca = a.counts[ia];
                    ia += 1;
                    va = !va;
                }
                ct += ca as u64;
                cb -= c;
                if cb == 0 && ib < b.counts.len() {
                    cb = b.counts[ib];
                    ib += 1;
                    vb = !vb;
                }
                ct += cb as u64;
                let vp = v;
                v = va || vb;
                if v != vp || ct == 0 {
                    counts.push(cc);
                    cc = 0;
                }
                if ct == 0 {
                    break;
                }
            }
            merged = Rle {
                height: a.height,
                width: a.width,
                counts,
            };
        }
        merged
    }

    /// Pixels set in both masks (of the same size).
    pub fn intersection(&self, other: &Rle) -> u64 {
        let (a, b) = (&self.counts, &other.counts);
        let (mut ia, mut ib) = (0usize, 0usize);
        let (mut ca, mut cb) = (
            a.first().copied().unwrap_or(0),
            b.first().copied().unwrap_or(0),
        );
        let (mut va, mut vb) = (false, false);
        let mut inter = 0u64;
        loop {
            // Skip exhausted (zero-length) runs.
            while ca == 0 {
                ia += 1;
                let Some(&c) = a.get(ia) else { return inter };
                ca = c;
                va = !va;
            }
            while cb == 0 {
                ib += 1;
                let Some(&c) = b.get(ib) else { return inter };
                cb = c;
                vb = !vb;
            }
            let c = ca.min(cb);
            if va && vb {
                inter += c as u64;
            }
            ca -= c;
            cb -= c;
        }
    }

    /// pycocotools' `maskUtils.iou` for one pair: intersection over union, or over this
    /// mask's area when `crowd` (the other mask is a crowd region); 0 when they do not meet.
    pub fn iou(&self, other: &Rle, crowd: bool) -> f64 {
        let i = self.intersection(other);
        if i == 0 {
            return 0.0;
        }
        let u = if crowd {
            self.area()
        } else {
            self.area() + other.area() - i
        };
        i as f64 / u as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run-length encodes a row-major mask, straight from the definition.
    fn encode(height: u32, width: u32, row_major: &[u8]) -> Rle {
        let (h, w) = (height as usize, width as usize);
        let mut counts = Vec::new();
        let (mut current, mut run) = (0u8, 0u32);
        for x in 0..w {
            for y in 0..h {
                let v = row_major[y * w + x];
                if v != current {
                    counts.push(run);
                    current = v;
                    run = 0;
                }
                run += 1;
            }
        }
        counts.push(run);
        Rle::from_counts(height, width, counts).unwrap()
    }

    #[test]
    fn iou_plain_and_crowd() {
        let a = encode(2, 2, &[1, 1, 0, 0]);
        let b = encode(2, 2, &[1, 0, 1, 0]);
        assert_eq!(a.intersection(&b), 1);
        assert!((a.iou(&b, false) - 1.0 / 3.0).abs() < 1e-15);
        assert!((a.iou(&b, true) - 0.5).abs() < 1e-15);
        let empty = encode(2, 2, &[0, 0, 0, 0]);
        assert_eq!(a.iou(&empty, false), 0.0);
    }

    #[test]
    fn union_of_two_masks() {
        let a = encode(2, 3, &[1, 0, 0, 0, 0, 1]);
        let b = encode(2, 3, &[0, 1, 0, 0, 0, 1]);
        assert_eq!(Rle::union(&[a, b]).decode(), [1, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn uncompressed_counts_must_cover_the_mask() {
        assert!(Rle::from_counts(2, 2, vec![1, 2, 1]).is_ok());
        assert!(Rle::from_counts(2, 2, vec![1, 2]).is_err());
    }
}
