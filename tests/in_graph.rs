//! The in-graph pre-processing (`pre_post = "graph"`) gives the model the tensor the host
//! path gives it, for every layout, colour order, size policy and element type: compared
//! value by value, without a model (the convention tests compare the labels).

mod common;

use common::*;
use half::f16;
use ort::value::{Tensor, ValueType};
use segstream::frame::RgbImage;
use segstream::infer::{
    frame_geometry, graph, normalize, resize, session_builder, write_item, InputConfig, Model,
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
    let input = &model.config.input;
    let options = session_builder(model, &[], 1).unwrap();
    let mut pre = graph::pre(input, &options).unwrap();
    let g = frame_geometry(image.width, image.height, input.size);
    let (w, h) = (image.width as i64, image.height as i64);
    let (mw, mh) = (g.model_width as i64, g.model_height as i64);
    let frame =
        Tensor::from_array(([1usize, h as usize, w as usize, 3], image.data.clone())).unwrap();
    let (name, aux) = if g.stretched {
        (graph::SIZES, vec![1, 3, mh, mw])
    } else {
        (graph::PADS, vec![0, 0, 0, 0, 0, 0, mh - h, mw - w])
    };
    let aux = Tensor::from_array(([aux.len()], aux)).unwrap();
    let out = pre
        .run(ort::inputs![graph::FRAME => frame, name => aux])
        .unwrap();
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
                    let config = edited_config(dir.path(), "deeplabv3plus_mobilenet_v2", |t| {
                        t.replace("layout = \"NCHW\"", &format!("layout = \"{layout}\""))
                            .replace("color = \"RGB\"", &format!("color = \"{color}\""))
                            .replace(
                                "size = { policy = \"pad\", multiple_of = 16 }",
                                &format!("size = {size}\ndtype = \"{dtype}\""),
                            )
                    });
                    let model = Model::load(&config).unwrap();
                    let what = format!("{layout} {color} {size} {dtype}");
                    let input = &model.config.input;
                    assert_eq!(
                        (format!("{:?}", input.layout), format!("{:?}", input.color)),
                        (layout.to_string(), color.to_string()),
                        "{what}: the config edit did not take"
                    );
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
                    let worst = ours
                        .iter()
                        .zip(&theirs)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    eprintln!("{what}: largest difference {worst}");
                    assert!(worst <= tolerance, "{what}: largest difference {worst}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 24);
}
