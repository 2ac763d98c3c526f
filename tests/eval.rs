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
    let o = eval_command(&pred, &truth, &["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got: Value = serde_json::from_slice(&o.stdout).unwrap();
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
