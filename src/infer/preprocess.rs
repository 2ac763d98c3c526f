//! Frame to input tensor: size policy, colour order, normalization, layout.

use ndarray::{ArrayD, IxDyn};
use opencv::core::{Mat, Size, Vec3f};
use opencv::imgproc;
use opencv::prelude::*;

use crate::config::{ColorOrder, InputConfig, Layout, SizePolicy};
use crate::frame::RgbImage;

/// How the model's input relates to the frame, for mapping outputs back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub frame_width: u32,
    pub frame_height: u32,
    pub model_width: u32,
    pub model_height: u32,
    /// True when the frame was resized to the model size; false when it was padded.
    pub stretched: bool,
}

/// Per-channel affine normalization `v = pixel * a + b`, in the model's channel order, with
/// the source (RGB) channel each model channel reads.
struct Normalize {
    a: [f32; 3],
    b: [f32; 3],
    src: [usize; 3],
}

impl Normalize {
    fn new(input: &InputConfig) -> Self {
        let mut a = [0.0; 3];
        let mut b = [0.0; 3];
        for k in 0..3 {
            a[k] = 1.0 / (input.scale * input.std[k]);
            b[k] = -input.mean[k] / input.std[k];
        }
        let src = match input.color {
            ColorOrder::RGB => [0, 1, 2],
            ColorOrder::BGR => [2, 1, 0],
        };
        Normalize { a, b, src }
    }
}

/// Builds the input tensor for one frame.
pub fn preprocess(
    image: &RgbImage,
    input: &InputConfig,
) -> Result<(ArrayD<f32>, Geometry), opencv::Error> {
    let (fw, fh) = (image.width, image.height);
    let (mw, mh) = input.size.model_size(fw, fh);
    let geometry = Geometry {
        frame_width: fw,
        frame_height: fh,
        model_width: mw,
        model_height: mh,
        stretched: matches!(input.size, SizePolicy::Stretch { .. }),
    };
    let norm = Normalize::new(input);
    let (mw, mh) = (mw as usize, mh as usize);
    let shape = match input.layout {
        Layout::NCHW => vec![1, 3, mh, mw],
        Layout::NHWC => vec![1, mh, mw, 3],
        Layout::CHW => vec![3, mh, mw],
    };
    // Zero after normalization is the mean colour: the padding the model sees.
    let mut tensor = ArrayD::<f32>::zeros(IxDyn(&shape));
    let out = tensor.as_slice_mut().expect("fresh arrays are contiguous");

    if geometry.stretched && (mw, mh) != (fw as usize, fh as usize) {
        // Normalize first and resize in float, so no rounding to 8 bits happens in between.
        let mut hwc = vec![0f32; image.pixels() * 3];
        for (dst, px) in hwc.chunks_exact_mut(3).zip(image.data.chunks_exact(3)) {
            for k in 0..3 {
                dst[k] = px[norm.src[k]] as f32 * norm.a[k] + norm.b[k];
            }
        }
        let src = Mat::new_rows_cols_with_data::<Vec3f>(fh as i32, fw as i32, as_vec3f(&hwc))?;
        let mut resized = Mat::default();
        imgproc::resize(
            &src,
            &mut resized,
            Size::new(mw as i32, mh as i32),
            0.0,
            0.0,
            imgproc::INTER_LINEAR,
        )?;
        let data: &[Vec3f] = resized.data_typed()?;
        scatter(out, input.layout, mw, mh, mw, mh, |i, k| data[i][k]);
    } else {
        let px = &image.data;
        scatter(
            out,
            input.layout,
            mw,
            mh,
            fw as usize,
            fh as usize,
            |i, k| px[i * 3 + norm.src[k]] as f32 * norm.a[k] + norm.b[k],
        );
    }
    Ok((tensor, geometry))
}

fn as_vec3f(v: &[f32]) -> &[Vec3f] {
    // SAFETY: Vec3f is #[repr(C)] [f32; 3]; the length is a multiple of 3.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<Vec3f>(), v.len() / 3) }
}

/// Writes a `w x h` HWC source (value of pixel `i`, model channel `k`) into the top-left of an
/// `mw x mh` tensor in the given layout.
fn scatter(
    out: &mut [f32],
    layout: Layout,
    mw: usize,
    mh: usize,
    w: usize,
    h: usize,
    value: impl Fn(usize, usize) -> f32,
) {
    match layout {
        Layout::NCHW | Layout::CHW => {
            let plane = mw * mh;
            for y in 0..h {
                for x in 0..w {
                    let i = y * w + x;
                    let o = y * mw + x;
                    out[o] = value(i, 0);
                    out[plane + o] = value(i, 1);
                    out[2 * plane + o] = value(i, 2);
                }
            }
        }
        Layout::NHWC => {
            for y in 0..h {
                for x in 0..w {
                    let i = y * w + x;
                    let o = (y * mw + x) * 3;
                    for k in 0..3 {
                        out[o + k] = value(i, k);
                    }
                }
            }
        }
    }
}
