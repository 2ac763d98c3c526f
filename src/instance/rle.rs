//! COCO run-length encoding of masks, bit-compatible with pycocotools' `mask.encode`.
//!
//! COCO counts runs over the whole image in column-major order, starting with a run of zeros
//! (possibly empty). The compressed form packs each count, as a difference from the count two
//! runs back once past the second, into 5-bit groups written as printable characters.
//!
//! `let rle = rle::encode(&instance.mask, frame.width, frame.height);`
//! `let json = rle.counts_string();`

use super::Mask;

/// A binary mask over a `height x width` image as COCO run lengths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rle {
    pub height: u32,
    pub width: u32,
    /// Alternating runs of 0s and 1s in column-major order, starting with 0s.
    pub counts: Vec<u32>,
}

/// Why a compressed COCO string could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RleError {
    #[error("invalid character {0:?} in COCO RLE counts (expected ASCII 48..=111)")]
    BadChar(char),
    #[error("COCO RLE counts end in the middle of a number")]
    Truncated,
    #[error("COCO RLE counts cover {got} pixels, expected {expected} (size {height}x{width})")]
    Size {
        got: u64,
        expected: u64,
        height: u32,
        width: u32,
    },
}

/// Run-length encodes `mask` (a window of the frame) over the whole `width x height` frame.
///
/// Only the mask's window is visited: the columns outside it are single runs of zeros.
/// COCO's runs go down columns, but the window is stored by rows; rather than striding down
/// each column, rows are compared with the row above eight bytes at a time, and only where
/// a pixel differs from the one above (a run boundary) is anything recorded. The boundaries
/// are then grouped by column (a counting sort keeps each column's rows in order).
pub fn encode(mask: &Mask, width: u32, height: u32) -> Rle {
    let mut runs = Runs::default();
    let h = height as u64;
    // Clip the window to the frame, in case a caller built one that hangs over an edge.
    let x0 = mask.x.min(width);
    let x1 = (mask.x + mask.width).min(width);
    let y0 = mask.y.min(height);
    let y1 = (mask.y + mask.height).min(height);
    let cols = (x1 - x0) as usize;
    let stride = mask.width as usize;
    let first = (x0 - mask.x) as usize;
    // (column, frame row) of every boundary, found row by row.
    let mut edges: Vec<(u32, u32)> = Vec::new();
    let zeros = vec![0u8; cols];
    let mut above: &[u8] = &zeros;
    for y in y0..y1 {
        let start = (y - mask.y) as usize * stride + first;
        let row = &mask.data[start..start + cols];
        let mut x = 0;
        for (a, b) in row.chunks_exact(8).zip(above.chunks_exact(8)) {
            if a != b {
                for k in 0..8 {
                    if (a[k] != 0) != (b[k] != 0) {
                        edges.push(((x + k) as u32, y));
                    }
                }
            }
            x += 8;
        }
        for k in x..cols {
            if (row[k] != 0) != (above[k] != 0) {
                edges.push((k as u32, y));
            }
        }
        above = row;
    }
    for (k, &v) in above.iter().enumerate() {
        if v != 0 {
            edges.push((k as u32, y1));
        }
    }
    // Group by column, keeping row order.
    let mut starts = vec![0usize; cols + 1];
    for &(x, _) in &edges {
        starts[x as usize + 1] += 1;
    }
    for k in 0..cols {
        starts[k + 1] += starts[k];
    }
    let mut rows = vec![0u32; edges.len()];
    let mut fill = starts.clone();
    for &(x, y) in &edges {
        rows[fill[x as usize]] = y;
        fill[x as usize] += 1;
    }

    runs.push(0, x0 as u64 * h);
    for k in 0..cols {
        let (mut at, mut value) = (0u32, 0u8);
        for &y in &rows[starts[k]..starts[k + 1]] {
            runs.push(value, (y - at) as u64);
            at = y;
            value ^= 1;
        }
        runs.push(0, (height - at) as u64);
    }
    runs.push(0, (width - x1) as u64 * h);
    Rle {
        height,
        width,
        counts: runs.finish(),
    }
}

/// Accumulates runs, merging consecutive pushes of the same value.
#[derive(Default)]
struct Runs {
    counts: Vec<u32>,
    value: u8,
    run: u64,
}

impl Runs {
    #[inline]
    fn push(&mut self, value: u8, n: u64) {
        if n == 0 {
            return;
        }
        if value != self.value {
            self.counts.push(self.run as u32);
            self.value = value;
            self.run = 0;
        }
        self.run += n;
    }

    fn finish(mut self) -> Vec<u32> {
        // pycocotools ends on the last run; a mask of all zeros is one run of zeros.
        if self.run > 0 || self.counts.is_empty() {
            self.counts.push(self.run as u32);
        }
        self.counts
    }
}

