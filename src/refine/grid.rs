//! The smoothness kernel on a regular coarse grid: splat, blur, slice, as the permutohedral
//! lattice does, but on a grid whose cells are known in advance.
//!
//! densecrf filters the position-only kernel on a permutohedral lattice, whose impulse
//! response spreads with a standard deviation of `sxy` pixels along each axis. Building that
//! lattice costs a hash lookup per pixel and slicing it a gather from scattered vertex rows.
//! Here pixels are splatted bilinearly onto a grid with one cell per `sxy` pixels, the cells
//! are blurred with a short sampled Gaussian, and values are sliced back bilinearly. The
//! blur's width is chosen so that splat, blur and slice together spread exactly as far as
//! the lattice's kernel (a variance of `sxy²`). Every step is separable, so the symmetric
//! normalization `(K 1)^-1/2` is a column factor times a row factor, computed in one
//! dimension.

use rayon::prelude::*;

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
    fn new(len: usize, spacing: f32, taps: &[f32]) -> Axis {
        let (mut cell, mut frac) = (Vec::with_capacity(len), Vec::with_capacity(len));
        for x in 0..len {
            let u = x as f32 / spacing;
            let c = u.floor();
            cell.push(c as u32);
            frac.push(u - c);
        }
        let cells = cell.last().map_or(1, |&c| c as usize + 2);
        // K 1 along the axis: splat ones, blur, slice.
        let mut splat = vec![0f32; cells];
        for (&c, &f) in cell.iter().zip(&frac) {
            splat[c as usize] += 1.0 - f;
            splat[c as usize + 1] += f;
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
                let k1 = (1.0 - f) * blurred[c as usize] + f * blurred[c as usize + 1];
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
/// taps out to three deviations.
fn sampled(s: f32) -> (f32, Vec<f32>) {
    let r = (3.0 * s).ceil().max(1.0) as usize;
    let taps: Vec<f32> = (0..=r)
        .map(|k| (-((k * k) as f32) / (2.0 * s * s)).exp())
        .collect();
    let total = taps[0] + 2.0 * taps[1..].iter().sum::<f32>();
    let var = 2.0 * (1..=r).map(|k| taps[k] * (k * k) as f32).sum::<f32>() / total;
    (var, taps)
}

/// A Gaussian position kernel with symmetric normalization, for one frame size.
pub struct Grid {
    x: Axis,
    y: Axis,
    /// The cell blur, `taps[k]` for offsets `±k`.
    taps: Vec<f32>,
    /// Potts weight.
    weight: f32,
}

impl Grid {
    pub fn new(width: usize, height: usize, sxy: f32, weight: f32) -> Grid {
        // One cell per standard deviation: the bilinear splat and slice each spread by a
        // variance of spacing²/6, the blur adds the rest, 2/3 of a cell squared. Its
        // deviation is found by bisection, as a sampled Gaussian's variance is not σ².
        // Kernels narrower than half a pixel keep cells of half a pixel (and spread a little
        // wider than asked).
        let spacing = sxy.max(0.5);
        let want = (sxy / spacing).powi(2) - 1.0 / 3.0;
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
            x: Axis::new(width, spacing, &taps),
            y: Axis::new(height, spacing, &taps),
            taps,
            weight,
        }
    }

    /// Cells, as rows of `cp` values: `cells_x * cells_y * cp` floats.
    pub(crate) fn len(&self, cp: usize) -> usize {
        self.x.cells * self.y.cells * cp
    }

    /// The first of the two cell rows pixel row `y` splats into.
    pub(crate) fn cell_row(&self, y: usize) -> usize {
        self.y.cell[y] as usize
    }

    /// Floats in one row of cells.
    pub(crate) fn row_len(&self, cp: usize) -> usize {
        self.x.cells * cp
    }

    /// Pixel `(x, y)`'s four cells (offsets of their rows in a cell buffer) and weights,
    /// and its normalization.
    #[inline(always)]
    pub(crate) fn corners(&self, x: usize, y: usize, cp: usize) -> ([(usize, f32); 4], f32) {
        let (cx, fx) = (self.x.cell[x] as usize, self.x.frac[x]);
        let (cy, fy) = (self.y.cell[y] as usize, self.y.frac[y]);
        let cw = self.x.cells;
        let at = (cy * cw + cx) * cp;
        let below = cw * cp;
        (
            [
                (at, (1.0 - fx) * (1.0 - fy)),
                (at + cp, fx * (1.0 - fy)),
                (at + below, (1.0 - fx) * fy),
                (at + below + cp, fx * fy),
            ],
            self.x.norm[x] * self.y.norm[y],
        )
    }

    /// The kernel's Potts weight.
    #[inline(always)]
    pub(crate) fn weight(&self) -> f32 {
        self.weight
    }

    /// Blurs the cells in `values` along both axes (zero beyond the grid); `scratch` is
    /// working space.
    pub(crate) fn blur(&self, values: &mut [f32], scratch: &mut Vec<f32>, cp: usize) {
        let (cw, ch) = (self.x.cells, self.y.cells);
        scratch.resize(values.len(), 0.0);
        let r = self.taps.len() - 1;
        let taps = &self.taps;
        // Along x: each cell row independently.
        let src = &values[..];
        scratch
            .par_chunks_mut(cw * cp)
            .enumerate()
            .for_each(|(row, out)| {
                let base = row * cw * cp;
                for (i, o) in out.chunks_exact_mut(cp).enumerate() {
                    let lo = i.saturating_sub(r);
                    let count = (i + r).min(cw - 1) + 1 - lo;
                    let src = src[base..].as_ptr();
                    // SAFETY: cells lo..lo + count lie in this cell row.
                    unsafe {
                        super::lanes::sum(
                            count,
                            |e| (src.add((lo + e) * cp), taps[(lo + e).abs_diff(i)]),
                            cp,
                            o,
                        )
                    };
                }
            });
        // Along y: each output row from the rows within reach.
        let src = &scratch[..];
        values
            .par_chunks_mut(cw * cp)
            .enumerate()
            .for_each(|(row, out)| {
                let lo = row.saturating_sub(r);
                let count = (row + r).min(ch - 1) + 1 - lo;
                for (i, o) in out.chunks_exact_mut(cp).enumerate() {
                    let src = src.as_ptr();
                    // SAFETY: rows lo..lo + count are grid rows, cell i inside each.
                    unsafe {
                        super::lanes::sum(
                            count,
                            |e| {
                                (
                                    src.add(((lo + e) * cw + i) * cp),
                                    taps[(lo + e).abs_diff(row)],
                                )
                            },
                            cp,
                            o,
                        )
                    };
                }
            });
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
        for s in [1.5f32, 3.0, 5.0] {
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
                let (corners, _) = g.corners(p.0, p.1, 1);
                for (at, wgt) in corners {
                    cells[at] += wgt;
                }
                let mut scratch = Vec::new();
                g.blur_scalar(&mut cells, &mut scratch);
                let resp: Vec<f32> = (0..w * h)
                    .map(|i| {
                        let (c, _) = g.corners(i % w, i / w, 1);
                        c.iter().map(|&(at, wgt)| wgt * cells[at]).sum()
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
                let (c, _) = g.corners(x, y, 1);
                for (at, wgt) in c {
                    cells[at] += wgt;
                }
            }
        }
        let mut scratch = Vec::new();
        g.blur_scalar(&mut cells, &mut scratch);
        for (x, y) in [(0, 0), (20, 15), (39, 29), (5, 22)] {
            let (c, n) = g.corners(x, y, 1);
            let k1: f32 = c.iter().map(|&(at, wgt)| wgt * cells[at]).sum();
            assert!((n - 1.0 / k1.sqrt()).abs() < 1e-4 * n, "({x}, {y})");
        }
    }

    impl Grid {
        fn blur_scalar(&self, cells: &mut [f32], scratch: &mut Vec<f32>) {
            // cp = 1 is not a whole block; pad each cell to 8 lanes.
            let mut wide: Vec<f32> = cells
                .iter()
                .flat_map(|&v| [v, 0., 0., 0., 0., 0., 0., 0.])
                .collect();
            self.blur(&mut wide, scratch, 8);
            for (c, w) in cells.iter_mut().zip(wide.chunks_exact(8)) {
                *c = w[0];
            }
        }
    }
}
