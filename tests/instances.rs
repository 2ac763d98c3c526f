//! Instance segmentation (Mask R-CNN) against torchvision's own post-processing and ONNX
//! Runtime's Python API: mask pasting, both output conventions, class filters, slices.

mod common;

use std::path::{Path, PathBuf};

use common::{config_image_out, make_image, read_png, reference, root};
use segstream::frame::MatchMetric;
use segstream::frame::RgbImage;
use segstream::frame::{Instance, Mask};
use segstream::infer::{EngineOptions, PrePost, Segmenter};
use segstream::infer::{Model, TilingConfig};
use segstream::instance::paste::paste;
use segstream::tile::Blend;
use serde_json::Value;

/// The mask as a frame-sized bitmap.
fn bitmap(mask: &Mask, width: u32, height: u32) -> Vec<bool> {
    let mut out = vec![false; (width * height) as usize];
    for y in 0..height {
        for x in 0..width {
            out[(y * width + x) as usize] = mask.get(x, y);
        }
    }
    out
}

fn bits(s: &str) -> Vec<bool> {
    s.bytes().map(|b| b == b'1').collect()
}

fn iou(a: &[bool], b: &[bool]) -> f64 {
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// A small seeded generator (xorshift), so the cases need no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next()
    }
}

/// Blob-like mask probabilities: a few Gaussian bumps, so thresholds cut curved edges.
fn blob_probs(rng: &mut Rng, m: usize) -> Vec<f32> {
    let bumps: Vec<(f32, f32, f32, f32)> = (0..3)
        .map(|_| {
            (
                rng.range(0.0, m as f32),
                rng.range(0.0, m as f32),
                rng.range(2.0, m as f32 / 2.0),
                rng.range(0.4, 1.0),
            )
        })
        .collect();
    (0..m * m)
        .map(|i| {
            let (x, y) = ((i % m) as f32, (i / m) as f32);
            bumps
                .iter()
                .map(|&(cx, cy, r, a)| a * (-((x - cx).powi(2) + (y - cy).powi(2)) / (r * r)).exp())
                .fold(0.0f32, f32::max)
        })
        .collect()
}

