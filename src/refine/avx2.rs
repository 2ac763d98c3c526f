//! One band of a mean-field pass for rows of one to four eight-lane blocks (up to 32
//! classes), with every pixel's row held in AVX2 registers from the slice through the
//! softmax to the splat. The portable version in `crf` keeps the row in memory, where each
//! step waits on the store of the step before it.

use std::arch::x86_64::*;

use super::band::{fill_row, FirstPass, Kernels, Sink, CLIP, PAD};
use super::grid::Corners;
use super::lanes::{exp8, ln8};
use crate::frame::ScoreKind;

/// The largest lane, in every lane.
#[inline(always)]
unsafe fn hmax(v: __m256) -> __m256 {
    let t = _mm256_max_ps(v, _mm256_permute2f128_ps::<1>(v, v));
    let t = _mm256_max_ps(t, _mm256_permute_ps::<0b01_00_11_10>(t));
    _mm256_max_ps(t, _mm256_permute_ps::<0b10_11_00_01>(t))
}

/// The sum of the lanes, in every lane.
#[inline(always)]
unsafe fn hsum(v: __m256) -> __m256 {
    let t = _mm256_add_ps(v, _mm256_permute2f128_ps::<1>(v, v));
    let t = _mm256_add_ps(t, _mm256_permute_ps::<0b01_00_11_10>(t));
    _mm256_add_ps(t, _mm256_permute_ps::<0b10_11_00_01>(t))
}

/// `acc += w * row` for a row of `B` blocks.
#[inline(always)]
unsafe fn gather<const B: usize>(acc: &mut [__m256; B], w: f32, row: &[f32]) {
    let (w, row) = (_mm256_set1_ps(w), row[..8 * B].as_ptr());
    for (b, acc) in acc.iter_mut().enumerate() {
        *acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(row.add(8 * b)), *acc);
    }
}

/// `row += w * p` for a row of `B` blocks.
#[inline(always)]
unsafe fn scatter<const B: usize>(row: &mut [f32], w: f32, p: &[__m256; B]) {
    let (w, row) = (_mm256_set1_ps(w), row[..8 * B].as_mut_ptr());
    for (b, p) in p.iter().enumerate() {
        let v = _mm256_fmadd_ps(w, *p, _mm256_loadu_ps(row.add(8 * b)));
        _mm256_storeu_ps(row.add(8 * b), v);
    }
}

/// `softmax(x)` over `B` blocks, padding lanes (outside `mask` in the last block) 0.
///
/// `-U ≤ 0` and the messages are small, so `e^x` cannot overflow as long as no lane
/// exceeds 80: then no maximum is subtracted, which takes a horizontal reduction off the
/// critical path. Otherwise (very large kernel weights) the maximum is subtracted.
#[inline(always)]
unsafe fn softmax<const B: usize>(mut x: [__m256; B], mask: __m256) -> [__m256; B] {
    let limit = _mm256_set1_ps(80.0);
    let mut over = _mm256_cmp_ps::<_CMP_GT_OQ>(x[0], limit);
    for v in &x[1..] {
        over = _mm256_or_ps(over, _mm256_cmp_ps::<_CMP_GT_OQ>(*v, limit));
    }
    if _mm256_movemask_ps(over) != 0 {
        let mut m = x[0];
        for v in &x[1..] {
            m = _mm256_max_ps(m, *v);
        }
        let m = hmax(m);
        for v in x.iter_mut() {
            *v = _mm256_sub_ps(*v, m);
        }
    }
    let mut sum = _mm256_setzero_ps();
    for (bk, v) in x.iter_mut().enumerate() {
        *v = exp8(*v);
        if bk == B - 1 {
            *v = _mm256_and_ps(*v, mask);
        }
        sum = _mm256_add_ps(sum, *v);
    }
    let inv = _mm256_div_ps(_mm256_set1_ps(1.0), hsum(sum));
    for v in x.iter_mut() {
        *v = _mm256_mul_ps(*v, inv);
    }
    x
}

