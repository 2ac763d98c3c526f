//! Blending tile scores back into one label map for the whole frame.
//!
//! Weights come from `TileGrid` and sum to one at every pixel. Where a tile's weight is 1
//! (its core) no other tile contributes, so those pixels are argmaxed straight from the
//! tile's scores; only the blending bands between tiles are accumulated. That keeps the
//! stitch cheap next to inference: most pixels are read once and never written as floats.

use crate::frame::argmax::{argmax_scores, argmax_step, taps, Tap};
use crate::frame::Geometry;
use crate::frame::LabelMap;
use crate::tile::{Blend, Tile, TileGrid};

/// The large buffers of a `Stitch`, kept between frames: first-touching a fresh 19-class
/// accumulator for a 2048x1024 frame costs more than the whole stitch. Between uses the
/// accumulator is all zeros and the mask all false.
#[derive(Default)]
pub struct StitchBuffers {
    acc: Vec<f32>,
    blended: Vec<bool>,
}

/// Accumulates tile scores; `finish` gives the label map at the original frame's size.
pub struct Stitch {
    classes: usize,
    grid: TileGrid,
    blend: Blend,
    /// When the tiled (scaled) frame is the frame itself, core pixels go straight to labels.
    direct: bool,
    /// Labels of the tiled frame (core pixels, when `direct`).
    labels: Vec<u8>,
    /// Weighted scores per class plane; touched only where pixels are blended (or
    /// everywhere when not `direct`).
    acc: Vec<f32>,
    /// Pixels that went through `acc`.
    blended: Vec<bool>,
    geometry: Geometry,
}

/// Disjoint parts of the stitch buffers, starting at frame pixel `base`.
struct View<'a> {
    base: usize,
    labels: &'a mut [u8],
    blended: &'a mut [bool],
    acc: Vec<&'a mut [f32]>,
}

/// Everything about one tile that its rows share.
struct TileCtx<'a> {
    tile: Tile,
    sampler: Sampler<'a>,
    wx: Vec<f32>,
    first: usize,
    last: usize,
    core_x: std::ops::Range<u32>,
    core_y: std::ops::Range<u32>,
    grid: TileGrid,
    blend: Blend,
    classes: usize,
    direct: bool,
    fw: usize,
}

impl TileCtx<'_> {
    fn add_rows(&self, rows: std::ops::Range<u32>, mut v: View<'_>) {
        let (tile, n) = (&self.tile, self.tile.width as usize);
        let mut best = vec![f32::NEG_INFINITY; n];
        let mut arg = vec![0f32; n];
        let mut weights = vec![0f32; n];
        let mut buf = vec![0f32; n];
        for dy in rows {
            let wyv = self.grid.y.weight(tile.row, dy, self.blend);
            if wyv == 0.0 {
                continue;
            }
            let row = (tile.y + dy) as usize * self.fw + tile.x as usize - v.base;
            let direct = if self.direct && self.core_y.contains(&dy) {
                self.core_x.start as usize..self.core_x.end as usize
            } else {
                0..0
            };
            // Everything else with weight goes through the accumulator.
            let blend: [std::ops::Range<usize>; 2] = if direct.is_empty() {
                [self.first..self.last, 0..0]
            } else {
                [self.first..direct.start, direct.end..self.last]
            };
            for (wt, &wxv) in weights.iter_mut().zip(&self.wx) {
                *wt = wyv * wxv;
            }
            for r in &blend {
                v.blended[row + r.start..row + r.end].fill(true);
            }
            best[direct.clone()].fill(f32::NEG_INFINITY);
            arg[direct.clone()].fill(0.0);
            for c in 0..self.classes {
                let src = self.sampler.row(c, dy as usize, n, &mut buf);
                argmax_step(
                    &mut best[direct.clone()],
                    &mut arg[direct.clone()],
                    &src[direct.clone()],
                    c,
                );
                let acc = &mut v.acc[c][row..row + n];
                for r in &blend {
                    let (a, s, wt) = (&mut acc[r.clone()], &src[r.clone()], &weights[r.clone()]);
                    for ((a, &v), &wt) in a.iter_mut().zip(s).zip(wt) {
                        *a += wt * v;
                    }
                }
            }
            let labels = &mut v.labels[row + direct.start..row + direct.end];
            for (l, &a) in labels.iter_mut().zip(&arg[direct.clone()]) {
                *l = a as u8;
            }
        }
    }
}

