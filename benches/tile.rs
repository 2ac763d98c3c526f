//! Tiling + stitching + argmax at 2048x1024 with 19 classes, against one DeepLabV3+
//! MobileNetV2 CPU inference on the same frame, in the same process.
//!
//! `cargo bench --bench tile` (needs the models from scripts/setup). Prints the ratio last.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use segstream::frame::{Geometry, RgbImage};
use segstream::infer::Model;
use segstream::infer::{normalize, write_item, EngineOptions, Segmenter, Stitch, StitchBuffers};
use segstream::tile::{Blend, TileGrid};

const W: u32 = 2048;
const H: u32 = 1024;
const CLASSES: usize = 19;
const TILE: (u32, u32) = (1024, 512);
const OVERLAP: u32 = 128;

/// A driving-scene-like frame: gradients and solid blocks.
fn frame() -> RgbImage {
    let mut data = Vec::with_capacity((W * H * 3) as usize);
    for y in 0..H {
        for x in 0..W {
            let block = ((x / 97) ^ (y / 61)) % 5;
            data.extend_from_slice(&[
                (x * 255 / W) as u8 ^ (block as u8 * 40),
                (y * 255 / H) as u8,
                (block * 50) as u8,
            ]);
        }
    }
    RgbImage::new(W, H, data)
}

fn model() -> Model {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Model::load(&root.join("configs/deeplabv3plus_mobilenet_v2.toml"))
        .unwrap_or_else(|e| panic!("{e} (run scripts/setup first)"))
}

/// Everything the tile path does besides inference: normalize, cut tiles into batch items,
/// blend each tile's scores (here: fixed synthetic scores) and take the argmax. Buffers are
/// reused between frames, as the Segmenter does.
fn tile_stitch_argmax(
    image: &RgbImage,
    model: &Model,
    scores: &[f32],
    pool: &mut StitchBuffers,
    item: &mut [f32],
) -> u64 {
    let normalized = normalize(image, &model.config.input);
    let grid = TileGrid::new(W, H, TILE.0, TILE.1, OVERLAP).unwrap();
    let geometry = Geometry {
        frame_width: W,
        frame_height: H,
        model_width: W,
        model_height: H,
        stretched: false,
    };
    let buffers = std::mem::take(pool);
    let mut stitch = Stitch::with_buffers(CLASSES, grid, Blend::Linear, geometry, buffers);
    for tile in grid.tiles() {
        let layout = model.config.input.layout;
        write_item(
            item,
            layout,
            &normalized,
            tile.x,
            tile.y,
            tile.width,
            tile.height,
            TILE.0,
        );
        stitch.add(&tile, scores, TILE.1 as usize, TILE.0 as usize);
    }
    let (labels, buffers) = stitch.finish_and_recycle();
    *pool = buffers;
    labels.data.iter().map(|&v| v as u64).sum()
}

fn synthetic_scores() -> Vec<f32> {
    let plane = (TILE.0 * TILE.1) as usize;
    (0..CLASSES * plane)
        .map(|i| ((i * 2654435761) % 1000) as f32 / 100.0)
        .collect()
}

fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2]
}

fn bench(c: &mut Criterion) {
    let image = frame();
    let model = model();
    let scores = synthetic_scores();
    let mut pool = StitchBuffers::default();
    let mut item = vec![0f32; (TILE.0 * TILE.1 * 3) as usize];
    let mut segmenter = Segmenter::new(
        model.clone(),
        &[],
        0,
        EngineOptions {
            batch: 1,
            tiling: None,
            ..Default::default()
        },
    )
    .expect("model loads");

    let mut g = c.benchmark_group("tile_2048x1024");
    g.throughput(Throughput::Elements((W * H) as u64));
    g.sample_size(10);
    g.bench_function(BenchmarkId::new("tile_stitch_argmax", "19 classes"), |b| {
        b.iter(|| tile_stitch_argmax(&image, &model, &scores, &mut pool, &mut item))
    });
    g.measurement_time(Duration::from_secs(20));
    g.bench_function(
        BenchmarkId::new("deeplabv3plus_mobilenet_v2_inference", "whole frame"),
        |b| b.iter(|| segmenter.segment(&image).unwrap()),
    );
    g.finish();

    // The same comparison as plain medians, printed as a ratio.
    let tiling = median(
        || {
            std::hint::black_box(tile_stitch_argmax(
                &image, &model, &scores, &mut pool, &mut item,
            ));
        },
        5,
    );
    let inference = median(|| drop(segmenter.segment(&image).unwrap()), 5);
    println!(
        "tile+stitch+argmax {:.1} ms vs one inference {:.1} ms: {:.1}% (median of 5 each)",
        tiling.as_secs_f64() * 1e3,
        inference.as_secs_f64() * 1e3,
        100.0 * tiling.as_secs_f64() / inference.as_secs_f64()
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
