//! The smoothness kernel on a regular coarse grid: splat, blur, slice, as the permutohedral
//! lattice does, but on a grid whose cells are known in advance.
//!
//! densecrf filters the position-only kernel on a permutohedral lattice, whose impulse
//! response spreads with a standard deviation of `sxy` pixels along each axis. Building that
//! lattice costs a hash lookup per pixel and slicing it a gather from scattered vertex rows.
//! Here pixels are splatted bilinearly onto a grid with one cell per `sxy` pixels, the cells
//! are blurred with a short sampled Gaussian, and values are sliced back bilinearly. The
//! blur's width is chosen so that splat, blur and slice together spread exactly as far as
//! the lattice's kernel (a variance of `sxy²`). A kernel narrower than a pixel (the CRF at
//! reduced scale) gets one cell per pixel instead, and the blur alone spreads it: each
//! pixel is its own cell, so a pass writes cells rather than adds to them, and no copies
//! per band are needed. Every step is separable, so the symmetric
//! normalization `(K 1)^-1/2` is a column factor times a row factor, computed in one
//! dimension.

use rayon::prelude::*;

use super::lanes::sum_into;
use super::lattice::refill;

/// One axis of the grid: per pixel, its cell and the weight of the next cell.
struct Axis {
    cell: Vec<u32>,
    frac: Vec<f32>,
    /// Cells along the axis.
    cells: usize,
    /// Per pixel, `(K 1)^-1/2` along this axis.
    norm: Vec<f32>,
}

impl Axis {
    /// `exact`: pixels sit on cells (spacing 1), and the axis has one cell per pixel.
    fn new(len: usize, spacing: f32, taps: &[f32], exact: bool) -> Axis {
        let (mut cell, mut frac) = (Vec::with_capacity(len), Vec::with_capacity(len));
        for x in 0..len {
            let u = x as f32 / spacing;
            let c = u.floor();
            cell.push(c as u32);
            frac.push(u - c);
        }
        let cells = match exact {
            true => len.max(1),
            false => cell.last().map_or(1, |&c| c as usize + 2),
        };
        // K 1 along the axis: splat ones, blur, slice.
        let mut splat = vec![0f32; cells];
        for (&c, &f) in cell.iter().zip(&frac) {
            splat[c as usize] += 1.0 - f;
            if f > 0.0 {
                splat[c as usize + 1] += f;
            }
        }
        let r = taps.len() - 1;
        let blurred: Vec<f32> = (0..cells)
            .map(|i| {
                let (lo, hi) = (i.saturating_sub(r), (i + r).min(cells - 1));
                (lo..=hi).map(|j| taps[i.abs_diff(j)] * splat[j]).sum()
            })
            .collect();
        let norm = cell
            .iter()
            .zip(&frac)
            .map(|(&c, &f)| {
                let next = if f > 0.0 {
                    blurred[c as usize + 1]
                } else {
                    0.0
                };
                let k1 = (1.0 - f) * blurred[c as usize] + f * next;
                1.0 / (k1 + 1e-20).sqrt()
            })
            .collect();
        Axis {
            cell,
            frac,
            cells,
            norm,
        }
    }
}

/// The spread of a sampled Gaussian of deviation `s` (cells), normalized: its variance and
/// its taps, as far as they are at least 1/1000 of the centre's (`e^(-k²/2s²) ≥ 10^-3`).
fn sampled(s: f32) -> (f32, Vec<f32>) {
    let r = ((2.0 * 1000f32.ln()).sqrt() * s).floor().max(1.0) as usize;
    let taps: Vec<f32> = (0..=r)
        .map(|k| (-((k * k) as f32) / (2.0 * s * s)).exp())
        .collect();
    let total = taps[0] + 2.0 * taps[1..].iter().sum::<f32>();
    let var = 2.0 * (1..=r).map(|k| taps[k] * (k * k) as f32).sum::<f32>() / total;
    (var, taps)
}