/// `-U` from a row of class scores: `ln max(p, CLIP)` of the probabilities (of the
/// softmax, for logits), padding lanes (outside `mask` in the last block) [`PAD`].
#[inline(always)]
unsafe fn unary<const B: usize>(mut x: [__m256; B], mask: __m256, kind: ScoreKind) -> [__m256; B] {
    let pad = _mm256_set1_ps(PAD);
    x[B - 1] = _mm256_blendv_ps(pad, x[B - 1], mask);
    match kind {
        ScoreKind::Logits => {
            let mut m = x[0];
            for v in &x[1..] {
                m = _mm256_max_ps(m, *v);
            }
            let m = hmax(m);
            let mut sum = _mm256_setzero_ps();
            for v in &x {
                sum = _mm256_add_ps(sum, exp8(_mm256_sub_ps(*v, m)));
            }
            let lse = _mm256_add_ps(m, ln8(hsum(sum)));
            let floor = _mm256_set1_ps(CLIP.ln());
            for v in x.iter_mut() {
                *v = _mm256_max_ps(_mm256_sub_ps(*v, lse), floor);
            }
        }
        ScoreKind::Probabilities => {
            let (lo, hi) = (_mm256_set1_ps(CLIP), _mm256_set1_ps(1.0));
            for v in x.iter_mut() {
                *v = ln8(_mm256_min_ps(_mm256_max_ps(*v, lo), hi));
            }
        }
    }
    x[B - 1] = _mm256_blendv_ps(pad, x[B - 1], mask);
    x
}

/// The first lane holding the row's largest value (ties to the lower class; padding lanes
/// hold 0, below every probability the softmax leaves).
#[inline(always)]
unsafe fn first_max<const B: usize>(p: &[__m256; B]) -> u8 {
    let mut m = p[0];
    for v in &p[1..] {
        m = _mm256_max_ps(m, *v);
    }
    let m = hmax(m);
    for (bk, v) in p.iter().enumerate() {
        let hit = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(*v, m));
        if hit != 0 {
            return (8 * bk) as u8 + hit.trailing_zeros() as u8;
        }
    }
    0
}

/// A pixel's place: its index, grid cells and weights.
struct At {
    j: usize,
    i: usize,
    corners: Option<Corners>,
}

/// Pixels are visited in order: the position advances without a division.
struct Walk {
    x: usize,
    y: usize,
}

impl Walk {
    /// Pixel `j` of the band (the next one in order).
    #[inline(always)]
    fn at(&mut self, k: &Kernels, j: usize) -> At {
        let a = At {
            j,
            i: self.y * k.w + self.x,
            corners: k.grid.map(|(g, _)| g.corners(self.x, self.y, k.cp)),
        };
        self.skip(k);
        a
    }

    /// Passes over the next pixel (a settled one: nothing of its place is needed).
    #[inline(always)]
    fn skip(&mut self, k: &Kernels) {
        self.x += 1;
        if self.x == k.w {
            (self.x, self.y) = (0, self.y + 1);
        }
    }
}

/// Pass 0: `-U` from the pixel's scores (written into `base` by the fill, replaced by
/// `-U`); later passes: `-U` plus the sliced messages. Then the softmax.
#[inline(always)]
unsafe fn row<const B: usize>(
    k: &Kernels,
    scores: FirstPass,
    mask: __m256,
    base: &mut [f32],
    a: &At,
) -> [__m256; B] {
    let cp = k.cp;
    let mut acc = [_mm256_setzero_ps(); B];
    let mut acc2 = [_mm256_setzero_ps(); B];
    if let Some((_, kind)) = scores {
        let b = base[..cp].as_mut_ptr();
        for (bk, v) in acc2.iter_mut().enumerate() {
            *v = _mm256_loadu_ps(b.add(8 * bk));
        }
        let u = unary::<B>(acc2, mask, kind);
        for (bk, u) in u.iter().enumerate() {
            _mm256_storeu_ps(b.add(8 * bk), *u);
        }
        acc2 = [_mm256_setzero_ps(); B];
    } else {
        if let (Some((g, cells)), Some(c)) = (k.grid, &a.corners) {
            let post = g.weight() * c.norm;
            for &(at, wgt) in c.cells() {
                gather::<B>(&mut acc, wgt * post, &cells[at..]);
            }
        }
        if let Some((l, values)) = k.lattice {
            let dp1 = l.dim() + 1;
            let post = l.post[a.i];
            let vertices = &l.offset[a.i * dp1..a.i * dp1 + dp1];
            for (&o, &bary) in vertices.iter().zip(&l.bary[a.i * dp1..]) {
                gather::<B>(&mut acc2, bary * post, &values[o as usize * cp..]);
            }
        }
    }
    let b = base[..cp].as_ptr();
    for (bk, (v, v2)) in acc.iter_mut().zip(&acc2).enumerate() {
        *v = _mm256_add_ps(_mm256_add_ps(*v, *v2), _mm256_loadu_ps(b.add(8 * bk)));
    }
    softmax::<B>(acc, mask)
}

