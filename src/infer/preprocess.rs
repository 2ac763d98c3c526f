//! Frame to input tensor: size policy, colour order, normalization, layout.

use opencv::core::{Mat, Size, Vec3f};
use opencv::imgproc;
use opencv::prelude::*;

use super::model::{ColorOrder, InputConfig, Layout, SizePolicy};
use crate::frame::{Geometry, RgbImage};

/// The geometry of a whole frame fed to a model with the given size policy.
pub fn frame_geometry(width: u32, height: u32, size: SizePolicy) -> Geometry {
    let (mw, mh) = size.model_size(width, height);
    Geometry {
        frame_width: width,
        frame_height: height,
        model_width: mw,
        model_height: mh,
        stretched: matches!(size, SizePolicy::Stretch { .. }),
    }
}

/// A normalized image, `width * height * 3` floats in the model's channel order (HWC).
pub struct Normalized {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
}

/// Applies colour order, scale, mean and std.
pub fn normalize(image: &RgbImage, input: &InputConfig) -> Normalized {
    let mut a = [0.0f32; 3];
    let mut b = [0.0f32; 3];
    for k in 0..3 {
        a[k] = 1.0 / (input.scale * input.std[k]);
        b[k] = -input.mean[k] / input.std[k];
    }
    let src = match input.color {
        ColorOrder::RGB => [0, 1, 2],
        ColorOrder::BGR => [2, 1, 0],
    };
    let mut data = vec![0f32; image.pixels() * 3];
    for (dst, px) in data.chunks_exact_mut(3).zip(image.data.chunks_exact(3)) {
        for k in 0..3 {
            dst[k] = px[src[k]] as f32 * a[k] + b[k];
        }
    }
    Normalized {
        width: image.width,
        height: image.height,
        data,
    }
}

/// Bilinear resize in float (half-pixel centres, no anti-aliasing, as PyTorch's
/// `interpolate(mode="bilinear", align_corners=False)`).
pub fn resize(image: Normalized, width: u32, height: u32) -> Result<Normalized, opencv::Error> {
    // Already the right size (tiling at scale 1): hand the image back, no copy.
    if (width, height) == (image.width, image.height) {
        return Ok(image);
    }
    // SAFETY: Vec3f is #[repr(C)] [f32; 3]; the length is a multiple of 3.
    let pixels = unsafe {
        std::slice::from_raw_parts(image.data.as_ptr().cast::<Vec3f>(), image.data.len() / 3)
    };
    let src =
        Mat::new_rows_cols_with_data::<Vec3f>(image.height as i32, image.width as i32, pixels)?;
    let mut resized = Mat::default();
    let size = Size::new(width as i32, height as i32);
    imgproc::resize(&src, &mut resized, size, 0.0, 0.0, imgproc::INTER_LINEAR)?;
    let data: &[Vec3f] = resized.data_typed()?;
    Ok(Normalized {
        width,
        height,
        data: data.iter().flat_map(|v| v.0).collect(),
    })
}

/// Writes the `w x h` region at (`x0`, `y0`) of `image` into the top-left of one batch item
/// of `mw x mh` in the given layout; the rest of the item must already be zero (the mean
/// colour after normalization).
#[allow(clippy::too_many_arguments)]
pub fn write_item(
    item: &mut [f32],
    layout: Layout,
    image: &Normalized,
    x0: u32,
    y0: u32,
    w: u32,
    h: u32,
    mw: u32,
) {
    let (iw, mw) = (image.width as usize, mw as usize);
    let (x0, y0, w, h) = (x0 as usize, y0 as usize, w as usize, h as usize);
    let mh = item.len() / 3 / mw;
    match layout {
        Layout::NCHW | Layout::CHW => {
            let plane = mw * mh;
            for y in 0..h {
                let src = &image.data[((y0 + y) * iw + x0) * 3..((y0 + y) * iw + x0 + w) * 3];
                for (x, px) in src.chunks_exact(3).enumerate() {
                    let o = y * mw + x;
                    item[o] = px[0];
                    item[plane + o] = px[1];
                    item[2 * plane + o] = px[2];
                }
            }
        }
        Layout::NHWC => {
            for y in 0..h {
                let src = &image.data[((y0 + y) * iw + x0) * 3..((y0 + y) * iw + x0 + w) * 3];
                item[y * mw * 3..y * mw * 3 + w * 3].copy_from_slice(src);
            }
        }
    }
}
