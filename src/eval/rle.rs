//! COCO run-length encoded masks, as pycocotools stores them.
//!
//! `let mask = Rle::from_string(h, w, "PPY1...")?;` then `mask.area()`, `mask.iou(&other)`.
//!
//! Runs go down the columns (column-major), alternating background and foreground, starting
//! with background. The compressed string form packs each count (after the third, as a
//! difference from the count two before) into 5-bit groups offset by 48, as `maskApi.c`.

/// A binary mask of `height x width` as alternating run lengths, the first one background.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rle {
    pub height: u32,
    pub width: u32,
    pub counts: Vec<u32>,
}

impl Rle {
    /// Decodes pycocotools' compressed counts string.
    pub fn from_string(height: u32, width: u32, s: &str) -> Result<Rle, String> {
        let bytes = s.as_bytes();
        let mut counts: Vec<u32> = Vec::new();
        let mut p = 0;
        while p < bytes.len() {
            let (mut x, mut k, mut more) = (0i64, 0u32, true);
            while more {
                let Some(&b) = bytes.get(p) else {
                    return Err("compressed counts end in the middle of a number".into());
                };
                if !(48..48 + 64).contains(&b) {
                    return Err(format!(
                        "byte {p} of the compressed counts is {:?} (expected characters '0' to 'o')",
                        b as char
                    ));
                }
                if k >= 12 {
                    return Err("a count in the compressed counts is too long".into());
                }
                let c = (b - 48) as i64;
                x |= (c & 0x1f) << (5 * k);
                more = c & 0x20 != 0;
                p += 1;
                k += 1;
                if !more && c & 0x10 != 0 {
                    x |= -1i64 << (5 * k);
                }
            }
            let m = counts.len();
            if m > 2 {
                x += counts[m - 2] as i64;
            }
            let Ok(v) = u32::try_from(x) else {
                return Err(format!("count {m} of the compressed counts is {x}"));
            };
            counts.push(v);
        }
        Rle::from_counts(height, width, counts)
    }

    /// Checks that the runs cover exactly `height * width` pixels.
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

    /// Encodes a row-major `width * height` mask (non-zero = set).
    pub fn encode(height: u32, width: u32, row_major: &[u8]) -> Rle {
        let (h, w) = (height as usize, width as usize);
        assert_eq!(row_major.len(), h * w, "mask buffer size");
        let mut counts = Vec::new();
        let (mut current, mut run) = (false, 0u32);
        for x in 0..w {
            for y in 0..h {
                let v = row_major[y * w + x] != 0;
                if v != current {
                    counts.push(run);
                    current = v;
                    run = 0;
                }
                run += 1;
            }
        }
        counts.push(run);
        Rle {
            height,
            width,
            counts,
        }
    }

    /// The compressed counts string, byte for byte as pycocotools writes it.
    pub fn to_string_counts(&self) -> String {
        let mut s = String::new();
        for (i, &c) in self.counts.iter().enumerate() {
            let mut x = c as i64;
            if i > 2 {
                x -= self.counts[i - 2] as i64;
            }
            let mut more = true;
            while more {
                let mut c = (x & 0x1f) as u8;
                x >>= 5;
                more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= 0x20;
                }
                s.push((c + 48) as char);
            }
        }
        s
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

    /// Pixels set.
    pub fn area(&self) -> u64 {
        self.counts
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&c| c as u64)
            .sum()
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

    /// Decodes to a row-major mask of 0 and 1.
    pub fn to_row_major(&self) -> Vec<u8> {
        let (h, w) = (self.height as usize, self.width as usize);
        let mut out = vec![0u8; h * w];
        let mut pos = 0usize;
        for (i, &c) in self.counts.iter().enumerate() {
            if i % 2 == 1 {
                for p in pos..pos + c as usize {
                    out[(p % h) * w + p / h] = 1;
                }
            }
            pos += c as usize;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_string_form() {
        // 3x4 mask with a few set pixels.
        let mask = [0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 1, 1];
        let rle = Rle::encode(3, 4, &mask);
        assert_eq!(rle.area(), 7);
        assert_eq!(rle.to_row_major(), mask);
        let s = rle.to_string_counts();
        assert_eq!(Rle::from_string(3, 4, &s).unwrap(), rle);
    }

    #[test]
    fn encodes_as_pycocotools_does() {
        // pycocotools.mask.encode of this 7x9 mask gives b'6183K000000000OM4'.
        let mut mask = vec![0u8; 7 * 9];
        for y in 1..5 {
            for x in 2..8 {
                mask[y * 9 + x] = 1;
            }
        }
        mask[6 * 9] = 1;
        mask[8] = 1;
        let rle = Rle::encode(7, 9, &mask);
        assert_eq!(rle.to_string_counts(), "6183K000000000OM4");
        assert_eq!(Rle::from_string(7, 9, "6183K000000000OM4").unwrap(), rle);
    }

    #[test]
    fn large_counts_and_differences_round_trip() {
        let counts = vec![100_000, 3, 70_000, 1, 29_996];
        let rle = Rle::from_counts(400, 500, counts).unwrap();
        let s = rle.to_string_counts();
        assert_eq!(Rle::from_string(400, 500, &s).unwrap(), rle);
    }

    #[test]
    fn iou_plain_and_crowd() {
        let a = Rle::encode(2, 2, &[1, 1, 0, 0]);
        let b = Rle::encode(2, 2, &[1, 0, 1, 0]);
        assert_eq!(a.intersection(&b), 1);
        assert!((a.iou(&b, false) - 1.0 / 3.0).abs() < 1e-15);
        assert!((a.iou(&b, true) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn bad_strings_are_errors() {
        assert!(Rle::from_string(2, 2, "4").is_ok()); // 4 background pixels
        assert!(Rle::from_string(2, 2, "5").is_err()); // 5 pixels in a 2x2 mask
        assert!(Rle::from_string(2, 2, "~").is_err());
        assert!(Rle::from_string(2, 2, "P").is_err()); // continuation bit, then nothing
    }
}
