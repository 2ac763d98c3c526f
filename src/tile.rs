//! Overlapping tiles over a frame, and the blending weights that stitch their outputs.
//!
//! `for t in TileGrid::new(2048, 1024, 1024, 512, 64)?.tiles() { ... }`
//!
//! Tiles have the model's input size and overlap by at least `overlap` pixels. Along each
//! axis the first tile starts at 0 and the last ends at the frame's edge (the last tile is
//! shifted inward rather than hanging over), and the tiles in between are spread evenly, so
//! every pixel is covered and overlaps are as equal as possible. A frame smaller than a tile
//! gets one tile along that axis, which the caller pads (the model sees mirror padding).
//!
//! Stitching keeps the well-supported centre of each tile (U-Net's overlap-tile idea): every
//! seam between neighbours gets a blending band `overlap` pixels wide (at most the actual
//! overlap), centred in the middle of their overlap. Across the band one tile's weight ramps
//! down while the other's ramps up (linear or smoothstep), so the weights of the tiles
//! covering a pixel always sum to one; outside the bands a pixel belongs to exactly one tile
//! with weight 1. Tile edges, where context is poorest, never contribute.

/// Why a grid cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TileError {
    #[error("invalid tile size {0}x{1} (expected at least 1x1)")]
    TileSize(u32, u32),
    #[error("invalid overlap {overlap} (expected less than the tile size {tile})")]
    Overlap { overlap: u32, tile: u32 },
    #[error("invalid frame size {0}x{1} (expected at least 1x1)")]
    FrameSize(u32, u32),
}

/// The shape of the weight ramp across an overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blend {
    /// Weight rises linearly across the overlap.
    Linear,
    /// Weight rises as a Gaussian CDF-like curve across the overlap (smoother at its ends).
    Gaussian,
}

/// Placement of tiles along one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis {
    /// Frame length.
    pub len: u32,
    /// Tile length.
    pub tile: u32,
    /// Number of tiles.
    pub count: u32,
    /// Width of the blending band at each seam: the requested overlap, at most the smallest
    /// distance between tile starts.
    pub band: u32,
}

impl Axis {
    fn new(len: u32, tile: u32, overlap: u32) -> Axis {
        let count = if len <= tile {
            1
        } else {
            // Smallest count whose evenly spread tiles overlap by at least `overlap`.
            let stride = (tile - overlap) as u64;
            (1 + (len as u64 - tile as u64).div_ceil(stride)) as u32
        };
        // Bands of neighbouring seams must not overlap: at most the smallest stride wide.
        let min_stride = if count > 1 {
            (len - tile) / (count - 1)
        } else {
            u32::MAX
        };
        Axis {
            len,
            tile,
            count,
            band: overlap.min(min_stride),
        }
    }

    /// Start of tile `i`.
    pub fn start(&self, i: u32) -> u32 {
        if self.count == 1 {
            return 0;
        }
        let span = (self.len - self.tile) as u64;
        ((i as u64 * span + (self.count as u64 - 1) / 2) / (self.count as u64 - 1)) as u32
    }

    /// Length of every tile inside the frame.
    pub fn extent(&self) -> u32 {
        self.tile.min(self.len)
    }

    /// The blending band (lo, hi) of the seam between tiles `i` and `i + 1`, in pixel
    /// coordinates (pixel `p` has its centre at `p + 0.5`).
    fn seam(&self, i: u32) -> (f32, f32) {
        let next = self.start(i + 1) as f32;
        let end = (self.start(i) + self.extent()) as f32;
        let mid = 0.5 * (next + end);
        let half = 0.5 * (self.band as f32).min(end - next);
        (mid - half, mid + half)
    }

    /// Blending weight of tile `i` at offset `p` inside it, in 0..=1. With a zero-width band
    /// the seam is hard: the left tile owns pixel centres before it, the right tile the rest.
    pub fn weight(&self, i: u32, p: u32, blend: Blend) -> f32 {
        let x = (self.start(i) + p) as f32 + 0.5;
        let mut w = 1.0f32;
        if i > 0 {
            let (lo, hi) = self.seam(i - 1);
            if x < lo {
                return 0.0;
            }
            if x < hi {
                w = w.min(ramp((x - lo) / (hi - lo), blend));
            }
        }
        if i + 1 < self.count {
            let (lo, hi) = self.seam(i);
            if x >= hi {
                return 0.0;
            }
            if x > lo {
                w = w.min(ramp((hi - x) / (hi - lo), blend));
            }
        }
        w
    }

    /// The offsets inside tile `i` where its weight is exactly 1.
    pub fn core(&self, i: u32) -> std::ops::Range<u32> {
        let start = self.start(i) as f32 + 0.5;
        // First offset whose centre is at or past the previous band's end.
        let a = if i > 0 {
            (self.seam(i - 1).1 - start).ceil().max(0.0)
        } else {
            0.0
        };
        // Offsets whose centre is at or before the next band's start (before it, if hard).
        let b = if i + 1 < self.count {
            let (lo, hi) = self.seam(i);
            if lo < hi {
                (lo - start).floor() + 1.0
            } else {
                (hi - start).ceil()
            }
        } else {
            f32::INFINITY
        };
        let b = b.clamp(0.0, self.extent() as f32) as u32;
        (a as u32).min(b)..b
    }
}

