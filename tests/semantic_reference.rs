//! The label maps segstream writes agree with ONNX Runtime's own (Python API) output.

mod common;

use std::path::Path;

use common::*;

/// PNG image in → infer → label PNGs out; returns segstream's label map for the image.
fn segstream_labels(dir: &Path, image: &Path, model_config: &Path) -> Png {
    label_maps(dir, image, model_config, "", 1).remove(0)
}

fn onnxruntime_labels(dir: &Path, image: &Path, model_config: &Path) -> Png {
    let out = dir.join(format!(
        "ref_{}.png",
        model_config.file_stem().unwrap().to_string_lossy()
    ));
    let stats = reference(
        "ort_semantic.py",
        &[
            "--config",
            model_config.to_str().unwrap(),
            "--image",
            image.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    // Guard against a degenerate model, which would let a broken pipeline pass: the
    // reference must show several classes.
    let present: u32 = stats
        .split("\"classes_present\": ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        present >= 3,
        "the reference label map is degenerate ({stats}); re-export the models"
    );
    read_png(&out)
}

fn assert_matches_reference(model: &str, edit: impl Fn(String) -> String, width: u32, height: u32) {
    let dir = tempfile::tempdir().unwrap();
    let image = make_image(dir.path(), width, height, 7);
    let config = edited_config(dir.path(), model, edit);
    let ours = segstream_labels(dir.path(), &image, &config);
    let theirs = onnxruntime_labels(dir.path(), &image, &config);
    assert_eq!((ours.width, ours.height, ours.channels), (width, height, 1));
    let a = agreement(&ours, &theirs);
    eprintln!(
        "{model} {width}x{height}: agreement with ONNX Runtime {:.4}%",
        a * 100.0
    );
    assert!(
        a >= 0.999,
        "{model}: segstream agrees with ONNX Runtime on {:.4}% of pixels",
        a * 100.0
    );
}

// 250x170 is not a multiple of 16: the model cannot take it directly, so it is padded.
#[test]
fn deeplabv3plus_mobilenet_v2_matches_onnxruntime_on_padded_frame() {
    assert_matches_reference("deeplabv3plus_mobilenet_v2", |t| t, 250, 170);
}

#[test]
fn deeplabv3plus_resnet50_matches_onnxruntime_on_padded_frame() {
    assert_matches_reference("deeplabv3plus_resnet50", |t| t, 250, 170);
}

// Stretch policy: the frame is resized to the model size and the scores resized back.
#[test]
fn stretched_frame_matches_onnxruntime() {
    assert_matches_reference(
        "deeplabv3plus_mobilenet_v2",
        |t| {
            t.replace(
                "size = { policy = \"pad\", multiple_of = 16 }",
                "size = { policy = \"stretch\", width = 192, height = 128 }",
            )
        },
        250,
        170,
    );
}

// BGR models are fed BGR; the comparison is sensitive enough to notice the difference.
#[test]
fn colour_order_reaches_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let image = make_image(dir.path(), 160, 96, 11);
    let rgb = edited_config(dir.path(), "deeplabv3plus_mobilenet_v2", |t| t);
    let bgr = edited_config(dir.path(), "deeplabv3plus_mobilenet_v2", |t| {
        t.replace("color = \"RGB\"", "color = \"BGR\"")
    });
    let ours_bgr = segstream_labels(dir.path(), &image, &bgr);
    let ref_bgr = onnxruntime_labels(dir.path(), &image, &bgr);
    let ref_rgb = onnxruntime_labels(dir.path(), &image, &rgb);
    assert!(agreement(&ours_bgr, &ref_bgr) >= 0.999);
    let cross = agreement(&ours_bgr, &ref_rgb);
    assert!(
        cross < 0.9,
        "swapping colour order changed only {:.1}% of labels",
        (1.0 - cross) * 100.0
    );
}