/// After the last pass: rows of Q gathered for a run of pixels, then written to each
/// class plane as one run (19 interleaved single-float streams choke the write buffers).
const RUN: usize = 64;

/// A run's rows of Q and their labels, and how many it holds.
struct Tile {
    q: [[f32; 32]; RUN],
    labels: [u8; RUN],
    held: usize,
}

impl Tile {
    /// Writes the run that ends before pixel `end` to the class planes and labels.
    fn flush(&mut self, sink: &mut Sink, end: usize) {
        let (first, held) = (end - self.held, self.held);
        if let Some((planes, labels)) = &mut sink.last {
            for (l, plane) in planes.iter_mut().enumerate() {
                for (o, t) in plane[first..first + held].iter_mut().zip(&self.q) {
                    *o = t[l];
                }
            }
            labels[first..first + held].copy_from_slice(&self.labels[..held]);
        }
        self.held = 0;
    }
}

/// Where the pixel's new `Q` (`p`) goes: its stored row, the grid's cells, the lattice's
/// vertex rows (the frozen buffers instead when it `settles`), and after the last pass
/// the class planes and labels.
#[inline(always)]
unsafe fn emit<const B: usize>(
    k: &Kernels,
    sink: &mut Sink,
    tile: &mut Tile,
    a: &At,
    p: &[__m256; B],
    settles: bool,
) {
    let (j, cp) = (a.j, k.cp);
    if let Some(q) = &mut sink.q {
        for (bk, p) in p.iter().enumerate() {
            _mm256_storeu_ps(q[j * cp..j * cp + cp].as_mut_ptr().add(8 * bk), *p);
        }
    }
    let from = sink.cells.as_ref().map(|c| c.1);
    if let (true, Some(into), Some(c), Some(from)) =
        (settles, &mut sink.frozen_cells, &a.corners, from)
    {
        for &(at, wgt) in c.cells() {
            scatter::<B>(&mut into[at - from..], wgt * c.norm, p);
        }
    } else if let (Some((into, from)), Some(c)) = (&mut sink.cells, &a.corners) {
        match c.single() {
            Some(at) => {
                let (n, row) = (
                    _mm256_set1_ps(c.norm),
                    into[at - *from..][..cp].as_mut_ptr(),
                );
                for (b, p) in p.iter().enumerate() {
                    _mm256_storeu_ps(row.add(8 * b), _mm256_mul_ps(n, *p));
                }
            }
            None => {
                for &(at, wgt) in c.cells() {
                    scatter::<B>(&mut into[at - *from..], wgt * c.norm, p);
                }
            }
        }
    }
    let vertices_into = match &mut sink.frozen_vertices {
        Some(frozen) if settles => Some(frozen),
        _ => sink.vertices.as_mut(),
    };
    if let (Some(into), Some((l, _))) = (vertices_into, k.lattice) {
        let dp1 = l.dim() + 1;
        let pre = l.pre[a.i];
        let vertices = &l.offset[a.i * dp1..a.i * dp1 + dp1];
        for (&o, &bary) in vertices.iter().zip(&l.bary[a.i * dp1..]) {
            scatter::<B>(&mut into[o as usize * cp..], bary * pre, p);
        }
    }
    output(sink, tile, j, p);
}

/// After the last pass: pixel `j`'s final `Q` (`p`) and its label into the tile.
#[inline(always)]
unsafe fn output<const B: usize>(sink: &mut Sink, tile: &mut Tile, j: usize, p: &[__m256; B]) {
    if sink.last.is_some() {
        for (bk, p) in p.iter().enumerate() {
            _mm256_storeu_ps(tile.q[tile.held].as_mut_ptr().add(8 * bk), *p);
        }
        tile.labels[tile.held] = first_max::<B>(p);
        tile.held += 1;
        if tile.held == RUN {
            tile.flush(sink, j + 1);
        }
    }
}