/// Reads rows of one tile's scores, up-sampling them when the output is smaller.
struct Sampler<'a> {
    scores: &'a [f32],
    h: usize,
    w: usize,
    same: bool,
    ty: Vec<Tap>,
    tx: Vec<Tap>,
}

impl<'a> Sampler<'a> {
    /// Class `c`'s scores for tile row `dy`, columns `0..n`.
    #[inline]
    fn row<'b>(&'b self, c: usize, dy: usize, n: usize, buf: &'b mut [f32]) -> &'b [f32]
    where
        'a: 'b,
    {
        let p = &self.scores[c * self.h * self.w..(c + 1) * self.h * self.w];
        if self.same {
            return &p[dy * self.w..dy * self.w + n];
        }
        let t = self.ty[dy];
        let (r0, r1) = (
            &p[t.i0 * self.w..(t.i0 + 1) * self.w],
            &p[t.i1 * self.w..(t.i1 + 1) * self.w],
        );
        for (out, s) in buf[..n].iter_mut().zip(&self.tx) {
            let top = r0[s.i0] + s.w1 * (r0[s.i1] - r0[s.i0]);
            let bottom = r1[s.i0] + s.w1 * (r1[s.i1] - r1[s.i0]);
            *out = top + t.w1 * (bottom - top);
        }
        &buf[..n]
    }
}

impl Stitch {
    /// `geometry` maps the grid's (possibly scaled) frame back to the original frame.
    pub fn new(classes: usize, grid: TileGrid, blend: Blend, geometry: Geometry) -> Stitch {
        Self::with_buffers(classes, grid, blend, geometry, StitchBuffers::default())
    }

    /// Like `new`, reusing buffers from an earlier `finish_and_recycle`.
    pub fn with_buffers(
        classes: usize,
        grid: TileGrid,
        blend: Blend,
        geometry: Geometry,
        buffers: StitchBuffers,
    ) -> Stitch {
        let plane = grid.x.len as usize * grid.y.len as usize;
        let StitchBuffers {
            mut acc,
            mut blended,
        } = buffers;
        if acc.len() != classes * plane {
            acc = vec![0.0; classes * plane];
            blended = vec![false; plane];
        }
        Stitch {
            classes,
            grid,
            blend,
            direct: !geometry.stretched,
            labels: vec![0; plane],
            acc,
            blended,
            geometry,
        }
    }