impl Rle {
    /// Number of pixels set.
    pub fn area(&self) -> u64 {
        self.counts
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&c| c as u64)
            .sum()
    }

    /// The compressed counts string, as pycocotools writes it in `segmentation.counts`.
    pub fn counts_string(&self) -> String {
        let mut s = String::with_capacity(self.counts.len() * 2);
        for i in 0..self.counts.len() {
            let mut x = self.counts[i] as i64;
            if i > 2 {
                x -= self.counts[i - 2] as i64;
            }
            loop {
                let mut c = (x & 0x1f) as u8;
                x >>= 5;
                let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= 0x20;
                }
                s.push((c + 48) as char);
                if !more {
                    break;
                }
            }
        }
        s
    }

    /// Reads pycocotools' compressed counts string for a `height x width` image.
    pub fn from_counts_string(s: &str, height: u32, width: u32) -> Result<Rle, RleError> {
        let mut counts: Vec<u32> = Vec::new();
        let mut chars = s.chars().peekable();
        while chars.peek().is_some() {
            let mut x: i64 = 0;
            let mut k = 0;
            loop {
                let ch = chars.next().ok_or(RleError::Truncated)?;
                if !(48..=111).contains(&(ch as u32)) {
                    return Err(RleError::BadChar(ch));
                }
                let c = ch as i64 - 48;
                x |= (c & 0x1f) << (5 * k);
                k += 1;
                if c & 0x20 == 0 {
                    if c & 0x10 != 0 {
                        x |= -1i64 << (5 * k);
                    }
                    break;
                }
            }
            let m = counts.len();
            if m > 2 {
                x += counts[m - 2] as i64;
            }
            counts.push(x.clamp(0, u32::MAX as i64) as u32);
        }
        let got: u64 = counts.iter().map(|&c| c as u64).sum();
        let expected = height as u64 * width as u64;
        if got != expected {
            return Err(RleError::Size {
                got,
                expected,
                height,
                width,
            });
        }
        Ok(Rle {
            height,
            width,
            counts,
        })
    }

    /// The mask as a row-major `width * height` buffer of 0s and 1s.
    pub fn decode(&self) -> Vec<u8> {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut out = vec![0u8; w * h];
        let mut pos = 0usize;
        for (i, &c) in self.counts.iter().enumerate() {
            if i % 2 == 1 {
                for p in pos..pos + c as usize {
                    let (x, y) = (p / h, p % h);
                    out[y * w + x] = 1;
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

    fn full(mask: &Mask, w: u32, h: u32) -> Vec<u8> {
        let mut v = vec![0u8; (w * h) as usize];
        for y in 0..h {
            for x in 0..w {
                v[(y * w + x) as usize] = mask.get(x, y) as u8;
            }
        }
        v
    }

    #[test]
    fn pycocotools_example() {
        // pycocotools.mask.encode of a 4x5 (h x w) Fortran array with a 2x2 block at rows
        // 1..3, columns 2..4 gives counts [9, 2, 2, 2, 5] and the string "92203".
        let mask = Mask {
            x: 2,
            y: 1,
            width: 2,
            height: 2,
            data: vec![1; 4],
        };
        let rle = encode(&mask, 5, 4);
        assert_eq!(rle.counts, vec![9, 2, 2, 2, 5]);
        assert_eq!(rle.counts_string(), "92203");
        assert_eq!(rle.area(), 4);
    }

    #[test]
    fn empty_and_full() {
        assert_eq!(encode(&Mask::empty(), 3, 2).counts, vec![6]);
        let all = Mask {
            x: 0,
            y: 0,
            width: 3,
            height: 2,
            data: vec![1; 6],
        };
        assert_eq!(encode(&all, 3, 2).counts, vec![0, 6]);
    }

    #[test]
    fn round_trips_random_masks() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let (w, h) = (1 + next() % 40, 1 + next() % 40);
            let (mw, mh) = (1 + next() % w, 1 + next() % h);
            let (mx, my) = (next() % (w - mw + 1), next() % (h - mh + 1));
            let density = next() % 4;
            let data = (0..mw * mh).map(|_| (next() % 4 < density) as u8).collect();
            let mask = Mask {
                x: mx as u32,
                y: my as u32,
                width: mw as u32,
                height: mh as u32,
                data,
            };
            let rle = encode(&mask, w as u32, h as u32);
            let back = Rle::from_counts_string(&rle.counts_string(), h as u32, w as u32).unwrap();
            assert_eq!(back, rle);
            assert_eq!(rle.decode(), full(&mask, w as u32, h as u32));
            assert_eq!(rle.area(), mask.area() as u64);
        }
    }

    #[test]
    fn rejects_bad_strings() {
        assert_eq!(
            Rle::from_counts_string("9 2", 4, 5),
            Err(RleError::BadChar(' '))
        );
        assert!(matches!(
            Rle::from_counts_string("92", 4, 5),
            Err(RleError::Size { .. })
        ));
    }
}
