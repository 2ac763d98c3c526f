//! refine: the dense CRF against Krähenbühl's densecrf (pydensecrf2), and against the truth.

mod common;

use std::path::Path;

use common::*;
use segstream::frame::{RgbImage, ScoreKind};
use segstream::refine::{mean_field, CrfParams};

/// The picture and the class probabilities the reference script made in `dir`.
fn load(dir: &Path, classes: usize) -> (RgbImage, Vec<f32>) {
    let png = read_png(&dir.join("image.png"));
    assert_eq!(png.channels, 3);
    let image = RgbImage::new(png.width, png.height, png.data);
    let bytes = std::fs::read(dir.join("probs.f32")).unwrap();
    let probs: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(probs.len(), classes * image.pixels());
    (image, probs)
}

fn make(dir: &Path, width: u32, height: u32, seed: u32, classes: usize) {
    reference(
        "densecrf.py",
        &[
            "make",
            "--width",
            &width.to_string(),
            "--height",
            &height.to_string(),
            "--seed",
            &seed.to_string(),
            "--classes",
            &classes.to_string(),
            "--dir",
            dir.to_str().unwrap(),
        ],
    );
}

#[test]
fn labels_agree_with_densecrf() {
    let tmp = tempfile::tempdir().unwrap();
    for (width, height, seed, classes, params) in [
        (320, 240, 1, 19, CrfParams::default()),
        (400, 300, 2, 7, CrfParams::default()),
        (256, 192, 3, 19, {
            let mut p = CrfParams::default();
            p.iterations = 8;
            p.smooth.sxy = 5.0;
            p.appearance.sxy = 40.0;
            p.appearance.srgb = 20.0;
            p.appearance.weight = 6.0;
            p
        }),
    ] {
        let dir = tmp.path().join(format!("case{seed}"));
        make(&dir, width, height, seed, classes);
        let truth = dir.join("ref.png");
        reference(
            "densecrf.py",
            &[
                "crf",
                "--dir",
                dir.to_str().unwrap(),
                "--classes",
                &classes.to_string(),
                "--iterations",
                &params.iterations.to_string(),
                "--sxy",
                &params.smooth.sxy.to_string(),
                "--wsmooth",
                &params.smooth.weight.to_string(),
                "--bxy",
                &params.appearance.sxy.to_string(),
                "--srgb",
                &params.appearance.srgb.to_string(),
                "--wapp",
                &params.appearance.weight.to_string(),
                "--out",
                truth.to_str().unwrap(),
            ],
        );
        let expected = read_png(&truth);
        let (image, probs) = load(&dir, classes);
        let refined = mean_field(
            &image,
            &probs,
            classes,
            ScoreKind::Probabilities,
            &params,
            &|| false,
        )
        .unwrap();
        let same = refined
            .labels
            .iter()
            .zip(&expected.data)
            .filter(|(a, b)| a == b)
            .count();
        let agreement = same as f64 / expected.data.len() as f64;
        // The CRF must have done something for the comparison to mean anything.
        let raw: Vec<u8> = (0..image.pixels())
            .map(|i| {
                (0..classes)
                    .max_by(|&a, &b| {
                        probs[a * image.pixels() + i].total_cmp(&probs[b * image.pixels() + i])
                    })
                    .unwrap() as u8
            })
            .collect();
        let changed = raw
            .iter()
            .zip(&expected.data)
            .filter(|(a, b)| a != b)
            .count();
        eprintln!(
            "{width}x{height} seed {seed}: agreement {agreement:.5}, reference changed {:.1}% \
             of the argmax",
            100.0 * changed as f64 / raw.len() as f64
        );
        assert!(
            changed as f64 > 0.02 * raw.len() as f64,
            "the CRF changed too little"
        );
        assert!(
            agreement >= 0.99,
            "{width}x{height} seed {seed}: {agreement}"
        );
    }
}