/// A pixel's cells: the offsets of their rows in a cell buffer and their weights (the first
/// `count` of four; one where pixels sit on cells), and the pixel's normalization.
#[derive(Clone, Copy)]
pub(crate) struct Corners {
    cells: [(usize, f32); 4],
    count: usize,
    pub(crate) norm: f32,
}

impl Corners {
    #[inline(always)]
    pub(crate) fn cells(&self) -> &[(usize, f32)] {
        &self.cells[..self.count]
    }

    /// The pixel's one cell, on an exact grid ([`Grid::exact`]).
    #[inline(always)]
    pub(crate) fn single(&self) -> Option<usize> {
        (self.count == 1).then_some(self.cells[0].0)
    }
}

/// A Gaussian position kernel with symmetric normalization, for one frame size.
pub struct Grid {
    x: Axis,
    y: Axis,
    /// The cell blur, `taps[k]` for offsets `±k`.
    taps: Vec<f32>,
    /// Potts weight.
    weight: f32,
    /// Whether pixels sit on cells (one cell per pixel): a pixel then splats into one cell.
    exact: bool,
}

impl Grid {
    pub fn new(width: usize, height: usize, sxy: f32, weight: f32) -> Grid {
        // One cell per standard deviation, or per pixel for kernels narrower than a pixel
        // (a CRF at reduced scale; finer cells would outnumber the pixels they filter).
        // The bilinear splat and the slice each spread a pixel at fraction f of a cell by
        // a variance of f(1 - f) cells² (1/6 on average when fractions are spread evenly,
        // nothing where pixels sit on cells); the blur adds the rest, found by bisection
        // as a sampled Gaussian's variance is not σ².
        let spacing = sxy.max(1.0);
        let exact = spacing == 1.0;
        let along = width.max(height).max(1);
        let spread = (0..along)
            .map(|x| {
                let u = x as f32 / spacing;
                let f = u - u.floor();
                f * (1.0 - f)
            })
            .sum::<f32>()
            / along as f32;
        let want = (sxy / spacing).powi(2) - 2.0 * spread;
        let (mut lo, mut hi) = (0.05f32, 2.0f32);
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if sampled(mid).0 < want {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let taps = match want > 0.0 {
            true => sampled(0.5 * (lo + hi)).1,
            false => vec![1.0],
        };
        Grid {
            x: Axis::new(width, spacing, &taps, exact),
            y: Axis::new(height, spacing, &taps, exact),
            taps,
            weight,
            exact,
        }
    }

    /// Cells, as rows of `cp` values: `cells_x * cells_y * cp` floats.
    pub(crate) fn len(&self, cp: usize) -> usize {
        self.x.cells * self.y.cells * cp
    }

    /// The cell rows band `b` of `band_rows` pixel rows splats into, `c0..c1`: from its
    /// first row's first cell row to its last row's second.
    fn band_cells(&self, b: usize, band_rows: usize) -> (usize, usize) {
        let h = self.y.cell.len();
        let (y0, y1) = (b * band_rows, ((b + 1) * band_rows).min(h));
        (self.y.cell[y0] as usize, self.y.cell[y1 - 1] as usize + 2)
    }

    /// Floats in one row of cells.
    pub(crate) fn row_len(&self, cp: usize) -> usize {
        self.x.cells * cp
    }

    /// Pixel `(x, y)`'s cells for rows of `cp` values.
    #[inline(always)]
    pub(crate) fn corners(&self, x: usize, y: usize, cp: usize) -> Corners {
        let (cx, fx) = (self.x.cell[x] as usize, self.x.frac[x]);
        let (cy, fy) = (self.y.cell[y] as usize, self.y.frac[y]);
        let cw = self.x.cells;
        let at = (cy * cw + cx) * cp;
        let below = cw * cp;
        Corners {
            cells: [
                (at, (1.0 - fx) * (1.0 - fy)),
                (at + cp, fx * (1.0 - fy)),
                (at + below, (1.0 - fx) * fy),
                (at + below + cp, fx * fy),
            ],
            count: if self.exact { 1 } else { 4 },
            norm: self.x.norm[x] * self.y.norm[y],
        }
    }

    /// The kernel's Potts weight.
    #[inline(always)]
    pub(crate) fn weight(&self) -> f32 {
        self.weight
    }

    /// `out` = the cells in `src` blurred along both axes (zero beyond the grid).
    ///
    /// In bands of cell rows, one task each: a band blurs the source rows it reaches along
    /// x into a ring of `2r + 1` rows and sums each output row down from the ring, so the
    /// x-blurred cells stay in cache (a band's first and last `r` rows are x-blurred by
    /// its neighbour too).
    /// `rings` holds each band's ring between calls (every slot is written before it is read).
    pub(crate) fn blur_from(
        &self,
        src: &[f32],
        out: &mut [f32],
        rings: &mut Vec<Vec<f32>>,
        cp: usize,
    ) {
        let (cw, ch) = (self.x.cells, self.y.cells);
        let row_len = cw * cp;
        let r = self.taps.len() - 1;
        let span = 2 * r + 1;
        let taps = &self.taps;
        let bands = (2 * rayon::current_num_threads()).clamp(1, ch);
        let band_rows = ch.div_ceil(bands);
        rings.resize_with(ch.div_ceil(band_rows), Vec::new);
        out[..ch * row_len]
            .par_chunks_mut(band_rows * row_len)
            .zip(rings.par_iter_mut())
            .enumerate()
            .for_each(|(b, (out, ring))| {
                ring.resize(span * row_len, 0.0);
                let mut rows: Vec<(*const f32, f32)> = Vec::with_capacity(span);
                let y0 = b * band_rows;
                // Source rows up to `next` are in the ring, row j in slot j % span.
                let mut next = y0.saturating_sub(r);
                for (k, o) in out.chunks_exact_mut(row_len).enumerate() {
                    let y = y0 + k;
                    let (lo, hi) = (y.saturating_sub(r), (y + r).min(ch - 1));
                    while next <= hi {
                        let slot = &mut ring[(next % span) * row_len..][..row_len];
                        self.blur_row(&src[next * row_len..][..row_len], slot, cp);
                        next += 1;
                    }
                    rows.clear();
                    rows.extend(
                        (lo..=hi)
                            .map(|j| (ring[(j % span) * row_len..].as_ptr(), taps[j.abs_diff(y)])),
                    );
                    // SAFETY: each ring slot holds a whole row of `row_len` floats.
                    unsafe { super::lanes::sum(rows.len(), |e| rows[e], row_len, o) };
                }
            });
    }

    /// `out` = one row of cells blurred along x: cells with every tap inside the row as
    /// one weighted sum of the row shifted by whole cells, the `r` cells at each end one
    /// by one.
    fn blur_row(&self, src: &[f32], out: &mut [f32], cp: usize) {
        let cw = self.x.cells;
        let r = self.taps.len() - 1;
        let taps = &self.taps;
        let from = src.as_ptr();
        let cell = |i: usize, o: &mut [f32]| {
            let lo = i.saturating_sub(r);
            let count = (i + r).min(cw - 1) + 1 - lo;
            // SAFETY: cells lo..lo + count lie in this cell row.
            unsafe {
                super::lanes::sum(
                    count,
                    |e| (from.add((lo + e) * cp), taps[(lo + e).abs_diff(i)]),
                    cp,
                    o,
                )
            };
        };
        if cw <= 2 * r {
            for (i, o) in out.chunks_exact_mut(cp).enumerate() {
                cell(i, o);
            }
            return;
        }
        let (head, rest) = out.split_at_mut(r * cp);
        let (inner, tail) = rest.split_at_mut((cw - 2 * r) * cp);
        for (i, o) in head.chunks_exact_mut(cp).enumerate() {
            cell(i, o);
        }
        // SAFETY: shifted by e cells (e ≤ 2r), the inner run stays inside the row.
        unsafe {
            super::lanes::sum(
                2 * r + 1,
                |e| (from.add(e * cp), taps[e.abs_diff(r)]),
                inner.len(),
                inner,
            )
        };
        for (i, o) in tail.chunks_exact_mut(cp).enumerate() {
            cell(cw - r + i, o);
        }
    }
}

/// What a grid filters with, kept from frame to frame: the cells each band of a pass splats
/// into, their sum, the blurred cells the next pass slices, and the blur's rings.
///
/// On an exact grid the bands write disjoint rows of one shared buffer (each pixel its own
/// cell); otherwise a band's pixels reach into the next band's first cell row, so each band
/// splats into a copy of the cell rows it touches and the copies are summed before the blur.
#[derive(Default)]
pub(crate) struct GridBuffers {
    parts: Vec<Vec<f32>>,
    sum: Vec<f32>,
    cells: Vec<f32>,
    /// The blur's rings, one per band.
    rings: Vec<Vec<f32>>,
    /// Per band, the splats of its settled pixels, which every later pass starts from
    /// (unused on the exact grid, where a skipped pixel's cell keeps its value).
    frozen: Vec<Vec<f32>>,
}

impl GridBuffers {
    /// Zeroed splat buffers for `bands` bands of `band_rows` pixel rows; with `freeze` (the
    /// first pass that settles pixels), zeroed frozen buffers too.
    pub(crate) fn reset(
        &mut self,
        g: &Grid,
        (bands, band_rows, cp): (usize, usize, usize),
        freeze: bool,
    ) {
        if g.exact {
            // Every cell is written by the pass, or keeps its settled pixel's value: no
            // zeroing, no frozen buffers.
            self.parts.resize_with(1, Vec::new);
            self.parts[0].resize(g.len(cp), 0.0);
            return;
        }
        let len = |b: usize| {
            let (c0, c1) = g.band_cells(b, band_rows);
            g.row_len(cp) * (c1 - c0)
        };
        let mut buffers = vec![&mut self.parts];
        if freeze {
            buffers.push(&mut self.frozen);
        }
        for v in buffers {
            v.resize_with(bands, Vec::new);
            v.par_iter_mut()
                .enumerate()
                .for_each(|(b, v)| refill(v, len(b)));
        }
    }