/// Rises from 0 at t = 0 to 1 at t = 1, with ramp(t) + ramp(1 - t) = 1, so two tiles meeting
/// across a band always sum to one.
fn ramp(t: f32, blend: Blend) -> f32 {
    let t = t.clamp(0.0, 1.0);
    match blend {
        Blend::Linear => t,
        // Smoothstep: close to the integral of a Gaussian across the band, flat at its ends.
        Blend::Gaussian => t * t * (3.0 - 2.0 * t),
    }
}

/// A grid of overlapping tiles over a `width` x `height` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileGrid {
    pub x: Axis,
    pub y: Axis,
}

/// One tile: where it sits in the frame and how much of it is inside the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Index in row-major order.
    pub index: u32,
    pub col: u32,
    pub row: u32,
    pub x: u32,
    pub y: u32,
    /// Size inside the frame (smaller than the tile when the frame is).
    pub width: u32,
    pub height: u32,
}

impl TileGrid {
    pub fn new(
        width: u32,
        height: u32,
        tile_width: u32,
        tile_height: u32,
        overlap: u32,
    ) -> Result<TileGrid, TileError> {
        if tile_width == 0 || tile_height == 0 {
            return Err(TileError::TileSize(tile_width, tile_height));
        }
        if width == 0 || height == 0 {
            return Err(TileError::FrameSize(width, height));
        }
        let smaller = tile_width.min(tile_height);
        if overlap >= smaller {
            return Err(TileError::Overlap {
                overlap,
                tile: smaller,
            });
        }
        Ok(TileGrid {
            x: Axis::new(width, tile_width, overlap),
            y: Axis::new(height, tile_height, overlap),
        })
    }

    pub fn len(&self) -> usize {
        self.x.count as usize * self.y.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn tiles(self) -> impl Iterator<Item = Tile> {
        (0..self.y.count).flat_map(move |row| {
            (0..self.x.count).map(move |col| Tile {
                index: row * self.x.count + col,
                col,
                row,
                x: self.x.start(col),
                y: self.y.start(row),
                width: self.x.extent(),
                height: self.y.extent(),
            })
        })
    }

    /// Unnormalized blending weight of `tile` at offset (`dx`, `dy`) inside it.
    pub fn weight(&self, tile: &Tile, dx: u32, dy: u32, blend: Blend) -> f32 {
        self.x.weight(tile.col, dx, blend) * self.y.weight(tile.row, dy, blend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn driving_frame_in_model_sized_tiles() {
        let g = TileGrid::new(2048, 1024, 1024, 512, 64).unwrap();
        let starts: Vec<(u32, u32)> = g.tiles().map(|t| (t.x, t.y)).collect();
        // 3 columns (overlap 512), 3 rows (overlap 256): evenly spread, last flush with the edge.
        assert_eq!(g.x.count, 3);
        assert_eq!(g.y.count, 3);
        assert_eq!(starts[0], (0, 0));
        assert_eq!(starts[8], (1024, 512));
    }

    #[test]
    fn bad_geometry_is_rejected() {
        assert_eq!(
            TileGrid::new(10, 10, 0, 5, 0),
            Err(TileError::TileSize(0, 5))
        );
        assert_eq!(
            TileGrid::new(10, 10, 8, 8, 8),
            Err(TileError::Overlap {
                overlap: 8,
                tile: 8
            })
        );
        assert_eq!(
            TileGrid::new(0, 10, 8, 8, 1),
            Err(TileError::FrameSize(0, 10))
        );
    }

    proptest! {
        #[test]
        fn every_pixel_is_covered_and_weights_sum_to_one(
            width in 1u32..300, height in 1u32..300,
            tw in 1u32..128, th in 1u32..128, overlap_frac in 0.0f64..0.9,
            gaussian in any::<bool>(),
        ) {
            let overlap = ((tw.min(th) as f64) * overlap_frac) as u32;
            let blend = if gaussian { Blend::Gaussian } else { Blend::Linear };
            let g = TileGrid::new(width, height, tw, th, overlap).unwrap();
            let mut cover = vec![0u32; (width * height) as usize];
            let mut wsum = vec![0f64; (width * height) as usize];
            for t in g.tiles() {
                prop_assert!(t.x + t.width <= width && t.y + t.height <= height);
                let (cx, cy) = (g.x.core(t.col), g.y.core(t.row));
                for dy in 0..t.height {
                    for dx in 0..t.width {
                        let i = ((t.y + dy) * width + t.x + dx) as usize;
                        cover[i] += 1;
                        let w = g.weight(&t, dx, dy, blend);
                        prop_assert!((0.0..=1.0).contains(&w));
                        prop_assert_eq!(w == 1.0, cx.contains(&dx) && cy.contains(&dy));
                        wsum[i] += w as f64;
                    }
                }
            }
            prop_assert!(cover.iter().all(|&c| c >= 1), "a pixel is not covered");
            for (i, s) in wsum.iter().enumerate() {
                prop_assert!((s - 1.0).abs() < 1e-5, "weights at pixel {} sum to {}", i, s);
            }
            // Neighbouring tiles overlap by at least the requested amount.
            for axis in [g.x, g.y] {
                for i in 1..axis.count {
                    prop_assert!(axis.start(i - 1) + axis.extent() >= axis.start(i) + overlap);
                }
            }
        }
    }
}
