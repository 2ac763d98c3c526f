//! The label maps segstream writes agree with ONNX Runtime's own (Python API) output.

mod common;

use std::path::Path;

use common::*;

/// PNG image in → infer → label PNGs out; returns segstream's label map for the image.
fn segstream_labels(dir: &Path, image: &Path, model_config: &Path) -> Png {
    segstream_labels_with(dir, image, model_config, "")
}

/// `segstream_labels` with more settings of the infer stage (TOML lines).
fn segstream_labels_with(dir: &Path, image: &Path, model_config: &Path, infer: &str) -> Png {
    label_maps(dir, image, model_config, infer, 1).remove(0)
}

fn onnxruntime_labels(dir: &Path, image: &Path, model_config: &Path) -> Png {
    onnxruntime_labels_with(dir, image, model_config, &[])
}

/// The reference's labels with extra arguments (`--openvino BF16 ...`).
fn onnxruntime_labels_with(dir: &Path, image: &Path, model_config: &Path, extra: &[&str]) -> Png {
    let out = dir.join(format!(
        "ref_{}{}.png",
        model_config.file_stem().unwrap().to_string_lossy(),
        extra.join("_").replace('/', "_")
    ));
    let args = config_image_out(model_config, image, &out, extra);
    let stats = reference("ort_semantic.py", &args);
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
    let theirs = onnxruntime_labels(dir.path(), &image, &config);
    // By default a padded frame's model runs without its final Resize, which the argmax
    // does (`fuse_resize`); the whole model must give the same labels.
    for infer in ["", "fuse_resize = false"] {
        let ours = segstream_labels_with(dir.path(), &image, &config, infer);
        assert_eq!((ours.width, ours.height, ours.channels), (width, height, 1));
        let a = agreement(&ours, &theirs);
        eprintln!(
            "{model} {width}x{height} ({infer:?}): agreement with ONNX Runtime {:.4}%",
            a * 100.0
        );
        assert!(
            a >= 0.999,
            "{model} ({infer:?}): segstream agrees with ONNX Runtime on {:.4}% of pixels",
            a * 100.0
        );
    }
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
    // The in-graph path (pre_post = "graph") swaps the planes in its own graph.
    let graph_bgr = label_maps(dir.path(), &image, &bgr, "pre_post = \"graph\"", 1).remove(0);
    let a = agreement(&graph_bgr, &ours_bgr);
    assert!(a >= 0.999, "BGR in graph vs host: {:.4}%", a * 100.0);
    assert!(agreement(&graph_bgr, &ref_rgb) < 0.9);
    let cross = agreement(&ours_bgr, &ref_rgb);
    assert!(
        cross < 0.9,
        "swapping colour order changed only {:.1}% of labels",
        (1.0 - cross) * 100.0
    );
}

/// OpenVINO (ONNX Runtime's plugin EP) in segstream gives the labels ONNX Runtime's Python
/// API gives with the same EP and precision, and at FP32 those of the CPU provider, on a
/// frame of the world the trained default knows (clear margins, so no near-ties).
#[test]
fn openvino_matches_onnxruntime_with_the_same_provider() {
    let dir = tempfile::tempdir().unwrap();
    let image = synthetic_frame(dir.path(), 320, 192, 5);
    let config = edited_config(dir.path(), "deeplabv3plus_mobilenet_v2_synthetic", |t| t);
    let library = openvino_library();
    if !openvino_sees_cpu() {
        // ONNX Runtime's Python API is offered no OpenVINO CPU device here (as on an AMD EPYC):
        // segstream must refuse by name, in one line, rather than run on another provider.
        let pipeline = pipeline_file(
            dir.path(),
            "openvino.toml",
            &format!(
                "[source]\ntype = \"file\"\npath = {image:?}\n\n\
                 [[transforms]]\ntype = \"infer\"\nmodel = {config:?}\n\
                 providers = [{{ kind = \"openvino\" }}]\n\n\
                 [[sinks]]\ntype = \"null\"\n"
            ),
        );
        assert_fails(&pipeline, &[], &[NO_OPENVINO_CPU]);
        return;
    }
    let cpu = onnxruntime_labels(dir.path(), &image, &config);
    for precision in ["FP32", "BF16"] {
        let ours = label_maps(
            dir.path(),
            &image,
            &config,
            &format!("providers = [{{ kind = \"openvino\", precision = \"{precision}\" }}]"),
            1,
        )
        .remove(0);
        let theirs = onnxruntime_labels_with(
            dir.path(),
            &image,
            &config,
            &[
                "--openvino",
                precision,
                "--openvino-library",
                library.to_str().unwrap(),
            ],
        );
        let (same_ep, vs_cpu) = (agreement(&ours, &theirs), agreement(&ours, &cpu));
        eprintln!(
            "OpenVINO {precision}: {:.4}% as ONNX Runtime's OpenVINO, {:.4}% as its CPU provider",
            same_ep * 100.0,
            vs_cpu * 100.0
        );
        assert!(same_ep >= 0.999, "{precision}: {:.4}%", same_ep * 100.0);
        let least = if precision == "FP32" { 0.999 } else { 0.98 };
        assert!(
            vs_cpu >= least,
            "{precision} vs CPU: {:.4}%",
            vs_cpu * 100.0
        );
    }
}
