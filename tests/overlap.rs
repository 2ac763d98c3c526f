//! The infer stage's overlap (`overlap = true`: the model runs one batch on its own thread
//! while the stage's thread finishes the batch before and prepares the batch after) gives
//! every frame the labels ONNX Runtime's Python API gives it, in frame order, and the same
//! labels and class scores as the one-after-the-other path, for every output convention,
//! input type and batch layout, with frames of two sizes in one call.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use segstream::frame::{ClassScores, LabelMap, RgbImage};
use segstream::infer::{EngineOptions, Model, Segmenter};

/// Six images, the fourth and fifth of another size (so a call holds three batches of one
/// size, then one of the other, then the first size again), as PNG files and frames.
fn images(dir: &Path) -> Vec<(PathBuf, RgbImage)> {
    (0..6)
        .map(|i| {
            let (w, h) = if i == 3 || i == 4 {
                (190, 130)
            } else {
                (250, 170)
            };
            let file = make_image(dir, w, h, 40 + i);
            let png = read_png(&file);
            assert_eq!(png.channels, 3, "{}", file.display());
            (file, RgbImage::new(png.width, png.height, png.data))
        })
        .collect()
}

type Results = Vec<(usize, LabelMap, Option<ClassScores>)>;

/// What `segment_each` emits for `frames`, in emission order.
fn emitted(model: &Model, batch: usize, overlap: bool, frames: &[&RgbImage]) -> (bool, Results) {
    let options = EngineOptions {
        batch,
        scores: true,
        overlap,
        ..Default::default()
    };
    let mut segmenter = Segmenter::new(model.clone(), &[], 1, options).unwrap();
    let overlaps = segmenter.overlaps();
    let mut out = Vec::new();
    segmenter
        .segment_each(frames, |i, labels, scores| {
            out.push((i, labels, scores));
            Ok(())
        })
        .unwrap();
    (overlaps, out)
}

#[test]
fn overlapped_frames_match_onnxruntime_and_the_serial_path() {
    let dir = tempfile::tempdir().unwrap();
    let images = images(dir.path());
    let frames: Vec<&RgbImage> = images.iter().map(|(_, i)| i).collect();
    let mut checked = 0;
    for (stem, batch) in [
        ("seg_reduced", 1),
        ("seg_probs", 2),
        ("seg_labels", 1),
        ("seg_fp16", 1),
        ("seg_fixed", 1),
        ("seg_batch2", 3),
    ] {
        let config = root()
            .join("tests/data/configs")
            .join(format!("{stem}.toml"));
        let model = Model::load(&config).unwrap();
        let (overlaps, ours) = emitted(&model, batch, true, &frames);
        assert!(overlaps, "{stem}: overlap was not used");
        let (serial_overlaps, serial) = emitted(&model, batch, false, &frames);
        assert!(!serial_overlaps);
        // ONNX Runtime's labels for every frame, from one session.
        let mut args = vec!["--config".to_string(), config.display().to_string()];
        let outs: Vec<PathBuf> = (0..images.len())
            .map(|i| dir.path().join(format!("{stem}_ort_{i}.png")))
            .collect();
        for ((file, _), out) in images.iter().zip(&outs) {
            args.extend(["--image".into(), file.display().to_string()]);
            args.extend(["--out".into(), out.display().to_string()]);
        }
        reference(
            "ort_semantic.py",
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let order: Vec<usize> = ours.iter().map(|r| r.0).collect();
        assert_eq!(order, (0..frames.len()).collect::<Vec<_>>(), "{stem}");
        for ((i, labels, scores), (_, serial_labels, serial_scores)) in ours.iter().zip(&serial) {
            let image = &images[*i].1;
            assert_eq!(
                (labels.width, labels.height),
                (image.width, image.height),
                "{stem} frame {i}"
            );
            assert!(
                labels.data == serial_labels.data,
                "{stem} frame {i}: labels differ from the serial path's"
            );
            assert_eq!(
                scores.as_ref().map(|s| &s.data),
                serial_scores.as_ref().map(|s| &s.data),
                "{stem} frame {i}: class scores differ from the serial path's"
            );
            let theirs = read_png(&outs[*i]);
            let ours = Png {
                width: labels.width,
                height: labels.height,
                channels: 1,
                data: labels.data.clone(),
            };
            let a = agreement(&ours, &theirs);
            eprintln!(
                "{stem} batch {batch} frame {i}: agreement with ONNX Runtime {:.4}%",
                a * 100.0
            );
            assert!(a >= 0.999, "{stem} frame {i}: agreement {:.3}%", a * 100.0);
            checked += 1;
        }
    }
    assert_eq!(checked, 36);
}

#[test]
fn overlap_is_not_used_where_it_cannot_run() {
    let model = Model::load(&root().join("tests/data/configs/maskrcnn_raw.toml")).unwrap();
    let options = EngineOptions {
        overlap: true,
        ..Default::default()
    };
    let segmenter = Segmenter::new(model, &[], 1, options).unwrap();
    assert!(!segmenter.overlaps(), "instance models decode on the host");
}
