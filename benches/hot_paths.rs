//! The per-frame work around inference at 1920x1080: pre-processing, argmax (direct and
//! with bilinear up-sampling from quarter-resolution scores) and the composite overlay; the
//! pre-processing and argmax rows twice, on the host and as the in-graph sessions of
//! `pre_post = "graph"` (ONNX Runtime's CPU provider, as many threads as cores; the
//! pre-processing also from NV12 planes), in one run.
//!
//! `cargo bench --bench hot_paths` (needs the model configs; no model is run).

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ort::value::{Tensor, TensorElementType, TensorRef};
use segstream::composite::Composite;
use segstream::frame::argmax_scores;
use segstream::frame::{LabelMap, RgbImage, YuvColour};
use segstream::infer::Model;
use segstream::infer::{cores, frame_geometry, graph, normalize, session_builder, write_item};

const W: u32 = 1920;
const H: u32 = 1080;
const CLASSES: usize = 19;

fn frame() -> RgbImage {
    let data = (0..W * H)
        .flat_map(|i| {
            let (x, y) = (i % W, i / W);
            [
                (x % 256) as u8,
                (y % 256) as u8,
                ((x / 64 + y / 64) * 40 % 256) as u8,
            ]
        })
        .collect();
    RgbImage::new(W, H, data)
}

/// Smooth, logit-like scores: each class wins in its own bands.
fn scores(w: usize, h: usize) -> Vec<f32> {
    let plane = w * h;
    (0..CLASSES * plane)
        .map(|i| {
            let (c, p) = ((i / plane) as f32, i % plane);
            let (x, y) = ((p % w) as f32, (p / w) as f32);
            (x * 0.013 * (c + 1.0) * 1920.0 / w as f32).sin() + (y * 0.021 + c).cos()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = Model::load(&root.join("configs/deeplabv3plus_mobilenet_v2.toml"))
        .unwrap_or_else(|e| panic!("{e} (run scripts/setup first)"));
    let image = frame();
    let pixels = (W * H) as u64;
    let mut g = c.benchmark_group("1920x1080");
    g.throughput(Throughput::Elements(pixels));
    g.sample_size(20);

    let input = &model.config.input;
    let padded = frame_geometry(W, H, input.size);
    let (mw, mh) = (padded.model_width, padded.model_height);
    let mut item = vec![0f32; (mw * mh * 3) as usize];
    g.bench_function("preprocess (normalize, pad, NCHW)", |b| {
        b.iter(|| {
            let n = normalize(&image, input);
            item.fill(0.0);
            write_item(&mut item, input.layout, &n, 0, 0, W, H, mw);
        })
    });

    let full = scores(mw as usize, mh as usize);
    g.bench_function("argmax 19 classes", |b| {
        b.iter(|| argmax_scores(&full, CLASSES, mh as usize, mw as usize, &padded))
    });

    let quarter = scores(mw as usize / 4, mh as usize / 4);
    g.bench_function("argmax 19 classes, bilinear from 1/4", |b| {
        b.iter(|| argmax_scores(&quarter, CLASSES, mh as usize / 4, mw as usize / 4, &padded))
    });

    // The same work as ONNX graphs on the CPU provider.
    let options = session_builder(&model, &[], cores()).unwrap();
    let mut pre = graph::pre(input, graph::FrameFormat::Rgb, &options).unwrap();
    let pads = [0, 0, 0, 0, 0, 0, (mh - H) as i64, (mw - W) as i64];
    g.bench_function("preprocess in graph", |b| {
        b.iter(|| {
            let frame =
                TensorRef::from_array_view(([1usize, H as usize, W as usize, 3], &image.data[..]))
                    .unwrap();
            let pads = Tensor::from_array(([8usize], pads.to_vec())).unwrap();
            pre.run(ort::inputs![graph::FRAME => frame, graph::PADS => pads])
                .unwrap();
        })
    });
    // The same from the decoder's NV12 planes (a mid-grey chroma: the cost does not depend
    // on the values).
    let colour = YuvColour::BT709;
    let mut pre_nv12 = graph::pre(input, graph::FrameFormat::Nv12(colour), &options).unwrap();
    let luma: Vec<u8> = image.data.chunks_exact(3).map(|p| p[1]).collect();
    let chroma = vec![128u8; (W * H / 2) as usize];
    g.bench_function("preprocess in graph, NV12", |b| {
        b.iter(|| {
            let luma =
                TensorRef::from_array_view(([1usize, H as usize, W as usize], &luma[..])).unwrap();
            let shape = [1usize, H as usize / 2, W as usize / 2, 2];
            let chroma = TensorRef::from_array_view((shape, &chroma[..])).unwrap();
            let pads = Tensor::from_array(([8usize], pads.to_vec())).unwrap();
            pre_nv12
                .run(ort::inputs![
                    graph::LUMA => luma,
                    graph::CHROMA => chroma,
                    graph::PADS => pads
                ])
                .unwrap();
        })
    });
    let ends = || Tensor::from_array(([2usize], vec![H as i64, W as i64])).unwrap();
    let mut post = graph::post(TensorElementType::Float32, CLASSES, false, &options).unwrap();
    let shape = [1usize, CLASSES, mh as usize, mw as usize];
    g.bench_function("argmax 19 classes in graph", |b| {
        b.iter(|| {
            let scores = TensorRef::from_array_view((shape, &full[..])).unwrap();
            post.run(ort::inputs![graph::SCORES => scores, graph::ENDS => ends()])
                .unwrap();
        })
    });
    let mut post = graph::post(TensorElementType::Float32, CLASSES, true, &options).unwrap();
    let shape = [1usize, CLASSES, mh as usize / 4, mw as usize / 4];
    let sizes = [1, CLASSES as i64, mh as i64, mw as i64];
    g.bench_function("argmax 19 classes, bilinear from 1/4, in graph", |b| {
        b.iter(|| {
            let scores = TensorRef::from_array_view((shape, &quarter[..])).unwrap();
            let sizes = Tensor::from_array(([4usize], sizes.to_vec())).unwrap();
            post.run(ort::inputs![
                graph::SCORES => scores,
                graph::SIZES => sizes,
                graph::ENDS => ends()
            ])
            .unwrap();
        })
    });

    let labels = argmax_scores(&full, CLASSES, mh as usize, mw as usize, &padded);
    let labels = LabelMap::new(W, H, labels.data);
    let composite = Composite::new(0.5, &model.palette);
    g.bench_function("composite overlay", |b| {
        b.iter(|| composite.blend(&image, &labels).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
