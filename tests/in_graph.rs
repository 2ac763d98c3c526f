//! The in-graph pre-processing (`pre_post = "graph"`) gives the model the tensor the host
//! path gives it, for every layout, colour order, size policy and element type: compared
//! value by value, without a model (the convention tests compare the labels).

mod common;

use common::*;
use half::f16;
use ort::value::{DynValue, Tensor, ValueType};
use segstream::frame::{Nv12Image, RgbImage, YuvColour};
use segstream::infer::{
    frame_geometry, graph, normalize, resize, session_builder, write_item, InputConfig, Model,
};
use yuvutils_rs::{
    rgb_to_yuv_nv12, yuv_nv12_to_rgb, YuvBiPlanarImage, YuvBiPlanarImageMut, YuvChromaSubsampling,
    YuvConversionMode, YuvRange, YuvStandardMatrix,
};

/// A 70x45 frame (neither side a multiple of 16) of varied pixels.
fn frame() -> RgbImage {
    let (w, h) = (70u32, 45u32);
    let data = (0..w * h * 3)
        .map(|i| ((i * 7919 + i / 3 * 31) % 256) as u8)
        .collect();
    RgbImage::new(w, h, data)
}

/// The model input as the host path writes it.
fn host(image: &RgbImage, input: &InputConfig) -> Vec<f32> {
    let g = frame_geometry(image.width, image.height, input.size);
    let (mw, mh) = (g.model_width, g.model_height);
    let mut n = normalize(image, input);
    if g.stretched {
        n = resize(n, mw, mh).unwrap();
    }
    let mut item = vec![0f32; (3 * mw * mh) as usize];
    let (w, h) = (n.width.min(mw), n.height.min(mh));
    write_item(&mut item, input.layout, &n, 0, 0, w, h, mw);
    item
}

/// The model input as the `pre` graph computes it on the CPU provider.
fn in_graph(model: &Model, image: &RgbImage) -> (Vec<i64>, Vec<f32>) {
    let (w, h) = (image.width as usize, image.height as usize);
    let frame = Tensor::from_array(([1usize, h, w, 3], image.data.clone())).unwrap();
    run_pre(
        model,
        graph::FrameFormat::Rgb,
        (image.width, image.height),
        vec![(graph::FRAME, frame.into_dyn())],
    )
}

/// The model input as the NV12 `pre` graph computes it from `planes`.
fn in_graph_nv12(model: &Model, planes: &Nv12Image) -> (Vec<i64>, Vec<f32>) {
    let (w, h) = (planes.width as usize, planes.height as usize);
    let (cw, ch) = planes.chroma_size();
    let luma = Tensor::from_array(([1usize, h, w], planes.luma.clone())).unwrap();
    let chroma =
        Tensor::from_array(([1usize, ch as usize, cw as usize, 2], planes.chroma.clone())).unwrap();
    run_pre(
        model,
        graph::FrameFormat::Nv12(planes.colour),
        (planes.width, planes.height),
        vec![
            (graph::LUMA, luma.into_dyn()),
            (graph::CHROMA, chroma.into_dyn()),
        ],
    )
}

/// Runs the `pre` graph for `format` on `frames` (a `size` frame): the output's shape and
/// values, widened to f32.
fn run_pre(
    model: &Model,
    format: graph::FrameFormat,
    size: (u32, u32),
    mut frames: Vec<(&'static str, DynValue)>,
) -> (Vec<i64>, Vec<f32>) {
    let input = &model.config.input;
    let options = session_builder(model, &[], 1).unwrap();
    let mut pre = graph::pre(input, format, &options).unwrap();
    let g = frame_geometry(size.0, size.1, input.size);
    let (w, h) = (size.0 as i64, size.1 as i64);
    let (mw, mh) = (g.model_width as i64, g.model_height as i64);
    let (name, aux) = if g.stretched {
        (graph::SIZES, vec![1, 3, mh, mw])
    } else {
        (graph::PADS, vec![0, 0, 0, 0, 0, 0, mh - h, mw - w])
    };
    frames.push((
        name,
        Tensor::from_array(([aux.len()], aux)).unwrap().into_dyn(),
    ));
    let out = pre.run(frames).unwrap();
    let value = &out[graph::IMAGE];
    let ValueType::Tensor { shape, .. } = value.dtype() else {
        panic!("not a tensor")
    };
    let shape = shape.to_vec();
    let data = match value.try_extract_tensor::<f32>() {
        Ok((_, d)) => d.to_vec(),
        Err(_) => {
            let (_, d) = value.try_extract_tensor::<f16>().unwrap();
            d.iter().map(|v| v.to_f32()).collect()
        }
    };
    (shape, data)
}

/// The config of the MobileNetV2 export with the input convention edited.
fn convention(dir: &std::path::Path, layout: &str, color: &str, size: &str, dtype: &str) -> Model {
    let config = edited_config(dir, "deeplabv3plus_mobilenet_v2", |t| {
        t.replace("layout = \"NCHW\"", &format!("layout = \"{layout}\""))
            .replace("color = \"RGB\"", &format!("color = \"{color}\""))
            .replace(
                "size = { policy = \"pad\", multiple_of = 16 }",
                &format!("size = {size}\ndtype = \"{dtype}\""),
            )
    });
    let model = Model::load(&config).unwrap();
    let input = &model.config.input;
    assert_eq!(
        (format!("{:?}", input.layout), format!("{:?}", input.color)),
        (layout.to_string(), color.to_string()),
        "{layout} {color}: the config edit did not take"
    );
    model
}

/// The largest difference between two model inputs.
fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
}