    /// The blurred cells a pass slices, and per band where it splats (after [`Self::reset`]):
    /// its buffer and the offset of the buffer's first value among the grid's cells.
    ///
    /// With `frozen` (a pass that settles pixels, off the exact grid), also each band's
    /// frozen splats.
    #[allow(clippy::type_complexity)]
    pub(crate) fn split(
        &mut self,
        g: &Grid,
        band_rows: usize,
        cp: usize,
        frozen: bool,
    ) -> (&[f32], Vec<(&mut [f32], usize)>, Vec<&mut [f32]>) {
        let frozen = if frozen && !g.exact {
            self.frozen.iter_mut().map(|v| &mut v[..]).collect()
        } else {
            Vec::new()
        };
        let into = if g.exact {
            let band = band_rows * g.row_len(cp);
            (self.parts.iter_mut().take(1))
                .flat_map(|v| v.chunks_mut(band).enumerate())
                .map(|(b, v)| (v, b * band))
                .collect()
        } else {
            (self.parts.iter_mut().enumerate())
                .map(|(b, v)| (&mut v[..], g.band_cells(b, band_rows).0 * g.row_len(cp)))
                .collect()
        };
        (&self.cells, into, frozen)
    }

    /// The splats of a pass, summed over bands (with the frozen ones when `frozen`) and
    /// blurred: what the next pass slices.
    pub(crate) fn blur(&mut self, g: &Grid, band_rows: usize, cp: usize, frozen: bool) {
        self.cells.resize(g.len(cp), 0.0);
        if g.exact {
            g.blur_from(&self.parts[0], &mut self.cells, &mut self.rings, cp);
            return;
        }
        let frozen = if frozen { &self.frozen[..] } else { &[] };
        let parts: Vec<(&[f32], usize)> = (self.parts.iter().enumerate())
            .chain(frozen.iter().enumerate())
            .map(|(b, part)| (&part[..], g.band_cells(b, band_rows).0 * g.row_len(cp)))
            .collect();
        self.sum.resize(g.len(cp), 0.0);
        sum_into(&mut self.sum, &parts);
        g.blur_from(&self.sum, &mut self.cells, &mut self.rings, cp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refine::lattice::Lattice;

    /// Splat, blur and slice on the grid spread as far as densecrf's lattice kernel.
    #[test]
    fn spread_matches_the_lattice() {
        let (w, h) = (96usize, 96usize);
        for s in [0.75f32, 1.0, 1.5, 2.0, 3.0, 5.0] {
            let l = Lattice::new(w * h, 2, |i, f| {
                f[0] = (i % w) as f32 / s;
                f[1] = (i / w) as f32 / s;
            })
            .unwrap();
            let g = Grid::new(w, h, s, 1.0);
            let (mut lv, mut gv) = (0f32, 0f32);
            for p in [(48usize, 48usize), (47, 50), (49, 46)] {
                let mut input = vec![0f32; w * h];
                input[p.1 * w + p.0] = 1.0;
                let out = l.filter_scalar(&input);
                let total: f32 = out.iter().sum();
                lv += (0..w * h)
                    .map(|i| out[i] / total * ((i % w) as f32 - p.0 as f32).powi(2))
                    .sum::<f32>();
                // The grid's response to the same impulse, along x.
                let mut cells = vec![0f32; g.len(1)];
                for &(at, wgt) in g.corners(p.0, p.1, 1).cells() {
                    cells[at] += wgt;
                }
                g.blur_scalar(&mut cells);
                let resp: Vec<f32> = (0..w * h)
                    .map(|i| {
                        let c = g.corners(i % w, i / w, 1);
                        c.cells().iter().map(|&(at, wgt)| wgt * cells[at]).sum()
                    })
                    .collect();
                let total: f32 = resp.iter().sum();
                gv += (0..w * h)
                    .map(|i| resp[i] / total * ((i % w) as f32 - p.0 as f32).powi(2))
                    .sum::<f32>();
            }
            let (ls, gs) = ((lv / 3.0).sqrt(), (gv / 3.0).sqrt());
            assert!(
                (ls - gs).abs() < 0.05 * s,
                "sxy {s}: lattice {ls}, grid {gs}"
            );
        }
    }

    #[test]
    fn normalization_is_one_over_root_of_the_kernel_sum() {
        let g = Grid::new(40, 30, 3.0, 2.0);
        let mut cells = vec![0f32; g.len(1)];
        for y in 0..30 {
            for x in 0..40 {
                for &(at, wgt) in g.corners(x, y, 1).cells() {
                    cells[at] += wgt;
                }
            }
        }
        g.blur_scalar(&mut cells);
        for (x, y) in [(0, 0), (20, 15), (39, 29), (5, 22)] {
            let c = g.corners(x, y, 1);
            let (n, c) = (c.norm, c.cells());
            let k1: f32 = c.iter().map(|&(at, wgt)| wgt * cells[at]).sum();
            assert!((n - 1.0 / k1.sqrt()).abs() < 1e-4 * n, "({x}, {y})");
        }
    }

    impl Grid {
        fn blur_scalar(&self, cells: &mut [f32]) {
            // cp = 1 is not a whole block; pad each cell to 8 lanes.
            let wide: Vec<f32> = cells
                .iter()
                .flat_map(|&v| [v, 0., 0., 0., 0., 0., 0., 0.])
                .collect();
            let mut out = vec![0f32; wide.len()];
            self.blur_from(&wide, &mut out, &mut Vec::new(), 8);
            for (c, w) in cells.iter_mut().zip(out.chunks_exact(8)) {
                *c = w[0];
            }
        }
    }
}
