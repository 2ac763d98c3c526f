//! The output conventions and input types users' exports come in, each against ONNX
//! Runtime's Python API: reduced-resolution logits, probabilities, argmaxed labels, FP16
//! inputs and outputs, a model with two outputs, a fixed input size and a fixed batch.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn config(stem: &str) -> PathBuf {
    let p = root()
        .join("tests/data/configs")
        .join(format!("{stem}.toml"));
    assert!(p.exists(), "{} missing", p.display());
    p
}

fn onnxruntime_labels(dir: &Path, image: &Path, model: &Path) -> Png {
    let args = [
        "--config",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
    ];
    reference_labels(dir, "ort_semantic.py", &args)
}

/// Three different 250x170 images as an image sequence; returns the pattern and the files.
fn sequence(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    let files: Vec<PathBuf> = (0..3)
        .map(|i| {
            let made = make_image(dir, 250, 170, 20 + i);
            let named = dir.join(format!("img_{i:03}.png"));
            std::fs::rename(&made, &named).unwrap();
            named
        })
        .collect();
    (dir.join("img_%03d.png"), files)
}

/// Every frame's labels agree with ONNX Runtime's on at least 99.9% of pixels.
fn assert_matches(stem: &str, infer: &str) -> Vec<Png> {
    let dir = tempfile::tempdir().unwrap();
    let (pattern, files) = sequence(dir.path());
    let model = config(stem);
    let ours = label_maps(dir.path(), &pattern, &model, infer, files.len());
    for (i, (png, file)) in ours.iter().zip(&files).enumerate() {
        let theirs = onnxruntime_labels(dir.path(), file, &model);
        let a = agreement(png, &theirs);
        eprintln!("{stem} frame {i} ({infer}): agreement {:.4}%", a * 100.0);
        assert!(a >= 0.999, "{stem} frame {i}: agreement {:.3}%", a * 100.0);
    }
    ours
}

#[test]
fn logits_at_a_quarter_of_the_input_resolution() {
    assert_matches("seg_reduced", "");
}

#[test]
fn probabilities() {
    assert_matches("seg_probs", "");
}

#[test]
fn argmaxed_labels() {
    assert_matches("seg_labels", "");
}

#[test]
fn fp16_inputs_and_outputs() {
    assert_matches("seg_fp16", "");
}

#[test]
fn fixed_input_size_is_stretched() {
    assert_matches("seg_fixed", "");
}

#[test]
fn batches_of_frames() {
    assert_matches("seg_probs", "batch = 3");
}

#[test]
fn fixed_batch_model_is_padded() {
    assert_matches("seg_batch2", "batch = 3");
}

#[test]
fn parallel_workers_keep_frame_order() {
    assert_matches("seg_reduced", "workers = 2\nthreads = 1");
}

// The config chooses which of several outputs is read.
#[test]
fn the_configured_output_of_two_is_read() {
    let out = assert_matches("seg_two_outputs_out", "");
    let aux = assert_matches("seg_two_outputs_aux", "");
    let a = agreement(&out[0], &aux[0]);
    assert!(
        a < 0.8,
        "out and aux agree on {:.1}%: the same output was read",
        a * 100.0
    );
}

/// `pre_post = "graph"` (pre- and post-processing as ONNX graphs on the session's device)
/// agrees with ONNX Runtime's Python API as the host path does, and with the host path on at
/// least 99.9% of every frame's pixels.
fn assert_graph_matches_host(stem: &str, infer: &str) {
    let host = assert_matches(stem, infer);
    let graph = assert_matches(stem, &format!("{infer}\npre_post = \"graph\""));
    for (i, (h, g)) in host.iter().zip(&graph).enumerate() {
        let a = agreement(h, g);
        eprintln!("{stem} frame {i}: graph vs host {:.4}%", a * 100.0);
        assert!(
            a >= 0.999,
            "{stem} frame {i}: graph vs host {:.3}%",
            a * 100.0
        );
    }
}

#[test]
fn in_graph_reduced_logits_on_padded_frames() {
    assert_graph_matches_host("seg_reduced", "");
}

#[test]
fn in_graph_full_resolution_probabilities() {
    assert_graph_matches_host("seg_probs", "batch = 2");
}

#[test]
fn in_graph_stretched_to_a_fixed_size() {
    assert_graph_matches_host("seg_fixed", "");
}

#[test]
fn in_graph_fp16_inputs_and_outputs() {
    assert_graph_matches_host("seg_fp16", "");
}

/// NV12 planes from the decoder go into the graph (`nv12 = true` on the file source): the
/// labels agree on at least 99.9% of every frame's pixels with the host path's on the RGB
/// an independent decoder's planes give by the standard's formula (PyAV's 4:2:0 planes,
/// `tests/reference/video.py exact`: the matrix and range the stream states, rounded to
/// bytes once), for the trained default in FP32 and in FP16 (batches of two) on the
/// synthetic world's H.264 clip. Segstream's own host path decodes with a fixed-point
/// converter (yuvutils, up to 1.7 levels off the formula, `tests/in_graph.rs`); against it
/// the bound is 99.8% (0.11-0.13% of the labels move, all at class boundaries).
#[test]
fn in_graph_nv12_from_the_decoder() {
    let dir = tempfile::tempdir().unwrap();
    // H.264, 4:2:0, 640x360, BT.601 limited range (the decoder gives I420, interleaved
    // into NV12).
    let clip = root().join("assets/sample.mp4");
    let exact = dir.path().join("exact");
    reference(
        "video.py",
        &[
            "exact",
            clip.to_str().unwrap(),
            exact.to_str().unwrap(),
            "4",
        ],
    );
    let pattern = exact.join("%06d.png");
    for (name, infer) in [
        ("deeplabv3plus_mobilenet_v2_synthetic", ""),
        ("deeplabv3plus_mobilenet_v2_synthetic_fp16", "batch = 2"),
    ] {
        let model = root().join("configs").join(format!("{name}.toml"));
        let formula = label_maps(dir.path(), &pattern, &model, infer, 4);
        let host = label_maps(dir.path(), &clip, &model, infer, 4);
        let (nv12, log) = label_maps_with(
            dir.path(),
            &clip,
            "nv12 = true",
            &model,
            &format!("{infer}\npre_post = \"graph\""),
            4,
            &["--log-level", "info"],
        );
        assert!(
            log.contains("as NV12 planes"),
            "{name}: the frames did not go in as NV12: {log}"
        );
        for (i, ((f, h), g)) in formula.iter().zip(&host).zip(&nv12).enumerate() {
            let (a, b) = (agreement(f, g), agreement(h, g));
            eprintln!(
                "{name} frame {i}: NV12 in graph vs the formula's RGB {:.4}%, vs segstream's \
                 own RGB {:.4}%",
                a * 100.0,
                b * 100.0
            );
            assert!(a >= 0.999, "{name} frame {i}: {:.3}%", a * 100.0);
            assert!(b >= 0.998, "{name} frame {i}: {:.3}%", b * 100.0);
        }
    }
}

/// Two workers, each with its own in-graph sessions (on CUDA, its own stream: frames in
/// flight at once), keep frame order and the labels.
#[test]
fn in_graph_parallel_workers_keep_frame_order() {
    assert_graph_matches_host("seg_reduced", "workers = 2\nthreads = 1");
}

#[test]
fn in_graph_labels_and_fixed_batch() {
    assert_graph_matches_host("seg_labels", "");
    assert_graph_matches_host("seg_batch2", "batch = 3");
}
