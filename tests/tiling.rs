//! The tile path: native-resolution segmentation in overlapping tiles, against an
//! independent NumPy/ONNX Runtime implementation of the same documented geometry.

mod common;

use std::path::Path;

use common::*;

/// Runs segstream on one PNG with the given infer options; returns its label map.
fn segstream_labels(dir: &Path, image: &Path, model: &Path, infer_options: &str) -> Png {
    label_maps(dir, image, model, infer_options, 1).remove(0)
}

fn reference_tiled(dir: &Path, image: &Path, model: &Path, args: &[&str]) -> Png {
    let mut all = vec![
        "--config",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    reference_labels(dir, "ort_tiled.py", &all)
}

fn check(width: u32, height: u32, infer: &str, args: &[&str]) -> Png {
    let dir = tempfile::tempdir().unwrap();
    let image = make_image(dir.path(), width, height, 5);
    let model = edited_config(dir.path(), "deeplabv3plus_mobilenet_v2", |t| t);
    let ours = segstream_labels(dir.path(), &image, &model, infer);
    let theirs = reference_tiled(dir.path(), &image, &model, args);
    let a = agreement(&ours, &theirs);
    eprintln!(
        "tiles {infer}: agreement with the reference {:.4}%",
        a * 100.0
    );
    assert!(
        a >= 0.999,
        "tiled labels agree with the reference on {:.3}%",
        a * 100.0
    );
    ours
}

#[test]
fn native_resolution_tiles_match_the_reference() {
    let ours = check(
        400,
        250,
        "batch = 4\ntiling = { width = 192, height = 128, overlap = 32 }",
        &["--tile", "192", "128", "--overlap", "32"],
    );
    // No seams: label changes are not concentrated on the tile borders. Tiles start at
    // x = 0, 104, 208 (3 columns over 400 px) and y = 0, 61, 122.
    let (w, h) = (ours.width as usize, ours.height as usize);
    let changes_at = |x: usize| {
        (0..h)
            .filter(|&y| ours.data[y * w + x] != ours.data[y * w + x - 1])
            .count()
    };
    let all: usize = (1..w).map(changes_at).sum();
    let mean = all as f64 / (w - 1) as f64;
    for border in [104, 192, 208, 296] {
        let c = changes_at(border) as f64;
        assert!(
            c <= 3.0 * mean + 3.0,
            "column {border}: {c} label changes vs {mean:.1} on average (a seam)"
        );
    }
}

#[test]
fn gaussian_blending_matches_the_reference() {
    check(
        300,
        200,
        "tiling = { width = 128, height = 128, overlap = 48, blend = \"gaussian\" }",
        &[
            "--tile",
            "128",
            "128",
            "--overlap",
            "48",
            "--blend",
            "gaussian",
        ],
    );
}

#[test]
fn tiles_at_half_scale_match_the_reference() {
    check(
        500,
        330,
        "batch = 3\ntiling = { width = 128, height = 96, overlap = 24, scale = 0.5 }",
        &["--tile", "128", "96", "--overlap", "24", "--scale", "0.5"],
    );
}

// A frame smaller than a tile: one tile, padded.
#[test]
fn frame_smaller_than_a_tile() {
    check(
        100,
        60,
        "tiling = { width = 128, height = 96, overlap = 16 }",
        &["--tile", "128", "96", "--overlap", "16"],
    );
}

// With a fully convolutional model (receptive-field radius 3 px), tiles must reproduce the
// whole-image result wherever no tile edge is within reach of the receptive field.
#[test]
fn fully_convolutional_tiles_agree_with_the_whole_image_in_tile_interiors() {
    use segstream::frame::RgbImage;
    use segstream::infer::{EngineOptions, Segmenter};
    use segstream::infer::{Model, TilingConfig};
    use segstream::tile::{Blend, TileGrid};

    let dir = tempfile::tempdir().unwrap();
    let png = read_png(&make_image(dir.path(), 300, 200, 9));
    let image = RgbImage::new(png.width, png.height, png.data);
    let model = Model::load(&root().join("tests/data/configs/seg_fcn.toml")).unwrap();
    let tiling = TilingConfig {
        width: Some(96),
        height: Some(64),
        overlap: 16,
        scale: 1.0,
        blend: Blend::Linear,
        full_frame: false,
        merge: segstream::frame::MatchMetric::Ios,
        merge_threshold: 0.5,
    };
    let options = |tiling| EngineOptions {
        batch: 4,
        tiling,
        ..Default::default()
    };
    let whole = Segmenter::new(model.clone(), &[], 1, options(None))
        .unwrap()
        .segment(&image)
        .unwrap();
    let tiled = Segmenter::new(model, &[], 1, options(Some(tiling)))
        .unwrap()
        .segment(&image)
        .unwrap();

    let grid = TileGrid::new(300, 200, 96, 64, 16).unwrap();
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for t in grid.tiles() {
        xs.extend([t.x as i64, (t.x + t.width) as i64]);
        ys.extend([t.y as i64, (t.y + t.height) as i64]);
    }
    let far = |v: i64, edges: &[i64]| edges.iter().all(|e| (v - e).abs() >= 4);
    let (mut same, mut interior) = (0usize, 0usize);
    for y in 0..200i64 {
        for x in 0..300i64 {
            if far(x, &xs) && far(y, &ys) {
                interior += 1;
                let i = (y * 300 + x) as usize;
                same += (whole.data[i] == tiled.data[i]) as usize;
            }
        }
    }
    let everywhere = whole
        .data
        .iter()
        .zip(&tiled.data)
        .filter(|(a, b)| a == b)
        .count();
    eprintln!(
        "interiors: {same}/{interior} agree; whole frame: {:.3}%",
        100.0 * everywhere as f64 / whole.data.len() as f64
    );
    assert!(
        interior > 20_000,
        "too few interior pixels ({interior}) to judge"
    );
    assert!(
        same as f64 >= 0.999 * interior as f64,
        "interiors agree on {same} of {interior}"
    );
}
