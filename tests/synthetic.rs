//! The synthetic driving scene feeds real pipelines with exact ground truth for `eval`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn eval(pred: &std::path::Path, truth: &std::path::Path) -> Value {
    let o = eval_command(pred, truth, &["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn synthetic_scene_ground_truth_through_infer_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, truth) = (dir.path().join("labels"), dir.path().join("truth"));
    let p = pipeline_file(
        dir.path(),
        "synthetic.toml",
        &format!(
            "[source]\ntype = \"synthetic\"\nwidth = 192\nheight = 112\nframes = 6\nseed = 3\n\n\
             [[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\n\n\
             [[sinks]]\ntype = \"png\"\ndir = {labels:?}\n\n\
             [[sinks]]\ntype = \"png\"\ndir = {truth:?}\nwhat = \"truth\"\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap()]),
        Duration::from_secs(300),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for i in 0..6 {
        let (l, t) = (
            read_png(&labels.join(format!("{i:06}.png"))),
            read_png(&truth.join(format!("{i:06}.png"))),
        );
        assert_eq!((l.width, l.height, t.width, t.height), (192, 112, 192, 112));
    }
    // The truth scored against itself is perfect; the untrained model is not, but every
    // pixel is counted.
    let perfect = eval(&truth, &truth);
    assert_eq!(perfect["mean_iou"], 1.0);
    assert_eq!(perfect["pixel_accuracy"], 1.0);
    let model = eval(&labels, &truth);
    assert_eq!(model["pixels"], 6 * 192 * 112);
    let miou = model["mean_iou"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&miou), "{miou}");
}
