//! Frames in the decoder's own layout: NV12 (a full-size luma plane, then the two chroma
//! planes at half width and half height, interleaved), with the colour matrix and range the
//! values were encoded with. A source keeps them beside the RGB image when a stage can take
//! them instead (`pre_post = "graph"`: half the bytes of RGB cross to the device).

/// How YUV values map to RGB: the matrix by its luma weights of red and blue (`kr`, `kb`:
/// BT.601 0.299 and 0.114, BT.709 0.2126 and 0.0722), and the range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct YuvColour {
    pub kr: f32,
    pub kb: f32,
    /// Full range (0-255) rather than limited (luma 16-235, chroma 16-240).
    pub full_range: bool,
}

impl YuvColour {
    pub const BT601: YuvColour = YuvColour {
        kr: 0.299,
        kb: 0.114,
        full_range: false,
    };
    pub const BT709: YuvColour = YuvColour {
        kr: 0.2126,
        kb: 0.0722,
        full_range: false,
    };

    /// The affine map from (Y, U, V) to (R, G, B), both 0-255 scale, unclamped: row `k` of
    /// the matrix and the offset give channel `k` as `m[k] . (Y, U, V) + offset[k]`.
    pub fn to_rgb(&self) -> ([[f32; 3]; 3], [f32; 3]) {
        let (kr, kb) = (self.kr as f64, self.kb as f64);
        let kg = 1.0 - kr - kb;
        // Y' = ys (Y - y0), U' = cs (U - 128), V' = cs (V - 128).
        let (ys, y0, cs) = if self.full_range {
            (1.0, 0.0, 1.0)
        } else {
            (255.0 / 219.0, 16.0, 255.0 / 224.0)
        };
        let (rv, bu) = (2.0 * (1.0 - kr), 2.0 * (1.0 - kb));
        let (gu, gv) = (-kb * bu / kg, -kr * rv / kg);
        let rows = [
            [ys, 0.0, rv * cs],
            [ys, gu * cs, gv * cs],
            [ys, bu * cs, 0.0],
        ];
        let m = rows.map(|r| r.map(|v| v as f32));
        let offset = rows.map(|r| (-(r[0] * y0) - (r[1] + r[2]) * 128.0) as f32);
        (m, offset)
    }
}

/// An NV12 frame, tightly packed: `luma` is `width * height` bytes, `chroma` holds
/// `ceil(width / 2) * ceil(height / 2)` pairs (U, V).
#[derive(Clone, Debug, PartialEq)]
pub struct Nv12Image {
    pub width: u32,
    pub height: u32,
    pub luma: Vec<u8>,
    pub chroma: Vec<u8>,
    pub colour: YuvColour,
}

impl Nv12Image {
    pub fn new(width: u32, height: u32, luma: Vec<u8>, chroma: Vec<u8>, colour: YuvColour) -> Self {
        let (w, h) = (width as usize, height as usize);
        assert_eq!(luma.len(), w * h, "luma plane size");
        assert_eq!(
            chroma.len(),
            2 * w.div_ceil(2) * h.div_ceil(2),
            "chroma plane size"
        );
        Self {
            width,
            height,
            luma,
            chroma,
            colour,
        }
    }

    /// The chroma plane's size in samples (width, height).
    pub fn chroma_size(&self) -> (u32, u32) {
        (self.width.div_ceil(2), self.height.div_ceil(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grey stays grey, and the limited range's ends map to black and white.
    #[test]
    fn the_map_sends_the_ranges_ends_and_grey_where_they_belong() {
        for colour in [YuvColour::BT601, YuvColour::BT709] {
            let (m, o) = colour.to_rgb();
            let at = |y: f32, u: f32, v: f32| -> [f32; 3] {
                [0, 1, 2].map(|k| m[k][0] * y + m[k][1] * u + m[k][2] * v + o[k])
            };
            for (y, want) in [(16.0, 0.0), (235.0, 255.0)] {
                for c in at(y, 128.0, 128.0) {
                    assert!((c - want).abs() < 1e-3, "{colour:?}: {c} for {want}");
                }
            }
            // Red in BT.601 limited range: (81, 90, 240).
            if colour == YuvColour::BT601 {
                let [r, g, b] = at(81.0, 90.0, 240.0);
                assert!(r > 253.0 && g.abs() < 2.0 && b.abs() < 2.0, "{r} {g} {b}");
            }
        }
    }
}