    /// Adds one tile's scores: `classes x h x w` covering the whole tile input (`h`, `w` may
    /// be smaller than the tile: they are up-sampled bilinearly). Large tiles are split by
    /// rows across the cores.
    pub fn add(&mut self, tile: &Tile, scores: &[f32], h: usize, w: usize) {
        let fw = self.grid.x.len as usize;
        let plane = fw * self.grid.y.len as usize;
        let (tw, th) = (self.grid.x.tile as usize, self.grid.y.tile as usize);
        let n = tile.width as usize;
        let wx: Vec<f32> = (0..tile.width)
            .map(|dx| self.grid.x.weight(tile.col, dx, self.blend))
            .collect();
        let ctx = TileCtx {
            tile: *tile,
            sampler: Sampler {
                scores,
                h,
                w,
                same: h == th && w == tw,
                ty: taps(tile.height as usize, h, h as f64 / th as f64),
                tx: taps(n, w, w as f64 / tw as f64),
            },
            // Columns with any weight: a contiguous range around the core.
            first: wx.iter().position(|&v| v > 0.0).unwrap_or(0),
            last: wx.iter().rposition(|&v| v > 0.0).map_or(0, |p| p + 1),
            wx,
            core_x: self.grid.x.core(tile.col),
            core_y: self.grid.y.core(tile.row),
            grid: self.grid,
            blend: self.blend,
            classes: self.classes,
            direct: self.direct,
            fw,
        };
        let cores = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4);
        let parts = if n * tile.height as usize >= 1 << 17 {
            cores
        } else {
            1
        };
        // Split the tile's rows, and every buffer at the same frame rows, into disjoint parts.
        let mut views = Vec::with_capacity(parts);
        let (mut labels, mut blended) = (&mut self.labels[..], &mut self.blended[..]);
        let mut planes: Vec<&mut [f32]> = self.acc.chunks_mut(plane).collect();
        let mut base = 0usize;
        for k in 0..parts as u32 {
            let rows = tile.height * k / parts as u32..tile.height * (k + 1) / parts as u32;
            let end = if k + 1 == parts as u32 {
                plane
            } else {
                (tile.y + rows.end) as usize * fw
            };
            let (l, rest_l) = std::mem::take(&mut labels).split_at_mut(end - base);
            let (b, rest_b) = std::mem::take(&mut blended).split_at_mut(end - base);
            let mut acc = Vec::with_capacity(planes.len());
            for p in planes.iter_mut() {
                let (a, rest) = std::mem::take(p).split_at_mut(end - base);
                acc.push(a);
                *p = rest;
            }
            views.push((
                rows,
                View {
                    base,
                    labels: l,
                    blended: b,
                    acc,
                },
            ));
            (labels, blended, base) = (rest_l, rest_b, end);
        }
        std::thread::scope(|s| {
            let mut views = views.into_iter();
            let first = views.next();
            for (rows, view) in views {
                let ctx = &ctx;
                s.spawn(move || ctx.add_rows(rows, view));
            }
            if let Some((rows, view)) = first {
                ctx.add_rows(rows, view);
            }
        });
    }

    /// The label map at the original frame's resolution.
    pub fn finish(self) -> LabelMap {
        self.finish_and_recycle().0
    }

    /// The label map, and the buffers cleared for the next frame.
    pub fn finish_and_recycle(mut self) -> (LabelMap, StitchBuffers) {
        let (fw, fh) = (self.grid.x.len as usize, self.grid.y.len as usize);
        let plane = fw * fh;
        if !self.direct {
            // Weights sum to one, so `acc` already holds the blended scores.
            let labels = argmax_scores(&self.acc, self.classes, fh, fw, &self.geometry);
            self.acc.fill(0.0);
            self.blended.fill(false);
            return (
                labels,
                StitchBuffers {
                    acc: self.acc,
                    blended: self.blended,
                },
            );
        }
        let mut best = vec![f32::NEG_INFINITY; fw];
        let mut arg = vec![0f32; fw];
        for y in 0..fh {
            let row = y * fw;
            // Runs of blended pixels in this row.
            let mut x = 0;
            while x < fw {
                let mask = &self.blended[row..row + fw];
                let Some(start) = mask[x..].iter().position(|&m| m).map(|p| p + x) else {
                    break;
                };
                let end = mask[start..]
                    .iter()
                    .position(|&m| !m)
                    .map_or(fw, |p| p + start);
                let (b, a) = (&mut best[start..end], &mut arg[start..end]);
                b.fill(f32::NEG_INFINITY);
                for c in 0..self.classes {
                    let row = &self.acc[c * plane + y * fw + start..c * plane + y * fw + end];
                    argmax_step(b, a, row, c);
                }
                for (l, &v) in self.labels[y * fw + start..y * fw + end]
                    .iter_mut()
                    .zip(a.iter())
                {
                    *l = v as u8;
                }
                // Leave the buffers clean for the next frame.
                for c in 0..self.classes {
                    self.acc[c * plane + y * fw + start..c * plane + y * fw + end].fill(0.0);
                }
                self.blended[y * fw + start..y * fw + end].fill(false);
                x = end;
            }
        }
        let labels = LabelMap::new(fw as u32, fh as u32, self.labels);
        (
            labels,
            StitchBuffers {
                acc: self.acc,
                blended: self.blended,
            },
        )
    }
}