/// Whether the pixel settles in this pass: its largest probability exceeds the pass's
/// threshold. Then its `Q` (`p`) goes into its row of `base`, which later passes read
/// instead of computing it.
#[inline(always)]
unsafe fn settles<const B: usize>(
    sink: &mut Sink,
    j: usize,
    p: &[__m256; B],
    base: &mut [f32],
) -> bool {
    let Some(t) = sink.settle else {
        return false;
    };
    let t = _mm256_set1_ps(t);
    let mut over = _mm256_cmp_ps::<_CMP_GT_OQ>(p[0], t);
    for v in &p[1..] {
        over = _mm256_or_ps(over, _mm256_cmp_ps::<_CMP_GT_OQ>(*v, t));
    }
    if _mm256_movemask_ps(over) == 0 {
        return false;
    }
    if let Some(s) = &mut sink.settled {
        s[j] = 1;
    }
    let b = base[..8 * B].as_mut_ptr();
    for (bk, p) in p.iter().enumerate() {
        _mm256_storeu_ps(b.add(8 * bk), *p);
    }
    true
}

/// A settled pixel: skipped, but after the last pass its final `Q` (its row) is output.
#[inline(always)]
unsafe fn settled<const B: usize>(sink: &mut Sink, tile: &mut Tile, j: usize, base: &[f32]) {
    if sink.last.is_some() {
        let b = base[..8 * B].as_ptr();
        let p: [__m256; B] = std::array::from_fn(|bk| _mm256_loadu_ps(b.add(8 * bk)));
        output(sink, tile, j, &p);
    }
}

/// The next pixel (`j`) on its own: settled, or sliced, emitted and perhaps settled.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn single<const B: usize>(
    k: &Kernels,
    scores: FirstPass,
    mask: __m256,
    sink: &mut Sink,
    tile: &mut Tile,
    walk: &mut Walk,
    base: &mut [f32],
    j: usize,
) {
    if sink.is_settled(j) {
        walk.skip(k);
        settled::<B>(sink, tile, j, base);
        return;
    }
    let a = walk.at(k, j);
    let p = row::<B>(k, scores, mask, base, &a);
    let s = settles(sink, j, &p, base);
    emit(k, sink, tile, &a, &p, s);
}

/// See [`super::crf`]'s portable band: the same pass, for `cp == 8 * B`. Pixels go in
/// pairs, both slices and softmaxes before either splat, so the two pixels' long chains of
/// dependent operations overlap. The steps are functions inlined into this one (closures
/// called from three places were not: each pixel's row then went through the stack).
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn band<const B: usize>(
    k: &Kernels,
    y0: usize,
    scores: FirstPass,
    base: &mut [f32],
    mut sink: Sink,
) {
    let (w, cp, classes) = (k.w, k.cp, k.classes);
    debug_assert_eq!(cp, 8 * B);
    // The lanes of the last block that hold classes.
    let live = classes - 8 * (B - 1);
    let lanes: [i32; 8] = std::array::from_fn(|l| if l < live { -1 } else { 0 });
    let mask = _mm256_castsi256_ps(_mm256_loadu_si256(lanes.as_ptr().cast()));
    let mut walk = Walk { x: 0, y: y0 };
    let mut tile = Tile {
        q: [[0f32; 32]; RUN],
        labels: [0; RUN],
        held: 0,
    };
    let mut j = 0;
    for (r, line) in base.chunks_exact_mut(w * cp).enumerate() {
        if let Some((fill, _)) = scores {
            fill_row(fill, y0 + r, line, cp);
        }
        let mut rows = line.chunks_exact_mut(2 * cp);
        for pair in &mut rows {
            let (r0, r1) = pair.split_at_mut(cp);
            if sink.is_settled(j) || sink.is_settled(j + 1) {
                single::<B>(k, scores, mask, &mut sink, &mut tile, &mut walk, r0, j);
                single::<B>(k, scores, mask, &mut sink, &mut tile, &mut walk, r1, j + 1);
            } else {
                let (a0, a1) = (walk.at(k, j), walk.at(k, j + 1));
                let (p0, p1) = (
                    row::<B>(k, scores, mask, r0, &a0),
                    row::<B>(k, scores, mask, r1, &a1),
                );
                let (s0, s1) = (
                    settles(&mut sink, a0.j, &p0, r0),
                    settles(&mut sink, a1.j, &p1, r1),
                );
                emit(k, &mut sink, &mut tile, &a0, &p0, s0);
                emit(k, &mut sink, &mut tile, &a1, &p1, s1);
            }
            j += 2;
        }
        let rest = rows.into_remainder();
        if !rest.is_empty() {
            single::<B>(k, scores, mask, &mut sink, &mut tile, &mut walk, rest, j);
            j += 1;
        }
    }
    if tile.held > 0 {
        tile.flush(&mut sink, j);
    }
}
