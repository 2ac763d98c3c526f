//! refine: the dense CRF against Krähenbühl's densecrf (pydensecrf2), and against the truth.

mod common;

use std::path::Path;

use common::*;
use segstream::frame::{RgbImage, ScoreKind};
use segstream::refine::{mean_field, Appearance, CrfParams, Smooth};

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
        (
            256,
            192,
            3,
            19,
            CrfParams {
                iterations: 8,
                smooth: Smooth {
                    sxy: 5.0,
                    weight: 3.0,
                },
                appearance: Appearance {
                    sxy: 40.0,
                    srgb: 20.0,
                    weight: 6.0,
                },
                ..CrfParams::default()
            },
        ),
        // The kernels a 1/4-scale refinement works with: a smoothness kernel narrower than a
        // pixel (one grid cell per pixel).
        (
            240,
            136,
            4,
            19,
            CrfParams {
                iterations: 5,
                smooth: Smooth {
                    sxy: 0.75,
                    weight: 3.0,
                },
                appearance: Appearance {
                    sxy: 20.0,
                    srgb: 13.0,
                    weight: 10.0,
                },
                ..CrfParams::default()
            },
        ),
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
        // With settled pixels (the default) and as exact mean field.
        let agreement = |settle: f32| {
            let refined = mean_field(
                &image,
                &probs,
                classes,
                ScoreKind::Probabilities,
                &CrfParams { settle, ..params },
                &|| false,
            )
            .unwrap();
            let same = refined
                .labels
                .iter()
                .zip(&expected.data)
                .filter(|(a, b)| a == b)
                .count();
            same as f64 / expected.data.len() as f64
        };
        let (settled, exact) = (agreement(params.settle), agreement(1.0));
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
            "{width}x{height} seed {seed}: agreement {settled:.5} ({exact:.5} exact), reference \
             changed {:.1}% of the argmax",
            100.0 * changed as f64 / raw.len() as f64
        );
        assert!(
            changed as f64 > 0.02 * raw.len() as f64,
            "the CRF changed too little"
        );
        for (what, agreement) in [("settling", settled), ("exact", exact)] {
            assert!(
                agreement >= 0.99,
                "{width}x{height} seed {seed}, {what}: {agreement}"
            );
        }
    }
}

/// Mean IoU over the classes present in the truth or the prediction.
fn mean_iou(pred: &[u8], truth: &[u8]) -> f64 {
    let mut inter = [0u64; 256];
    let mut union = [0u64; 256];
    for (&p, &t) in pred.iter().zip(truth) {
        if p == t {
            inter[p as usize] += 1;
            union[p as usize] += 1;
        } else {
            union[p as usize] += 1;
            union[t as usize] += 1;
        }
    }
    let present: Vec<usize> = (0..256).filter(|&c| union[c] > 0).collect();
    present
        .iter()
        .map(|&c| inter[c] as f64 / union[c] as f64)
        .sum::<f64>()
        / present.len() as f64
}

/// Box blur of one plane, radius `r`, edges clamped.
fn blur(plane: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    let pass = |src: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let mut s = 0f32;
                for k in 0..=2 * r {
                    let d = k as isize - r as isize;
                    let (xx, yy) = if horizontal {
                        ((x as isize + d).clamp(0, w as isize - 1) as usize, y)
                    } else {
                        (x, (y as isize + d).clamp(0, h as isize - 1) as usize)
                    };
                    s += src[yy * w + xx];
                }
                out[y * w + x] = s / (2 * r + 1) as f32;
            }
        }
        out
    };
    pass(&pass(plane, true), false)
}

