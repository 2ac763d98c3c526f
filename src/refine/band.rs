//! What one band of rows of a mean-field pass reads and writes: shared by the portable pass
//! (`crf`) and the AVX2 one (`avx2`).

use super::grid::Grid;
use super::lattice::Lattice;
use crate::frame::ScoreKind;

/// Smallest probability a unary reads: `-ln` of it bounds the unary (as densecrf's
/// `unary_from_softmax` clips).
pub const CLIP: f32 = 1e-5;

/// Value of padding lanes in the unary rows: never the maximum, exponentiates to zero.
pub(crate) const PAD: f32 = -1e30;

/// The kernels a pass slices (from pass 1: the grid's blurred cells and the lattice's
/// blurred vertex rows) and splats into.
pub(crate) struct Kernels<'a> {
    pub(crate) w: usize,
    pub(crate) cp: usize,
    pub(crate) classes: usize,
    pub(crate) grid: Option<(&'a Grid, &'a [f32])>,
    pub(crate) lattice: Option<(&'a Lattice, &'a [f32])>,
}

/// Writes the class scores of image row `y`, columns `xs`, into `rows`: one row of `cp`
/// lanes per pixel, class `c` in lane `c`; the padding lanes are the fill's to leave or to
/// zero (pass 0 sets them before it reads them). Called as `fill(y, xs, rows, cp)`.
pub(crate) type Fill<'a> = dyn Fn(usize, std::ops::Range<usize>, &mut [f32], usize) + Sync + 'a;

/// Pass 0's input: how each image row's scores are written, and what they hold.
pub(crate) type FirstPass<'a> = Option<(&'a Fill<'a>, ScoreKind)>;

/// Pixels a fill writes at once: their rows stay in L1 while the class planes are read.
pub(crate) const FILL_RUN: usize = 64;

/// Pass 0's first step for image row `y`: its scores written into `row` (one image row of
/// pixels of `cp` lanes), a run of pixels at a time.
pub(crate) fn fill_row(fill: &Fill, y: usize, row: &mut [f32], cp: usize) {
    for (r, part) in row.chunks_mut(FILL_RUN * cp).enumerate() {
        let x0 = r * FILL_RUN;
        fill(y, x0..x0 + part.len() / cp, part, cp);
    }
}

/// Where a band puts each pixel's new `Q`.
pub(crate) struct Sink<'a> {
    /// The band's rows of `Q`, when the lattice splats in a pass of its own.
    pub(crate) q: Option<&'a mut [f32]>,
    /// The band's copy of the grid cells, and the offset of its first cell in the grid.
    pub(crate) cells: Option<(&'a mut [f32], usize)>,
    /// The band's copy of the lattice's vertex rows.
    pub(crate) vertices: Option<&'a mut [f32]>,
    /// After the last pass: the band's part of each class plane, and its labels.
    pub(crate) last: Option<(Vec<&'a mut [f32]>, &'a mut [u8])>,
    /// The band's settled pixels (1 each, else 0), when the CRF settles any: a settled
    /// pixel is skipped, its final `Q` in its `base` row, its splats in the frozen
    /// buffers (or kept where nothing clears them: the exact grid's cells, stored `Q`
    /// rows).
    pub(crate) settled: Option<&'a mut [u8]>,
    /// Whether pixels settled in earlier passes (from pass 2 on): `settled` is read.
    pub(crate) skip: bool,
    /// This pass settles each pixel whose largest probability exceeds this.
    pub(crate) settle: Option<f32>,
    /// Where a pixel settling in this pass splats instead: the band's frozen grid cells
    /// (at `cells`'s offset) and vertex rows, which every later pass's sum adds in.
    pub(crate) frozen_cells: Option<&'a mut [f32]>,
    pub(crate) frozen_vertices: Option<&'a mut [f32]>,
}

impl Sink<'_> {
    /// Whether pixel `j` of the band has settled.
    #[inline(always)]
    pub(crate) fn is_settled(&self, j: usize) -> bool {
        self.skip && self.settled.as_ref().is_some_and(|s| s[j] != 0)
    }
}
