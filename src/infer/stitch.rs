//! Blending tile scores back into one score volume for the whole (scaled) frame.

use super::postprocess::{argmax_scores, taps};
use super::Geometry;
use crate::frame::LabelMap;
use crate::tile::{Blend, Tile, TileGrid};

/// Accumulates weighted tile scores; `finish` normalizes and takes the argmax.
pub struct Stitch {
    classes: usize,
    grid: TileGrid,
    blend: Blend,
    /// Scores per class plane over the scaled frame, weighted.
    acc: Vec<f32>,
    /// Sum of weights per pixel.
    weight: Vec<f32>,
    geometry: Geometry,
}

impl Stitch {
    /// `geometry` maps the grid's (scaled) frame back to the original frame.
    pub fn new(classes: usize, grid: TileGrid, blend: Blend, geometry: Geometry) -> Stitch {
        let plane = grid.x.len as usize * grid.y.len as usize;
        Stitch {
            classes,
            grid,
            blend,
            acc: vec![0.0; classes * plane],
            weight: vec![0.0; plane],
            geometry,
        }
    }

    /// Adds one tile's scores: `classes x h x w`, covering the whole tile input (`h`, `w`
    /// may be smaller than the tile: they are up-sampled bilinearly).
    pub fn add(&mut self, tile: &Tile, scores: &[f32], h: usize, w: usize) {
        let fw = self.grid.x.len as usize;
        let plane = fw * self.grid.y.len as usize;
        let (tw, th) = (self.grid.x.tile as usize, self.grid.y.tile as usize);
        let wx: Vec<f32> = (0..tile.width)
            .map(|dx| self.grid.x.weight(tile.col, dx, self.blend))
            .collect();
        let wy: Vec<f32> = (0..tile.height)
            .map(|dy| self.grid.y.weight(tile.row, dy, self.blend))
            .collect();
        for (dy, &wyv) in wy.iter().enumerate() {
            let row = (tile.y as usize + dy) * fw + tile.x as usize;
            for (dx, &wxv) in wx.iter().enumerate() {
                self.weight[row + dx] += wyv * wxv;
            }
        }
        let same = h == th && w == tw;
        let ty = taps(tile.height as usize, h, h as f64 / th as f64);
        let tx = taps(tile.width as usize, w, w as f64 / tw as f64);
        let tile_plane = h * w;
        for c in 0..self.classes {
            let src = &scores[c * tile_plane..(c + 1) * tile_plane];
            let acc = &mut self.acc[c * plane..(c + 1) * plane];
            for (dy, &wyv) in wy.iter().enumerate() {
                let row = (tile.y as usize + dy) * fw + tile.x as usize;
                let dst = &mut acc[row..row + wx.len()];
                if same {
                    let s = &src[dy * w..dy * w + wx.len()];
                    for ((d, &v), &wxv) in dst.iter_mut().zip(s).zip(&wx) {
                        *d += wyv * wxv * v;
                    }
                } else {
                    let t = ty[dy];
                    let (r0, r1) = (
                        &src[t.i0 * w..(t.i0 + 1) * w],
                        &src[t.i1 * w..(t.i1 + 1) * w],
                    );
                    for ((d, s), &wxv) in dst.iter_mut().zip(&tx).zip(&wx) {
                        let top = r0[s.i0] + s.w1 * (r0[s.i1] - r0[s.i0]);
                        let bottom = r1[s.i0] + s.w1 * (r1[s.i1] - r1[s.i0]);
                        *d += wyv * wxv * (top + t.w1 * (bottom - top));
                    }
                }
            }
        }
    }

    /// The blended scores (`classes x height x width` of the scaled frame).
    pub fn scores(mut self) -> (Vec<f32>, Geometry) {
        let plane = self.weight.len();
        for c in 0..self.classes {
            for (a, w) in self.acc[c * plane..(c + 1) * plane]
                .iter_mut()
                .zip(&self.weight)
            {
                *a /= w;
            }
        }
        (self.acc, self.geometry)
    }

    /// The label map at the original frame's resolution.
    pub fn finish(self) -> LabelMap {
        let (classes, h, w) = (
            self.classes,
            self.grid.y.len as usize,
            self.grid.x.len as usize,
        );
        let (scores, geometry) = self.scores();
        argmax_scores(&scores, classes, h, w, &geometry)
    }
}