#[test]
fn refinement_recovers_the_synthetic_scene() {
    use segstream::frame::ClassScores;
    use segstream::frame::Geometry;
    use segstream::refine::refine_frame;

    let (w, h, classes) = (320usize, 180usize, 19usize);
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut noise = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let (mut raw_sum, mut refined_sum, mut half_sum) = (0.0, 0.0, 0.0);
    for t in [0u64, 40, 80] {
        let (image, truth) = segstream::source::synthetic::render(w as u32, h as u32, 11, t);
        // A blurry, noisy model: the true map blurred, plus smooth and pixel noise.
        let mut data = Vec::with_capacity(classes * w * h);
        for c in 0..classes {
            let onehot: Vec<f32> = truth
                .data
                .iter()
                .map(|&l| if l as usize == c { 4.0 } else { 0.0 })
                .collect();
            let bias = noise();
            let blurred = blur(&onehot, w, h, 4);
            data.extend(blurred.iter().map(|v| v + bias + 2.0 * noise()));
        }
        let scores = ClassScores {
            kind: ScoreKind::Logits,
            classes,
            width: w as u32,
            height: h as u32,
            data,
            geometry: Geometry {
                frame_width: w as u32,
                frame_height: h as u32,
                model_width: w as u32,
                model_height: h as u32,
                stretched: false,
            },
            upsampling: None,
        };
        let raw: Vec<u8> = (0..w * h)
            .map(|i| {
                (0..classes)
                    .max_by(|&a, &b| {
                        scores.data[a * w * h + i].total_cmp(&scores.data[b * w * h + i])
                    })
                    .unwrap() as u8
            })
            .collect();
        let params = CrfParams::default();
        let (refined, _) = refine_frame(&image, &scores, &params, 1, &|| false).unwrap();
        let (half, _) = refine_frame(&image, &scores, &params, 2, &|| false).unwrap();
        let (a, b, c) = (
            mean_iou(&raw, &truth.data),
            mean_iou(&refined.data, &truth.data),
            mean_iou(&half.data, &truth.data),
        );
        eprintln!("frame {t}: mean IoU raw {a:.4}, refined {b:.4}, refined at 1/2 {c:.4}");
        raw_sum += a;
        refined_sum += b;
        half_sum += c;
    }
    let (raw, refined, half) = (raw_sum / 3.0, refined_sum / 3.0, half_sum / 3.0);
    assert!(refined > raw + 0.05, "refined {refined} vs raw {raw}");
    assert!(half > raw + 0.02, "refined at 1/2 {half} vs raw {raw}");
}