#[test]
fn pre_graph_writes_the_host_paths_input() {
    let dir = tempfile::tempdir().unwrap();
    let image = frame();
    let mut checked = 0;
    for layout in ["NCHW", "NHWC", "CHW"] {
        for color in ["RGB", "BGR"] {
            for size in [
                "{ policy = \"pad\", multiple_of = 16 }",
                "{ policy = \"stretch\", width = 96, height = 64 }",
            ] {
                for dtype in ["float32", "float16"] {
                    let model = convention(dir.path(), layout, color, size, dtype);
                    let what = format!("{layout} {color} {size} {dtype}");
                    let input = &model.config.input;
                    let g = frame_geometry(image.width, image.height, input.size);
                    let (mw, mh) = (g.model_width as i64, g.model_height as i64);
                    let expected_shape = match layout {
                        "NCHW" => vec![1, 3, mh, mw],
                        "NHWC" => vec![1, mh, mw, 3],
                        _ => vec![3, mh, mw],
                    };
                    let ours = host(&image, input);
                    let (shape, theirs) = in_graph(&model, &image);
                    assert_eq!(shape, expected_shape, "{what}");
                    // Half precision rounds to 11 bits; floats differ only in the
                    // interpolation's rounding.
                    let tolerance = if dtype == "float16" { 4e-3 } else { 1e-4 };
                    let worst = largest_difference(&ours, &theirs);
                    eprintln!("{what}: largest difference {worst}");
                    assert!(worst <= tolerance, "{what}: largest difference {worst}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 24);
}

/// `frame()` encoded as NV12 by yuvutils (an independent converter), in `colour`.
fn nv12(image: &RgbImage, full_range: bool, bt709: bool) -> Nv12Image {
    let (w, h) = (image.width, image.height);
    let mut planes = YuvBiPlanarImageMut::alloc(w, h, YuvChromaSubsampling::Yuv420);
    let (range, matrix) = yuv_colour(full_range, bt709);
    rgb_to_yuv_nv12(
        &mut planes,
        &image.data,
        w * 3,
        range,
        matrix,
        YuvConversionMode::Balanced,
    )
    .unwrap();
    let colour = YuvColour {
        full_range,
        ..if bt709 {
            YuvColour::BT709
        } else {
            YuvColour::BT601
        }
    };
    Nv12Image::new(
        w,
        h,
        planes.y_plane.borrow().to_vec(),
        planes.uv_plane.borrow().to_vec(),
        colour,
    )
}

fn yuv_colour(full_range: bool, bt709: bool) -> (YuvRange, YuvStandardMatrix) {
    (
        if full_range {
            YuvRange::Full
        } else {
            YuvRange::Limited
        },
        if bt709 {
            YuvStandardMatrix::Bt709
        } else {
            YuvStandardMatrix::Bt601
        },
    )
}

/// The RGB yuvutils decodes from `planes`: what the file source hands the host path.
fn decoded(planes: &Nv12Image, full_range: bool, bt709: bool) -> RgbImage {
    let (w, h) = (planes.width, planes.height);
    let image = YuvBiPlanarImage {
        y_plane: &planes.luma,
        y_stride: w,
        uv_plane: &planes.chroma,
        uv_stride: 2 * planes.chroma_size().0,
        width: w,
        height: h,
    };
    let (range, matrix) = yuv_colour(full_range, bt709);
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    yuv_nv12_to_rgb(
        &image,
        &mut rgb,
        w * 3,
        range,
        matrix,
        YuvConversionMode::Balanced,
    )
    .unwrap();
    RgbImage::new(w, h, rgb)
}

/// The model input of a padded NCHW float32 model, from `planes` by the standard's formula
/// in floats (each chroma sample serving its 2x2 pixels; clamped to 0-255, not rounded).
fn formula_input(planes: &Nv12Image, model: &Model) -> Vec<f32> {
    let input = &model.config.input;
    let g = frame_geometry(planes.width, planes.height, input.size);
    let (mw, mh) = (g.model_width as usize, g.model_height as usize);
    let (w, h) = (planes.width as usize, planes.height as usize);
    let cw = planes.chroma_size().0 as usize;
    let (m, o) = planes.colour.to_rgb();
    let bgr = format!("{:?}", input.color) == "BGR";
    let mut item = vec![0f32; 3 * mw * mh];
    for y in 0..h {
        for x in 0..w {
            let luma = planes.luma[y * w + x] as f32;
            let c = (y / 2) * cw + x / 2;
            let (u, v) = (planes.chroma[2 * c] as f32, planes.chroma[2 * c + 1] as f32);
            for k in 0..3 {
                let channel = if bgr { 2 - k } else { k };
                let value =
                    (m[channel][0] * luma + m[channel][1] * u + m[channel][2] * v + o[channel])
                        .clamp(0.0, 255.0);
                item[(k * mh + y) * mw + x] = (value / input.scale - input.mean[k]) / input.std[k];
            }
        }
    }
    item
}

/// NV12 planes into the graph give the model the input the host path computes from the RGB
/// an independent converter (yuvutils) decodes from the same planes, within that RGB's
/// rounding to bytes and yuvutils' fixed point: for both colour orders, both size policies,
/// half precision, BT.601 limited and BT.709 full range, on a frame of odd height (the last
/// chroma row serves one pixel row). Padded NCHW inputs also equal the standard's formula in
/// floats.
#[test]
fn pre_graph_takes_nv12_as_the_host_path_takes_its_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let image = frame();
    assert_eq!(image.height % 2, 1, "an odd height");
    let mut checked = 0;
    for (full_range, bt709) in [(false, false), (true, true)] {
        let planes = nv12(&image, full_range, bt709);
        let rgb = decoded(&planes, full_range, bt709);
        for (layout, color) in [("NCHW", "BGR"), ("NHWC", "RGB")] {
            for size in [
                "{ policy = \"pad\", multiple_of = 16 }",
                "{ policy = \"stretch\", width = 96, height = 64 }",
            ] {
                for dtype in ["float32", "float16"] {
                    let model = convention(dir.path(), layout, color, size, dtype);
                    let input = &model.config.input;
                    let what = format!(
                        "{layout} {color} {size} {dtype} full range {full_range} BT.709 {bt709}"
                    );
                    let ours = host(&rgb, input);
                    let (shape, theirs) = in_graph_nv12(&model, &planes);
                    let (rgb_shape, _) = in_graph(&model, &rgb);
                    assert_eq!(shape, rgb_shape, "{what}");
                    // yuvutils rounds to bytes in fixed point: up to 1.7 levels from the
                    // formula here, 0.46-0.6 on average. The graph keeps floats.
                    let level = 1.0 / (input.scale * input.std.iter().cloned().fold(1.0, f32::min));
                    let tolerance = 2.0 * level + if dtype == "float16" { 4e-3 } else { 0.0 };
                    let worst = largest_difference(&ours, &theirs);
                    let mean = ours
                        .iter()
                        .zip(&theirs)
                        .map(|(a, b)| (a - b).abs())
                        .sum::<f32>()
                        / ours.len() as f32;
                    eprintln!(
                        "{what}: largest difference {:.2} levels, mean {:.3}",
                        worst / level,
                        mean / level
                    );
                    assert!(worst <= tolerance, "{what}: largest difference {worst}");
                    assert!(mean <= 0.75 * level, "{what}: mean difference {mean}");
                    if layout == "NCHW" && size.contains("pad") && dtype == "float32" {
                        let exact = largest_difference(&formula_input(&planes, &model), &theirs);
                        eprintln!("{what}: against the formula {exact:.2e}");
                        assert!(exact <= 1e-4, "{what}: {exact} from the formula");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 16);
}
