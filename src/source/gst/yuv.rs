//! The decoder's planar YUV (I420, NV12, and JPEG's 4:2:2 and 4:4:4) to packed RGB, in segstream: SIMD rows
//! (`yuvutils-rs`, dispatched on the CPU's features at run time) in bands spread across the
//! cores. GStreamer's `videoconvert` did this before and cost more than decoding itself.

use std::borrow::Cow;

use rayon::prelude::*;

use crate::frame::{Nv12Image, RgbImage, YuvColour};
use yuvutils_rs::{
    rgb_to_yuv_nv12, yuv420_to_rgb, yuv422_to_rgb, yuv444_to_rgb, yuv_nv12_to_rgb,
    YuvBiPlanarImage, YuvBiPlanarImageMut, YuvChromaSubsampling, YuvConversionMode, YuvPlanarImage,
    YuvRange, YuvStandardMatrix,
};

/// How the planes of one frame lie in memory.
#[derive(Clone, Copy, Debug)]
pub enum Layout<'a> {
    /// Three planes: Y, U, V (`I420`, `Y42B`, `Y444`).
    Planar {
        y: (&'a [u8], usize),
        u: (&'a [u8], usize),
        v: (&'a [u8], usize),
        chroma: Chroma,
    },
    /// Y and interleaved UV (`NV12`).
    Nv12 {
        y: (&'a [u8], usize),
        uv: (&'a [u8], usize),
    },
}

/// How the chroma planes are subsampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chroma {
    /// Half width, half height (4:2:0).
    Half,
    /// Half width, full height (4:2:2).
    HalfWidth,
    /// Full size (4:4:4: JPEG stills often are).
    Full,
}

/// How YUV values map to RGB.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Colour {
    pub matrix: YuvStandardMatrix,
    pub range: YuvRange,
}

/// Rows converted per task at least: fewer would spend more on scheduling than converting.
const MIN_BAND_ROWS: usize = 32;

/// Writes the `width` x `height` frame in `planes` into `rgb` (tightly packed, resized to
/// fit), in bands of rows converted in parallel.
pub fn to_rgb(
    planes: Layout<'_>,
    width: usize,
    height: usize,
    colour: Colour,
    rgb: &mut Vec<u8>,
) -> Result<(), String> {
    rgb.resize(width * height * 3, 0);
    if width == 0 || height == 0 {
        return Ok(());
    }
    let bands = rayon::current_num_threads().max(1);
    // Even band heights keep each band's chroma rows its own.
    let band = (height.div_ceil(bands).max(MIN_BAND_ROWS) + 1) & !1;
    rgb.par_chunks_mut(band * width * 3)
        .enumerate()
        .try_for_each(|(i, out)| {
            let top = i * band;
            let rows = out.len() / (width * 3);
            convert_band(planes, width, top, rows, colour, out)
        })
}

/// The frame in `planes` as a tightly packed NV12 image (the decoder's 4:2:0 planes copied,
/// I420's U and V interleaved), for a stage that takes YUV; `None` for 4:2:2 and 4:4:4,
/// which have no NV12 form without resampling the chroma.
pub fn to_nv12(
    planes: Layout<'_>,
    width: usize,
    height: usize,
    colour: Colour,
) -> Option<Nv12Image> {
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    // Whole planes, even where the last row is short of the stride.
    let packed = |plane, rows: usize, used: usize| {
        let mut bytes = tight_rows(plane, 0, rows, used).into_owned();
        bytes.resize(rows * used, 0);
        bytes
    };
    let luma = |y| packed(y, height, width);
    let (luma, chroma) = match planes {
        Layout::Nv12 { y, uv } => (luma(y), packed(uv, ch, 2 * cw)),
        Layout::Planar {
            y,
            u,
            v,
            chroma: Chroma::Half,
        } => {
            let (u, v) = (packed(u, ch, cw), packed(v, ch, cw));
            let mut chroma = Vec::with_capacity(2 * cw * ch);
            for (u, v) in u.iter().zip(v.iter()) {
                chroma.extend_from_slice(&[*u, *v]);
            }
            (luma(y), chroma)
        }
        Layout::Planar { .. } => return None,
    };
    let bias = colour.matrix.get_kr_kb();
    let colour = YuvColour {
        kr: bias.kr,
        kb: bias.kb,
        full_range: colour.range == YuvRange::Full,
    };
    Some(Nv12Image::new(
        width as u32,
        height as u32,
        luma,
        chroma,
        colour,
    ))
}

/// `image` encoded as NV12, BT.709 limited range (what HD decoders give), for frames that
/// did not come from a decoder (a benchmark's frames in memory).
pub fn rgb_to_nv12(image: &RgbImage) -> Result<Nv12Image, String> {
    let (w, h) = (image.width, image.height);
    let mut planes = YuvBiPlanarImageMut::alloc(w, h, YuvChromaSubsampling::Yuv420);
    rgb_to_yuv_nv12(
        &mut planes,
        &image.data,
        w * 3,
        YuvRange::Limited,
        YuvStandardMatrix::Bt709,
        YuvConversionMode::Balanced,
    )
    .map_err(|e| format!("{w}x{h} frame: {e}"))?;
    Ok(Nv12Image::new(
        w,
        h,
        planes.y_plane.borrow().to_vec(),
        planes.uv_plane.borrow().to_vec(),
        YuvColour::BT709,
    ))
}

/// Rows `top..top + rows` of the frame (`top` even) into `out`.
fn convert_band(
    planes: Layout<'_>,
    width: usize,
    top: usize,
    rows: usize,
    colour: Colour,
    out: &mut [u8],
) -> Result<(), String> {
    let chroma_width = width.div_ceil(2);
    let (matrix, range) = (colour.matrix, colour.range);
    let result = match planes {
        Layout::Planar { y, u, v, chroma } => {
            let (first, count, cw) = match chroma {
                Chroma::Half => (top / 2, rows.div_ceil(2), chroma_width),
                Chroma::HalfWidth => (top, rows, chroma_width),
                Chroma::Full => (top, rows, width),
            };
            let (y_rows, u_rows, v_rows) = (
                whole_rows(y, top, rows, width),
                whole_rows(u, first, count, cw),
                whole_rows(v, first, count, cw),
            );
            let image = YuvPlanarImage {
                y_plane: &y_rows.0,
                y_stride: y_rows.1 as u32,
                u_plane: &u_rows.0,
                u_stride: u_rows.1 as u32,
                v_plane: &v_rows.0,
                v_stride: v_rows.1 as u32,
                width: width as u32,
                height: rows as u32,
            };
            let convert = match chroma {
                Chroma::Half => yuv420_to_rgb,
                Chroma::HalfWidth => yuv422_to_rgb,
                Chroma::Full => yuv444_to_rgb,
            };
            convert(&image, out, (width * 3) as u32, range, matrix)
        }
        Layout::Nv12 { y, uv } => {
            let y_rows = whole_rows(y, top, rows, width);
            // The interleaved plane is taken only without padding between rows.
            let uv_rows = tight_rows(uv, top / 2, rows.div_ceil(2), 2 * chroma_width);
            let image = YuvBiPlanarImage {
                y_plane: &y_rows.0,
                y_stride: y_rows.1 as u32,
                uv_plane: &uv_rows,
                uv_stride: (2 * chroma_width) as u32,
                width: width as u32,
                height: rows as u32,
            };
            yuv_nv12_to_rgb(
                &image,
                out,
                (width * 3) as u32,
                range,
                matrix,
                YuvConversionMode::Balanced,
            )
        }
    };
    result.map_err(|e| format!("cannot convert YUV to RGB: {e}"))
}

/// Rows `first..first + count` of a plane of `stride`, each `used` bytes wide, as a slice
/// of whole rows (the converter drops a last row shorter than the stride) and its stride:
/// borrowed when the plane holds them, else copied.
fn whole_rows(
    plane: (&[u8], usize),
    first: usize,
    count: usize,
    used: usize,
) -> (Cow<'_, [u8]>, usize) {
    let (data, stride) = plane;
    let start = first * stride;
    match data.get(start..start + count * stride) {
        Some(rows) => (Cow::Borrowed(rows), stride),
        None => (
            Cow::Owned(tight_rows(plane, first, count, used).into_owned()),
            used,
        ),
    }
}

/// The same rows without padding: borrowed when the plane has none.
fn tight_rows(plane: (&[u8], usize), first: usize, count: usize, used: usize) -> Cow<'_, [u8]> {
    let (data, stride) = plane;
    if stride == used {
        let start = first * stride;
        return Cow::Borrowed(&data[start.min(data.len())..(start + count * used).min(data.len())]);
    }
    let mut rows = Vec::with_capacity(count * used);
    for r in first..first + count {
        let start = (r * stride).min(data.len());
        let row = &data[start..(start + used).min(data.len())];
        rows.extend_from_slice(row);
        rows.resize(rows.len() + used - row.len(), 0);
    }
    Cow::Owned(rows)
}
#[cfg(test)]
mod tests {
    use super::*;

    /// BT.601 limited range, by the formula (the reference the SIMD rows must meet).
    fn reference(y: u8, u: u8, v: u8) -> [u8; 3] {
        let (y, u, v) = (
            (y as f64 - 16.0) * 255.0 / 219.0,
            (u as f64 - 128.0) * 255.0 / 224.0,
            (v as f64 - 128.0) * 255.0 / 224.0,
        );
        let (kr, kb) = (0.299, 0.114);
        let r = y + 2.0 * (1.0 - kr) * v;
        let b = y + 2.0 * (1.0 - kb) * u;
        let g = (y - kr * r - kb * b) / (1.0 - kr - kb);
        [r, g, b].map(|c| c.round().clamp(0.0, 255.0) as u8)
    }

    #[test]
    fn i420_and_nv12_with_padded_rows_and_odd_sizes_match_the_formula_in_every_band() {
        let colour = Colour {
            matrix: YuvStandardMatrix::Bt601,
            range: YuvRange::Limited,
        };
        for (w, h) in [(64usize, 200usize), (37, 75), (2, 2), (1920, 33)] {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let (ys, cs) = (w + 7, cw + 5); // padded strides
            let y: Vec<u8> = (0..ys * h).map(|i| (16 + i * 7 % 220) as u8).collect();
            let u: Vec<u8> = (0..cs * ch).map(|i| (16 + i * 13 % 224) as u8).collect();
            let v: Vec<u8> = (0..cs * ch).map(|i| (16 + i * 29 % 224) as u8).collect();
            let mut uv = vec![0u8; 2 * cs * ch];
            for r in 0..ch {
                for c in 0..cw {
                    uv[r * 2 * cs + 2 * c] = u[r * cs + c];
                    uv[r * 2 * cs + 2 * c + 1] = v[r * cs + c];
                }
            }
            let planar = Layout::Planar {
                y: (&y, ys),
                u: (&u, cs),
                v: (&v, cs),
                chroma: Chroma::Half,
            };
            let bi = Layout::Nv12 {
                y: (&y, ys),
                uv: (&uv, 2 * cs),
            };
            // Planes whose last row stops at the picture's edge, as some decoders give them.
            let short = Layout::Planar {
                y: (&y[..(h - 1) * ys + w], ys),
                u: (&u[..(ch - 1) * cs + cw], cs),
                v: (&v[..(ch - 1) * cs + cw], cs),
                chroma: Chroma::Half,
            };
            for (name, layout) in [("I420", planar), ("NV12", bi), ("I420 short", short)] {
                let mut rgb = Vec::new();
                to_rgb(layout, w, h, colour, &mut rgb).unwrap();
                assert_eq!(rgb.len(), w * h * 3);
                let mut worst = 0i32;
                for r in 0..h {
                    for c in 0..w {
                        let want = reference(
                            y[r * ys + c],
                            u[(r / 2) * cs + c / 2],
                            v[(r / 2) * cs + c / 2],
                        );
                        for k in 0..3 {
                            let got = rgb[(r * w + c) * 3 + k] as i32;
                            worst = worst.max((got - want[k] as i32).abs());
                        }
                    }
                }
                assert!(worst <= 2, "{w}x{h} {name}: off by {worst}");
            }
        }
    }

    #[test]
    fn jpegs_422_and_444_planes_match_the_formula() {
        let colour = Colour {
            matrix: YuvStandardMatrix::Bt601,
            range: YuvRange::Limited,
        };
        let (w, h) = (45usize, 70usize);
        for (chroma, cw) in [(Chroma::HalfWidth, w.div_ceil(2)), (Chroma::Full, w)] {
            let (ys, cs) = (w + 3, cw + 3);
            let y: Vec<u8> = (0..ys * h).map(|i| (16 + i * 7 % 220) as u8).collect();
            let u: Vec<u8> = (0..cs * h).map(|i| (16 + i * 13 % 224) as u8).collect();
            let v: Vec<u8> = (0..cs * h).map(|i| (16 + i * 29 % 224) as u8).collect();
            let layout = Layout::Planar {
                y: (&y, ys),
                u: (&u, cs),
                v: (&v, cs),
                chroma,
            };
            let mut rgb = Vec::new();
            to_rgb(layout, w, h, colour, &mut rgb).unwrap();
            let step = if chroma == Chroma::Full { 1 } else { 2 };
            for r in 0..h {
                for c in 0..w {
                    let ci = r * cs + c / step;
                    let want = reference(y[r * ys + c], u[ci], v[ci]);
                    for k in 0..3 {
                        let got = rgb[(r * w + c) * 3 + k] as i32;
                        assert!((got - want[k] as i32).abs() <= 2, "{chroma:?} at {r},{c}");
                    }
                }
            }
        }
    }

    #[test]
    fn i420_and_nv12_planes_pack_into_the_same_nv12_and_422_has_none() {
        let colour = Colour {
            matrix: YuvStandardMatrix::Bt709,
            range: YuvRange::Full,
        };
        let (w, h) = (5usize, 3usize);
        let (cw, ch) = (3usize, 2usize);
        let (ys, cs) = (w + 3, cw + 2); // padded strides
        let y: Vec<u8> = (0..ys * h).map(|i| i as u8).collect();
        let u: Vec<u8> = (0..cs * ch).map(|i| 100 + i as u8).collect();
        let v: Vec<u8> = (0..cs * ch).map(|i| 200 + i as u8).collect();
        let mut uv = vec![0u8; 2 * cs * ch];
        for r in 0..ch {
            for c in 0..cw {
                uv[r * 2 * cs + 2 * c] = u[r * cs + c];
                uv[r * 2 * cs + 2 * c + 1] = v[r * cs + c];
            }
        }
        let planar = |chroma| Layout::Planar {
            y: (&y, ys),
            u: (&u, cs),
            v: (&v, cs),
            chroma,
        };
        let from_i420 = to_nv12(planar(Chroma::Half), w, h, colour).unwrap();
        let bi = Layout::Nv12 {
            y: (&y, ys),
            uv: (&uv, 2 * cs),
        };
        let from_nv12 = to_nv12(bi, w, h, colour).unwrap();
        assert_eq!(from_i420, from_nv12);
        let luma: Vec<u8> = (0..h)
            .flat_map(|r| y[r * ys..r * ys + w].to_vec())
            .collect();
        assert_eq!(from_i420.luma, luma);
        // Row 1, column 2 of the chroma: U then V.
        assert_eq!(
            from_i420.chroma[2 * (cw + 2)..2 * (cw + 2) + 2],
            [u[cs + 2], v[cs + 2]]
        );
        assert_eq!(
            from_i420.colour,
            YuvColour {
                kr: 0.2126,
                kb: 0.0722,
                full_range: true
            }
        );
        assert!(to_nv12(planar(Chroma::HalfWidth), w, h, colour).is_none());
    }
}