/// The `in` and `out` columns of a stage's row in `run`'s summary.
fn stage_counts(summary: &str, stage: &str) -> (u64, u64) {
    let row = summary
        .lines()
        .find(|l| l.split_whitespace().next() == Some(stage))
        .unwrap_or_else(|| panic!("no {stage} row in: {summary}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    (cols[1].parse().unwrap(), cols[2].parse().unwrap())
}

#[test]
fn refine_stage_on_a_file_loses_nothing_and_parallel_workers_change_nothing() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("clip.mp4");
    make_video(&video, 10, 160, 96, "pattern=ball");
    let run = |workers: usize, infer: &str| {
        let tag = format!("{workers}{}", infer.len());
        let out = dir.path().join(format!("labels_{tag}"));
        let p = pipeline_file(
            dir.path(),
            &format!("refine_{tag}.toml"),
            &format!(
                "[source]\ntype = \"file\"\npath = {video:?}\n\n\
                 [[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\n{infer}\n\n\
                 [[transforms]]\ntype = \"refine\"\nworkers = {workers}\nthreads = 1\n\
                 iterations = 4\nsmooth = {{ sxy = 2, weight = 3 }}\n\
                 appearance = {{ sxy = 40, srgb = 15, weight = 8 }}\n\n\
                 [[transforms]]\ntype = \"composite\"\n\n\
                 [[sinks]]\ntype = \"png\"\ndir = {out:?}\n"
            ),
        );
        let o = run_with_deadline(
            segstream(&["run", p.to_str().unwrap()]),
            Duration::from_secs(300),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let summary = stderr(&o);
        assert_eq!(stage_counts(&summary, "refine"), (10, 10), "{summary}");
        assert!(!summary.contains("unprocessed"), "{summary}");
        (0..10)
            .map(|i| read_png(&out.join(format!("{i:06}.png"))).data)
            .collect::<Vec<_>>()
    };
    let one = run(1, "");
    let three = run(3, "");
    assert!(one == three, "three workers gave other labels than one");
    // The host path hands refine the scores from before the model's final Resize, which
    // refine reads through it; the whole model (`fuse_resize = false`, and the in-graph
    // path) hands it the Resize's output.
    for infer in ["fuse_resize = false", "pre_post = \"graph\""] {
        let whole = run(1, infer);
        let (same, all) = one.iter().zip(&whole).fold((0, 0), |(s, a), (x, y)| {
            let equal = x.iter().zip(y).filter(|(p, q)| p == q).count();
            (s + equal, a + x.len())
        });
        assert!(
            same as f64 >= 0.999 * all as f64,
            "refined frames after {infer} differ in {} of {all} bytes",
            all - same
        );
    }
}

#[test]
fn live_source_with_a_budget_passes_late_frames_through_and_counts_them() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_file(
        dir.path(),
        "live.toml",
        "[source]\ntype = \"test\"\npattern = \"ball\"\nwidth = 320\nheight = 180\n\
         fps = 30\nframes = 40\nlive = true\n\n\
         [[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\n\n\
         [[transforms]]\ntype = \"refine\"\nbudget_ms = 1\n\n\
         [[sinks]]\ntype = \"null\"\n",
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap()]),
        Duration::from_secs(300),
    );
    let summary = stderr(&o);
    assert!(o.status.success(), "{summary}");
    let (refine_in, refine_out) = stage_counts(&summary, "refine");
    assert_eq!(refine_in, refine_out, "{summary}");
    // Every frame refine saw ran out of its 1 ms: passed through, and said so.
    let line = summary
        .lines()
        .find(|l| l.starts_with("refine: ") && l.contains("passed through unprocessed"))
        .unwrap_or_else(|| panic!("no skipped count in: {summary}"));
    let skipped: u64 = line["refine: ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(skipped >= 1 && skipped <= refine_in, "{line}");
    // Latency stays bounded: queues drop the oldest frames instead of growing.
    let p99: f64 = summary
        .split("p99 ")
        .nth(1)
        .and_then(|s| s.split(" ms").next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no p99 latency in: {summary}"));
    assert!(p99 < 20_000.0, "p99 latency {p99} ms");
}

#[test]
fn refine_config_problems_are_reported() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let labels_model = root().join("tests/data/configs/seg_labels.toml");
    let p = pipeline_file(
        dir.path(),
        "bad.toml",
        &format!(
            "[source]\ntype = \"test\"\n\n\
             [[transforms]]\ntype = \"refine\"\nmasks = true\n\n\
             [[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\n\
             tiling = {{ width = 256, height = 256 }}\n\n\
             [[transforms]]\ntype = \"refine\"\nscale = 3\nsmooth = {{ sxy = 0 }}\n\n\
             [[transforms]]\ntype = \"infer\"\nmodel = {labels_model:?}\n\n\
             [[transforms]]\ntype = \"refine\"\n\n\
             [[sinks]]\ntype = \"null\"\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["validate", p.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for expect in [
        "transforms[0]: refine needs an infer transform before it",
        "transforms[0].masks: refining masks needs an instance infer transform before it",
        "transforms[2]: refine cannot follow a tiled infer",
        "transforms[2].scale: 3 is not one of 1, 2, 4",
        "transforms[2].smooth.sxy: 0 is out of range",
        "transforms[4]: refine needs class scores",
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("error:") && l.contains(expect)),
            "validate did not report {expect:?}: {err}"
        );
    }
    let unknown = pipeline_file(
        dir.path(),
        "unknown.toml",
        "[source]\ntype = \"test\"\n\n\
         [[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\n\n\
         [[transforms]]\ntype = \"refine\"\nappearance = { sxy = 80, srgb = 13, wieght = 1 }\n\n\
         [[sinks]]\ntype = \"null\"\n",
    );
    let o = run_with_deadline(
        segstream(&["validate", unknown.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("unknown field `wieght`"), "{err}");
}

/// With `masks = true` after an instance infer (and no semantic one), refine redraws each
/// instance's mask and leaves the detections themselves as they were.
#[test]
fn refine_masks_redraws_instance_masks_only() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = root().join("tests/data/configs/maskrcnn_raw.toml");
    let run = |refine: &str, name: &str| {
        let jsonl = d.join(format!("{name}.jsonl"));
        let p = pipeline_file(
            d,
            &format!("{name}.toml"),
            &format!(
                "[source]\ntype = \"synthetic\"\nwidth = 320\nheight = 192\nframes = 3\n\n\
                 [[transforms]]\ntype = \"infer\"\nmodel = {model:?}\n\n\
                 {refine}\
                 [[sinks]]\ntype = \"jsonl\"\npath = {jsonl:?}\n"
            ),
        );
        let o = run_with_deadline(
            segstream(&["run", p.to_str().unwrap()]),
            Duration::from_secs(300),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines, stderr(&o))
    };
    let (plain, _) = run("", "plain");
    let (refined, summary) = run(
        "[[transforms]]\ntype = \"refine\"\nmasks = true\n\n",
        "refined",
    );
    assert_eq!(stage_counts(&summary, "refine"), (3, 3), "{summary}");
    assert_eq!(plain.len(), 3);
    let (mut instances, mut redrawn) = (0, 0);
    for (a, b) in plain.iter().zip(&refined) {
        let (a, b) = (
            a["instances"].as_array().unwrap(),
            b["instances"].as_array().unwrap(),
        );
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(b) {
            for key in ["category_id", "score", "bbox"] {
                assert_eq!(a[key], b[key], "{key}");
            }
            instances += 1;
            redrawn += (a["segmentation"] != b["segmentation"]) as usize;
        }
    }
    assert!(instances > 0, "the model found nothing to refine");
    assert!(redrawn > 0, "no mask of {instances} changed");
}
