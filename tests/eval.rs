//! `segstream eval` agrees with an independent NumPy computation of the same metrics.

mod common;

use common::*;
use serde_json::Value;

fn close(a: &Value, b: &Value, what: &str) {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-6, "{what}: {x} vs {y}"),
        _ => assert_eq!(a, b, "{what}"),
    }
}

#[test]
fn metrics_match_numpy() {
    let dir = tempfile::tempdir().unwrap();
    let expected: Value = serde_json::from_str(&reference(
        "seg_metrics.py",
        &[dir.path().to_str().unwrap(), "3"],
    ))
    .unwrap();
    let (pred, truth) = (dir.path().join("pred"), dir.path().join("truth"));
    let got = json_output(&eval_command(&pred, &truth, &["--json"]));
    for key in ["pixel_accuracy", "mean_iou", "mean_dice", "pixels"] {
        close(&got[key], &expected[key], key);
    }
    for c in 0..19 {
        for key in ["iou", "dice", "pixels"] {
            close(
                &got["per_class"][c][key],
                &expected["per_class"][c][key],
                &format!("class {c} {key}"),
            );
        }
    }
}

#[test]
fn missing_prediction_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    reference("seg_metrics.py", &[dir.path().to_str().unwrap(), "4"]);
    std::fs::remove_file(dir.path().join("pred/000002.png")).unwrap();
    let (pred, truth) = (dir.path().join("pred"), dir.path().join("truth"));
    let o = eval_command(&pred, &truth, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("000002.png") && err.contains("expected one per ground-truth file"),
        "{err}"
    );
}

const COCO_STATS: [&str; 12] = [
    "ap",
    "ap50",
    "ap75",
    "ap_small",
    "ap_medium",
    "ap_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
];

fn coco_eval(dir: &std::path::Path, extra: &[&str]) -> Value {
    eval_instances(&dir.join("pred.jsonl"), &dir.join("gt.json"), extra)
}

fn assert_same_as_cocoeval(got: &Value, expected: &Value) {
    for key in COCO_STATS {
        let (g, e) = (&got[key], &expected[key]);
        match (g.as_f64(), e.as_f64()) {
            (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-12, "{key}: {x} vs COCOeval {y}"),
            _ => assert_eq!(g, e, "{key}"),
        }
    }
    let cats = expected["per_category"].as_array().unwrap();
    assert_eq!(got["per_category"].as_array().unwrap().len(), cats.len());
    for (k, c) in cats.iter().enumerate() {
        assert_eq!(got["per_category"][k]["id"], c["id"]);
        for key in ["ap", "ap50"] {
            let (g, e) = (&got["per_category"][k][key], &c[key]);
            match (g.as_f64(), e.as_f64()) {
                (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-12, "category {k} {key}"),
                _ => assert_eq!(g, e, "category {k} {key}"),
            }
        }
    }
}

#[test]
fn mask_ap_matches_pycocotools_cocoeval() {
    for seed in ["1", "2", "3"] {
        let dir = tempfile::tempdir().unwrap();
        let expected: Value = serde_json::from_str(&reference(
            "coco_ap.py",
            &[dir.path().to_str().unwrap(), seed],
        ))
        .unwrap();
        // The fixture exercises what it should: all area ranges are populated.
        for key in ["ap_small", "ap_medium", "ap_large"] {
            assert!(expected[key].as_f64().is_some(), "seed {seed}: no {key}");
        }
        let got = coco_eval(dir.path(), &[]);
        assert_same_as_cocoeval(&got, &expected);
        // The fixture's images are also named by sequence number.
        let by_name = coco_eval(dir.path(), &["--match-by", "file-name"]);
        assert_same_as_cocoeval(&by_name, &expected);
    }
}

#[test]
fn frame_without_an_image_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    reference("coco_ap.py", &[dir.path().to_str().unwrap(), "4"]);
    let pred = dir.path().join("pred.jsonl");
    let mut text = std::fs::read_to_string(&pred).unwrap();
    text.push_str("{\"stream\":0,\"seq\":77,\"instances\":[]}\n");
    std::fs::write(&pred, text).unwrap();
    let gt = dir.path().join("gt.json");
    let o = run_with_deadline(
        segstream(&[
            "eval",
            "--instances",
            pred.to_str().unwrap(),
            "--coco-truth",
            gt.to_str().unwrap(),
        ]),
        std::time::Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("pred.jsonl line") && err.contains("frame 77 has no image"),
        "{err}"
    );
}

#[test]
fn panoptic_quality_matches_panopticapi_in_numpy() {
    for seed in ["1", "2"] {
        let dir = tempfile::tempdir().unwrap();
        let expected: Value = serde_json::from_str(&reference(
            "panoptic_pq.py",
            &[dir.path().to_str().unwrap(), seed],
        ))
        .unwrap();
        let (pred, truth) = (dir.path().join("pred"), dir.path().join("truth"));
        let o = run_with_deadline(
            segstream(&[
                "eval",
                "--panoptic-pred",
                pred.to_str().unwrap(),
                "--panoptic-truth",
                truth.to_str().unwrap(),
                "--thing-classes",
                "11,12,13",
                "--json",
            ]),
            std::time::Duration::from_secs(60),
        );
        let got = json_output(&o);
        for part in ["all", "things", "stuff"] {
            for key in ["pq", "sq", "rq", "classes"] {
                close(
                    &got[part][key],
                    &expected[part][key],
                    &format!("{part} {key}"),
                );
            }
        }
        let classes = expected["per_class"].as_array().unwrap();
        assert_eq!(got["per_class"].as_array().unwrap().len(), classes.len());
        for (i, c) in classes.iter().enumerate() {
            for key in ["class", "tp", "fp", "fn", "pq", "sq", "rq"] {
                close(
                    &got["per_class"][i][key],
                    &c[key],
                    &format!("seed {seed} class {} {key}", c["class"]),
                );
            }
        }
    }
}

#[test]
fn polygons_rasterize_as_pycocotools_does() {
    use segstream::eval::rle::Rle;
    for seed in ["1", "2"] {
        let cases: Value = serde_json::from_str(&reference("coco_polygons.py", &[seed])).unwrap();
        for (i, case) in cases.as_array().unwrap().iter().enumerate() {
            let (h, w) = (
                case["height"].as_u64().unwrap() as u32,
                case["width"].as_u64().unwrap() as u32,
            );
            let polygons: Vec<Rle> = case["polygons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let xy: Vec<f64> = p
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap())
                        .collect();
                    Rle::from_polygon(h, w, &xy)
                })
                .collect();
            let got = Rle::union(&polygons);
            let expected = Rle::from_counts_string(case["counts"].as_str().unwrap(), h, w).unwrap();
            assert_eq!(
                got.decode(),
                expected.decode(),
                "seed {seed} case {i}: {case}"
            );
        }
    }
}