#[test]
fn paste_matches_torchvision_paste_masks_in_image() {
    let (w, h) = (64u32, 48u32);
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let mut boxes: Vec<[f32; 4]> = vec![
        [10.3, 12.7, 50.2, 40.9],    // inside
        [20.0, 20.0, 21.0, 21.0],    // a 1-pixel box
        [33.6, 7.2, 34.1, 7.9],      // smaller than a pixel
        [20.0, 20.0, 20.0, 20.0],    // zero size
        [-10.5, -5.2, 30.1, 20.3],   // partly outside, top-left
        [50.0, 30.0, 90.0, 70.0],    // partly outside, bottom-right
        [0.0, 0.0, 64.0, 48.0],      // the whole frame, touching every edge
        [40.0, 0.0, 64.0, 10.0],     // touching the top and right edges
        [0.0, 37.5, 12.0, 48.0],     // touching the left and bottom edges
        [63.0, 47.0, 64.0, 48.0],    // the last pixel
        [-30.0, -20.0, 100.0, 90.0], // larger than the frame
        [70.0, 10.0, 90.0, 20.0],    // outside
    ];
    for _ in 0..40 {
        let (x, y) = (rng.range(-15.0, 70.0), rng.range(-15.0, 55.0));
        let (bw, bh) = (rng.range(0.5, 45.0), rng.range(0.5, 40.0));
        boxes.push([x, y, x + bw, y + bh]);
    }
    let probs: Vec<Vec<f32>> = boxes.iter().map(|_| blob_probs(&mut rng, 28)).collect();
    let cases: Vec<Value> = boxes
        .iter()
        .zip(&probs)
        .map(|(b, p)| serde_json::json!({"probs": p, "m": 28, "box": b, "width": w, "height": h}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cases.json");
    let output = dir.path().join("pasted.json");
    std::fs::write(&input, serde_json::json!({ "cases": cases }).to_string()).unwrap();
    reference(
        "paste_masks.py",
        &[
            "--cases",
            input.to_str().unwrap(),
            "--out",
            output.to_str().unwrap(),
        ],
    );
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    let mut differing = Vec::new();
    for (i, (b, p)) in boxes.iter().zip(&probs).enumerate() {
        let mask = paste(p, 28, *b, w, h);
        let ours = bitmap(&mask, w, h);
        let theirs = bits(expected["masks"][i].as_str().unwrap());
        let diff = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
        if diff > 0 {
            differing.push(format!(
                "box {b:?}: {diff} pixels, IoU {:.4}",
                iou(&ours, &theirs)
            ));
        }
        // The window stays inside the frame and holds the whole mask.
        assert!(
            mask.x + mask.width <= w && mask.y + mask.height <= h,
            "{b:?}"
        );
        assert_eq!(mask.area(), ours.iter().filter(|v| **v).count(), "{b:?}");
    }
    assert!(
        differing.is_empty(),
        "differs from torchvision: {differing:#?}"
    );
    // torchvision raises for boxes wholly outside the image; segstream gives an empty mask.
    for i in expected["failed"].as_array().unwrap() {
        let b = boxes[i.as_u64().unwrap() as usize];
        assert!(
            b[0] >= w as f32 || b[1] >= h as f32 || b[2] < 0.0 || b[3] < 0.0,
            "{b:?}"
        );
    }
}

fn load(config: &str) -> Model {
    Model::load(&root().join("tests/data/configs").join(config)).unwrap()
}

fn image(dir: &Path, w: u32, h: u32, seed: u32) -> (PathBuf, RgbImage) {
    let path = make_image(dir, w, h, seed);
    let png = read_png(&path);
    (path, RgbImage::new(png.width, png.height, png.data))
}

/// Runs the reference on `config` and returns its detections.
fn reference_detections(config: &Path, image: &Path, extra: &[&str]) -> Vec<Value> {
    let out = tempfile::NamedTempFile::new().unwrap();
    reference(
        "ort_instances.py",
        &config_image_out(config, image, out.path(), extra),
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(out.path()).unwrap()).unwrap();
    v["detections"].as_array().unwrap().clone()
}

/// Matches our detections to the reference's as sets (near-equal scores may swap order):
/// each reference detection takes an unmatched one of its class with the same score and box
/// (within float noise) and the best mask IoU, which must be at least 0.99.
fn assert_same_detections(ours: &[Instance], theirs: &[Value], w: u32, h: u32) {
    let summary = |d: &[Instance]| {
        d.iter()
            .map(|d| (d.class, d.score, d.bbox))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ours.len(),
        theirs.len(),
        "detection counts differ: ours {:?}, reference {:?}",
        summary(ours),
        theirs
            .iter()
            .map(|d| (&d["class"], &d["score"], &d["box"]))
            .collect::<Vec<_>>()
    );
    let maps: Vec<Vec<bool>> = ours.iter().map(|d| bitmap(&d.mask, w, h)).collect();
    let mut used = vec![false; ours.len()];
    for t in theirs {
        let class = t["class"].as_u64().unwrap() as u32;
        let score = t["score"].as_f64().unwrap() as f32;
        let bbox: Vec<f32> = (0..4)
            .map(|k| t["box"][k].as_f64().unwrap() as f32)
            .collect();
        let mask = bits(t["mask"].as_str().unwrap());
        let best = (0..ours.len())
            .filter(|&i| {
                let d = &ours[i];
                !used[i]
                    && d.class == class
                    && (d.score - score).abs() < 1e-4
                    && d.bbox.iter().zip(&bbox).all(|(a, b)| (a - b).abs() < 0.05)
            })
            .map(|i| (i, iou(&maps[i], &mask)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((i, overlap)) = best else {
            panic!(
                "no detection like reference class {class} score {score} box {bbox:?}; ours: {:?}",
                summary(ours)
            );
        };
        used[i] = true;
        assert!(
            overlap >= 0.99,
            "class {class} box {bbox:?}: mask IoU {overlap}"
        );
    }
}

fn check_against_reference(config: &str) {
    check_against_reference_with(config, EngineOptions::default());
}

fn check_against_reference_with(config: &str, options: EngineOptions) {
    let dir = tempfile::tempdir().unwrap();
    let (path, img) = image(dir.path(), 320, 240, 7);
    let model = load(config);
    let mut seg = Segmenter::new(model.clone(), &[], 2, options).unwrap();
    let ours = seg.detect(&img).unwrap();
    let theirs = reference_detections(&model.config_path, &path, &[]);
    assert!(
        theirs.len() >= 4,
        "the test model should find several objects"
    );
    assert!(ours.iter().any(|d| d.mask.area() > 0));
    assert_same_detections(&ours, &theirs, img.width, img.height);
}

#[test]
fn raw_masks_match_torchvision() {
    check_against_reference("maskrcnn_raw.toml");
}

#[test]
fn raw_per_class_masks_match_torchvision() {
    check_against_reference("maskrcnn_raw_per_class.toml");
}

#[test]
fn pasted_masks_match_torchvision() {
    check_against_reference("maskrcnn_pasted.toml");
}

// Pre-processing in a graph (pre_post = "graph"): the same detections and masks.
#[test]
fn in_graph_pre_processing_keeps_the_detections() {
    let graph = EngineOptions {
        pre_post: PrePost::Graph,
        ..EngineOptions::default()
    };
    check_against_reference_with("maskrcnn_raw.toml", graph);
    check_against_reference_with("maskrcnn_pasted.toml", graph);
}

/// A copy of a test config with `classes` set and the ONNX path made absolute.
fn with_classes(dir: &Path, config: &str, classes: &[&str]) -> Model {
    let model = load(config);
    let text = std::fs::read_to_string(&model.config_path).unwrap();
    let onnx = model.onnx_path.display().to_string();
    let list = classes
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("onnx = ") {
                format!("onnx = {onnx:?}")
            } else if l.starts_with("max_detections") {
                format!("{l}\nclasses = [{list}]")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join(format!("filtered_{}", config));
    std::fs::write(&path, text).unwrap();
    Model::load(&path).unwrap()
}

#[test]
fn class_filters_keep_only_the_named_classes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, img) = image(dir.path(), 320, 240, 7);
    let model = with_classes(dir.path(), "maskrcnn_raw.toml", &["traffic light"]);
    let ours = Segmenter::new(model.clone(), &[], 2, EngineOptions::default())
        .unwrap()
        .detect(&img)
        .unwrap();
    let theirs = reference_detections(&model.config_path, &path, &[]);
    assert!(!theirs.is_empty() && ours.iter().all(|d| d.class == 10));
    assert_same_detections(&ours, &theirs, img.width, img.height);
    // A class the model never finds: a frame with no detections is a normal frame.
    let model = with_classes(dir.path(), "maskrcnn_pasted.toml", &["toothbrush"]);
    let ours = Segmenter::new(model, &[], 2, EngineOptions::default())
        .unwrap()
        .detect(&img)
        .unwrap();
    assert!(ours.is_empty());
}

#[test]
fn unknown_filter_classes_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = load("maskrcnn_raw.toml");
    let text = std::fs::read_to_string(&model.config_path)
        .unwrap()
        .replace(
            "max_detections = 100",
            "max_detections = 100\nclasses = [\"car\", \"unicorn\"]",
        )
        .replace(
            "../../../models/test/maskrcnn_raw.onnx",
            &model.onnx_path.display().to_string(),
        );
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let err = Model::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("output.classes[1]") && err.contains("unicorn"),
        "{err}"
    );
}

fn slices(width: u32, height: u32, overlap: u32, full_frame: bool) -> TilingConfig {
    TilingConfig {
        width: Some(width),
        height: Some(height),
        overlap,
        scale: 1.0,
        blend: Blend::Linear,
        full_frame,
        merge: MatchMetric::Ios,
        merge_threshold: 0.5,
    }
}

fn check_slices(config: &str, full_frame: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (path, img) = image(dir.path(), 400, 300, 11);
    let model = load(config);
    let options = EngineOptions {
        batch: 1,
        tiling: Some(slices(192, 160, 48, full_frame)),
        ..EngineOptions::default()
    };
    let ours = Segmenter::new(model.clone(), &[], 2, options)
        .unwrap()
        .detect(&img)
        .unwrap();
    let mut extra = vec!["--tile", "192", "160", "48"];
    if full_frame {
        extra.push("--full-frame");
    }
    let theirs = reference_detections(&model.config_path, &path, &extra);
    assert!(theirs.len() >= 4, "slices should find several objects");
    assert_same_detections(&ours, &theirs, img.width, img.height);
}

#[test]
fn raw_slices_merge_like_the_reference() {
    check_slices("maskrcnn_raw.toml", false);
}

#[test]
fn pasted_slices_and_the_full_frame_merge_like_the_reference() {
    check_slices("maskrcnn_pasted.toml", true);
}

#[test]
fn a_mask_convention_the_model_does_not_have_is_a_clear_error() {
    // The bundled torchvision export pastes its masks; a config calling them raw is wrong.
    let dir = tempfile::tempdir().unwrap();
    let model = load("maskrcnn_pasted.toml");
    let text = std::fs::read_to_string(&model.config_path)
        .unwrap()
        .replace("masks_format = \"pasted\"", "masks_format = \"raw\"")
        .replace(
            "../../../models/maskrcnn_mobilenet_v3.onnx",
            &model.onnx_path.display().to_string(),
        );
    let path = dir.path().join("wrong.toml");
    std::fs::write(&path, text).unwrap();
    // Its masks' size is symbolic, so the mismatch shows on the first frame.
    let (_, img) = image(dir.path(), 160, 120, 3);
    let err = Segmenter::new(
        Model::load(&path).unwrap(),
        &[],
        1,
        EngineOptions::default(),
    )
    .unwrap()
    .detect(&img)
    .expect_err("raw masks must be m x m")
    .to_string();
    assert!(
        err.contains("raw masks have shape") && err.contains("m, m]"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn instance_slices_must_be_native_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.toml");
    let config = root().join("tests/data/configs/maskrcnn_raw.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[source]\ntype = \"test\"\n\n[[transforms]]\ntype = \"infer\"\nmodel = {:?}\n\
             tiling = {{ width = 192, height = 160, overlap = 32, scale = 0.5 }}\n\n\
             [[sinks]]\ntype = \"null\"\n",
            config.display().to_string()
        ),
    )
    .unwrap();
    let out = common::run_with_deadline(
        common::segstream(&["validate", pipeline.to_str().unwrap()]),
        std::time::Duration::from_secs(60),
    );
    let err = common::stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("tiling") && err.contains("scale = 1"), "{err}");
}

#[test]
fn an_instance_stage_after_a_semantic_one_keeps_its_labels() {
    // DeepLabV3+ then Mask R-CNN in one pipeline: PNG label maps (from the semantic stage)
    // and instances both come out.
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), 160, 120, 5);
    let pipeline = dir.path().join("p.toml");
    let labels = dir.path().join("labels");
    let seg = root().join("tests/data/configs/seg_fcn.toml");
    let inst = root().join("tests/data/configs/maskrcnn_raw.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[source]\ntype = \"file\"\npath = {:?}\n\n\
             [[transforms]]\ntype = \"infer\"\nmodel = {:?}\n\n\
             [[transforms]]\ntype = \"infer\"\nmodel = {:?}\n\n\
             [[sinks]]\ntype = \"png\"\nwhat = \"labels\"\ndir = {:?}\n",
            img.display().to_string(),
            seg.display().to_string(),
            inst.display().to_string(),
            labels.display().to_string()
        ),
    )
    .unwrap();
    let out = common::run_with_deadline(
        common::segstream(&["run", pipeline.to_str().unwrap()]),
        std::time::Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let written: Vec<_> = std::fs::read_dir(&labels).unwrap().collect();
    assert_eq!(written.len(), 1);
    let png = read_png(&written[0].as_ref().unwrap().path());
    assert_eq!((png.width, png.height, png.channels), (160, 120, 1));
}
