//! `segstream bench` reports every figure it promises, as JSON and CSV, on a short run.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn json_report_carries_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_file(
        dir.path(),
        "bench.toml",
        "[source]\ntype = \"test\"\npattern = \"ball\"\nwidth = 160\nheight = 96\n\n\
         [[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\nthreads = 1\n\n\
         [[transforms]]\ntype = \"composite\"\n\n[[sinks]]\ntype = \"null\"\n",
    );
    let (json, csv) = (dir.path().join("b.json"), dir.path().join("b.csv"));
    let o = run_with_deadline(
        segstream(&[
            "bench",
            p.to_str().unwrap(),
            "--frames",
            "12",
            "--warmup",
            "3",
            "--from-memory",
            "--model-runs",
            "5",
            "--json",
            json.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
        ]),
        Duration::from_secs(300),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let positive = |v: &Value, what: &str| {
        let x = v
            .as_f64()
            .unwrap_or_else(|| panic!("{what} missing: {r:#}"));
        assert!(x > 0.0 && x.is_finite(), "{what} = {x}");
    };
    positive(&r["fps"], "fps");
    for q in ["p50_ms", "p95_ms", "p99_ms"] {
        positive(&r["latency"][q], q);
    }
    positive(&r["model_only"]["fps"], "model-only fps");
    positive(&r["efficiency"], "efficiency");
    assert_eq!(r["model"]["name"], "deeplabv3plus_mobilenet_v2");
    assert_eq!(r["model"]["execution_provider"], "CPU");
    assert_eq!(r["model"]["precision"], "float32");
    assert_eq!(r["model"]["frame_size"], serde_json::json!([160, 96]));
    assert!(r["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(r["machine"]["cpu"].is_string() && r["segstream_version"].is_string());
    let stages: Vec<&str> = r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["decode", "infer", "composite", "sink null"]);
    for s in r["stages"].as_array().unwrap() {
        for k in [
            "frames_in",
            "frames_out",
            "dropped",
            "busy_p50_ms",
            "busy_p95_ms",
            "share",
            "queue_peak",
        ] {
            assert!(s[k].is_number(), "stage {} lacks {k}", s["name"]);
        }
    }
    // Warm-up frames are processed but not counted in the measured figures' window.
    assert_eq!(r["stages"][1]["frames_in"], 15);
    assert_eq!(r["bottleneck"], "infer");
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv.lines().count(), 1 + stages.len(), "{csv}");
    assert!(csv.starts_with("pipeline,stage,frames_in"));
}
