//! `segstream bench` reports every figure it promises, as JSON and CSV, on a short run.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn json_report_carries_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("b.csv");
    let (_, r) = bench_report(
        dir.path(),
        "[source]\ntype = \"test\"\npattern = \"ball\"\nwidth = 160\nheight = 96\n\n\
         [[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\nthreads = 1\n\n\
         [[transforms]]\ntype = \"composite\"\n\n[[sinks]]\ntype = \"null\"\n",
        &[
            "--from-memory",
            "--frames",
            "12",
            "--warmup",
            "3",
            "--model-runs",
            "5",
            "--csv",
            csv.to_str().unwrap(),
        ],
    );
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
    assert_eq!(r["model_only"]["sessions"], 1);
    assert_eq!(r["model_only"]["runs"], 5);
    positive(&r["efficiency"], "efficiency");
    assert_eq!(r["model"]["name"], "deeplabv3plus_mobilenet_v2");
    assert_eq!(r["model"]["execution_provider"], "CPU");
    assert_eq!(r["model"]["precision"], "float32");
    assert_eq!(r["model"]["frame_size"], serde_json::json!([160, 96]));
    // DeepLabV3+'s x4 up-sampling of its scores runs in the argmax, not the model.
    assert_eq!(r["model"]["resize_in_argmax"], "x4 align_corners", "{r:#}");
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

/// `segstream bench` (with a JSON report) of the pipeline `text`, written into `dir`, with
/// `args`: its output and the report. Fails the test if bench fails.
fn bench_report(dir: &Path, text: &str, args: &[&str]) -> (std::process::Output, Value) {
    let p = pipeline_file(dir, "bench.toml", text);
    let json = dir.join("b.json");
    let mut all = vec![
        "bench",
        p.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let o = run_with_deadline(segstream(&all), Duration::from_secs(600));
    assert!(o.status.success(), "{}", stderr(&o));
    let r = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (o, r)
}

/// With several infer workers the model alone is as many sessions at once, each with the
/// stage's threads, so efficiency compares the pipeline with what those workers can do
/// together rather than with one of them.
#[test]
fn model_alone_runs_one_session_per_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (o, r) = bench_report(
        dir.path(),
        "[source]\ntype = \"test\"\npattern = \"ball\"\nwidth = 160\nheight = 96\n\n\
         [[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\n\
         threads = 1\nworkers = 2\n\n[[sinks]]\ntype = \"null\"\n",
        &[
            "--from-memory",
            "--frames",
            "8",
            "--warmup",
            "2",
            "--model-runs",
            "4",
        ],
    );
    assert_eq!(r["model"]["workers"], 2, "{r:#}");
    assert_eq!(r["model"]["threads"], 1, "{r:#}");
    assert_eq!(r["model_only"]["sessions"], 2, "{r:#}");
    assert_eq!(r["model_only"]["runs"], 4, "{r:#}");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains("2 sessions at once, median of 4 runs"),
        "the report names the sessions timed together:\n{text}"
    );
}

/// A few frames from memory and two model runs: enough for the figures' presence and
/// the settings a report carries.
const QUICK: &[&str] = &[
    "--from-memory",
    "--frames",
    "4",
    "--warmup",
    "1",
    "--model-runs",
    "2",
];

/// The model's final Resize moves into the argmax (and into refine's reading of the
/// scores, which a refine stage after it gets from before the Resize), unless
/// `fuse_resize = false` or the work around the model runs in graphs. The model alone is
/// timed as the stage holds it.
#[test]
fn final_resize_moves_into_the_argmax_unless_told_or_in_graphs() {
    for (infer, after, fused) in [
        ("", "", true),
        ("", "[[transforms]]\ntype = \"refine\"\nscale = 4\n\n", true),
        ("fuse_resize = false", "", false),
        ("pre_post = \"graph\"", "", false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (o, r) = bench_report(
            dir.path(),
            &format!(
                "[source]\ntype = \"test\"\npattern = \"ball\"\nwidth = 160\nheight = 96\n\n\
                 [[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\n\
                 threads = 1\n{infer}\n\n{after}[[sinks]]\ntype = \"null\"\n"
            ),
            QUICK,
        );
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let said = text.contains("Resize of the scores is done by the argmax");
        let what = format!("{infer:?} {after:?}: {r:#}\n{text}");
        assert_eq!(said, fused, "{what}");
        match fused {
            true => assert_eq!(r["model"]["resize_in_argmax"], "x4 align_corners", "{what}"),
            false => assert!(r["model"]["resize_in_argmax"].is_null(), "{what}"),
        }
    }
}

/// Two infer stages left at `threads = 0` share the cores (half each, at least one) rather
/// than each taking all of them; a stage with its own count keeps it.
#[test]
fn infer_stages_left_at_zero_threads_share_the_cores() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (second, want) in [("threads = 0", (cores / 2).max(1)), ("threads = 1", 0)] {
        let dir = tempfile::tempdir().unwrap();
        let (_, r) = bench_report(
            dir.path(),
            &format!(
                "[source]\ntype = \"test\"\npattern = \"ball\"\nwidth = 160\nheight = 96\n\n\
                 [[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\n\
                 threads = 0\n\n[[transforms]]\ntype = \"infer\"\n\
                 model = \"maskrcnn_mobilenet_v3\"\n{second}\n\n[[sinks]]\ntype = \"null\"\n"
            ),
            QUICK,
        );
        // The first stage alone at 0 gets ONNX Runtime's own choice (reported as 0).
        assert_eq!(r["model"]["threads"], want, "second stage {second}: {r:#}");
    }
}

/// A test model config copied into `dir` under `name`, pointing at the real ONNX file.
fn test_config(dir: &std::path::Path, from: &str, name: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(root().join("tests/data/configs").join(from)).unwrap();
    let models = root().join("models/test");
    let text = text.replace("../../../models/test", models.to_str().unwrap());
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn models_table_compares_models_providers_and_precisions() {
    let dir = tempfile::tempdir().unwrap();
    // `seg` has an FP16 variant beside it (seg_fp16.toml); tests/data's seg_fcn has none.
    let seg = test_config(dir.path(), "seg_fcn.toml", "seg.toml");
    test_config(dir.path(), "seg_fp16.toml", "seg_fp16.toml");
    let p = pipeline_file(
        dir.path(),
        "bench.toml",
        "[source]\ntype = \"test\"\npattern = \"ball\"\nwidth = 96\nheight = 64\n\n\
         [[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\nthreads = 1\n\n\
         [[transforms]]\ntype = \"composite\"\n\n[[sinks]]\ntype = \"null\"\n",
    );
    let (json, csv) = (dir.path().join("m.json"), dir.path().join("m.csv"));
    let o = run_with_deadline(
        segstream(&[
            "bench",
            p.to_str().unwrap(),
            "--models",
            seg.to_str().unwrap(),
            "tests/data/configs/seg_fcn.toml",
            "--providers",
            "cpu,cuda",
            "--precision",
            "fp32,fp16",
            "--frames",
            "4",
            "--warmup",
            "1",
            "--from-memory",
            "--model-runs",
            "2",
            "--json",
            json.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
        ]),
        Duration::from_secs(300),
    );
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(table.contains("FPS per model"), "{table}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = r["rows"].as_array().unwrap();
    let combos: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap().to_owned(),
                r["provider"].as_str().unwrap().to_owned(),
                r["precision"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut expected = Vec::new();
    for m in ["seg", "seg_fcn"] {
        for provider in ["CPU", "CUDA"] {
            for precision in ["float32", "float16"] {
                expected.push((m.to_owned(), provider.to_owned(), precision.to_owned()));
            }
        }
    }
    assert_eq!(combos, expected);
    for row in rows {
        let what = format!("{} {} {}", row["model"], row["provider"], row["precision"]);
        let available = row["available"].as_bool().unwrap();
        let no_variant = row["model"] == "seg_fcn" && row["precision"] == "float16";
        if row["provider"] == "CPU" && !no_variant {
            assert!(available, "{what}: {}", row["reason"]);
        }
        if available {
            for k in ["fps", "model_only_fps", "efficiency", "latency_p50_ms"] {
                let v = row[k].as_f64().unwrap_or_else(|| panic!("{what}: no {k}"));
                assert!(v > 0.0 && v.is_finite(), "{what}: {k} = {v}");
            }
            // The run used the variant it names.
            assert_eq!(
                row["report"]["model"]["precision"], row["precision"],
                "{what}"
            );
            assert_eq!(
                row["report"]["model"]["execution_provider"], row["provider"],
                "{what}"
            );
        } else {
            let reason = row["reason"].as_str().unwrap();
            if no_variant {
                assert!(reason.contains("no float16 variant"), "{what}: {reason}");
            } else {
                assert!(reason.contains("CUDA"), "{what}: {reason}");
            }
            assert!(table.contains(&format!("unavailable: {reason}")), "{table}");
        }
    }
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv.lines().count(), 1 + rows.len(), "{csv}");
    assert!(csv.starts_with("model,provider,precision,setup,available,fps"));
}

/// `segstream bench` on a synthetic source into the trained default and a null sink, with
/// `args` and a JSON report; returns the printed table and the report.
fn synthetic_table(dir: &Path, size: (u32, u32), seed: u32, args: &[&str]) -> (String, Value) {
    let mut all = vec!["--eval"];
    all.extend_from_slice(args);
    all.extend(["--threads", "2"]);
    let (o, report) = bench_report(
        dir,
        &format!(
            "[source]\ntype = \"synthetic\"\nwidth = {}\nheight = {}\nseed = {seed}\n\n\
             [[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2_synthetic\"\n\n\
             [[sinks]]\ntype = \"null\"\n",
            size.0, size.1
        ),
        &all,
    );
    (String::from_utf8_lossy(&o.stdout).into_owned(), report)
}

/// The speed-accuracy table: precisions as variants or OpenVINO hints, each row scored
/// against the synthetic truth, changes from the FP32 CPU row, the Pareto front, the
/// tiling / half-scale / CRF rows, and unavailable rows with their reason.
#[test]
fn precision_table_scores_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("t.csv");
    let (table, r) = synthetic_table(
        dir.path(),
        (320, 192),
        2,
        &[
            "--providers",
            "cpu,openvino,cuda",
            "--precision",
            "fp32,bf16,int8",
            "--ablations",
            "--rounds",
            "2",
            "--frames",
            "3",
            "--warmup",
            "1",
            "--model-runs",
            "2",
            "--csv",
            csv.to_str().unwrap(),
        ],
    );
    assert_eq!(r["rounds"], 2);
    let rows = r["rows"].as_array().unwrap();
    let key = |row: &Value| {
        format!(
            "{} {} {}",
            row["provider"].as_str().unwrap(),
            row["precision"].as_str().unwrap(),
            row["setup"].as_str().unwrap()
        )
    };
    let keys: Vec<String> = rows.iter().map(key).collect();
    assert_eq!(
        keys,
        [
            "CPU float32 -",
            "CPU float32 tiling 2x2",
            "CPU float32 scale 0.5",
            "CPU float32 refine (CRF)",
            "CPU bfloat16 -",
            "CPU int8 -",
            "OpenVINO float32 -",
            "OpenVINO bfloat16 -",
            "OpenVINO int8 -",
            "CUDA float32 -",
            "CUDA bfloat16 -",
            "CUDA int8 -",
        ],
        "{table}"
    );
    // Where ONNX Runtime's Python API is offered no OpenVINO CPU device (as on an AMD EPYC), the
    // OpenVINO rows are unavailable and say why.
    let openvino = openvino_sees_cpu();
    let mut pareto = 0;
    for row in rows {
        let what = key(row);
        if !openvino && what.starts_with("OpenVINO") {
            let reason = row["reason"].as_str().unwrap();
            assert!(reason.contains(NO_OPENVINO_CPU), "{what}: {reason}");
            assert!(table.contains(&format!("unavailable: {reason}")), "{table}");
            continue;
        }
        if what.starts_with("CUDA") || what == "CPU bfloat16 -" {
            let reason = row["reason"].as_str().unwrap();
            let why = match what.as_str() {
                "CPU bfloat16 -" | "CUDA bfloat16 -" => "BF16 runs through OpenVINO",
                "CUDA int8 -" => "INT8 (QDQ) models run on the cpu and openvino providers",
                _ => "CUDA",
            };
            assert!(reason.contains(why), "{what}: {reason}");
            assert!(table.contains(&format!("unavailable: {reason}")), "{table}");
            continue;
        }
        assert!(
            row["available"].as_bool().unwrap(),
            "{what}: {}",
            row["reason"]
        );
        // The run used the precision it names.
        assert_eq!(
            row["report"]["model"]["precision"], row["precision"],
            "{what}"
        );
        let miou = row["mean_iou"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&miou), "{what}: {miou}");
        let accuracy = &row["report"]["accuracy"]["metrics"]["mean_iou"];
        assert_eq!(accuracy.as_f64(), Some(miou), "{what}");
        let change = row["mean_iou_change"].as_f64().unwrap();
        if what == "CPU float32 -" {
            assert_eq!(change, 0.0);
        }
        if row["setup"] == "-" {
            // Precision costs little on a trained model.
            assert!(change.abs() <= 1.5, "{what}: {change} points");
        }
        pareto += row["pareto"].as_bool().unwrap() as usize;
    }
    assert!(pareto >= 1, "{table}");
    assert!(
        table.contains("mean IoU") && table.contains("pareto"),
        "{table}"
    );
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv.lines().count(), 1 + rows.len(), "{csv}");
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .contains("mean_iou,mean_iou_change,mask_ap,mask_ap_change,pareto"));
}

/// `--pre-post host,serial,graph`: one row each, all scored; the labels of the serial host
/// path are the overlapped one's, so mean IoU is the same, and the in-graph labels agree
/// with the host's, so it moves by less than a tenth of a point.
#[test]
fn pre_post_rows_compare_host_serial_and_graph() {
    let dir = tempfile::tempdir().unwrap();
    let (table, r) = synthetic_table(
        dir.path(),
        (320, 180),
        4,
        &[
            "--pre-post",
            "host,serial,graph,graph-nv12",
            "--frames",
            "4",
            "--warmup",
            "1",
            "--model-runs",
            "2",
        ],
    );
    let rows = r["rows"].as_array().unwrap();
    let setups: Vec<&str> = rows.iter().map(|r| r["setup"].as_str().unwrap()).collect();
    assert_eq!(
        setups,
        [
            "pre/post host",
            "pre/post serial",
            "pre/post graph",
            "pre/post graph, NV12"
        ],
        "{table}"
    );
    for row in &rows[..3] {
        assert!(row["available"].as_bool().unwrap(), "{table}");
        assert!(row["fps"].as_f64().unwrap() > 0.0, "{table}");
        assert!(row["mean_iou"].as_f64().unwrap() > 0.5, "{table}");
    }
    assert_eq!(rows[1]["mean_iou_change"].as_f64(), Some(0.0), "{table}");
    let change = rows[2]["mean_iou_change"].as_f64().unwrap();
    assert!(
        change.abs() < 0.1,
        "graph row moved mean IoU by {change} points: {table}"
    );
    assert_eq!(rows[0]["mean_iou_change"].as_f64(), Some(0.0), "{table}");
    // NV12 frames are converted from the frames in memory: without --from-memory the row
    // says so (tests/kit.rs runs it with).
    assert_eq!(rows[3]["available"].as_bool(), Some(false), "{table}");
    let reason = rows[3]["reason"].as_str().unwrap();
    assert!(reason.contains("--from-memory"), "{reason}");
}

/// Instance models take part in the table: the trained Mask R-CNN's row is scored by mask AP
/// against the synthetic scene's true instances (its change from its own float32 CPU row,
/// and its Pareto mark among instance rows only), beside the semantic model's mean IoU.
#[test]
fn models_table_scores_instance_models_by_mask_ap() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("t.csv");
    let (table, r) = synthetic_table(
        dir.path(),
        (640, 360),
        5,
        &[
            "--models",
            "deeplabv3plus_mobilenet_v2_synthetic",
            "maskrcnn_mobilenet_v3_synthetic",
            "--frames",
            "6",
            "--warmup",
            "1",
            "--model-runs",
            "2",
            "--csv",
            csv.to_str().unwrap(),
        ],
    );
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{table}");
    let (seg, inst) = (&rows[0], &rows[1]);
    for row in rows {
        assert!(row["available"].as_bool().unwrap(), "{table}");
        assert_eq!(row["pareto"], true, "{table}");
    }
    assert!(seg["mean_iou"].as_f64().unwrap() > 0.8, "{table}");
    assert!(seg["mask_ap"].is_null(), "{table}");
    assert_eq!(seg["mean_iou_change"].as_f64(), Some(0.0), "{table}");
    let ap = inst["mask_ap"].as_f64().unwrap();
    assert!(ap > 0.4, "{table}");
    assert_eq!(
        inst["report"]["accuracy"]["instances"]["ap"].as_f64(),
        Some(ap)
    );
    assert!(inst["mean_iou"].is_null(), "{table}");
    assert_eq!(inst["mask_ap_change"].as_f64(), Some(0.0), "{table}");
    assert!(table.contains("mask AP"), "{table}");
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .contains("mask_ap,mask_ap_change"),
        "{csv}"
    );
}

/// The trained Mask R-CNN's FP16 and INT8 variants (scripts/train_maskrcnn.py) are picked by
/// `--precision` and keep its mask AP within 1.5 points on frames neither training nor
/// calibration saw.
#[test]
fn trained_maskrcnn_variants_keep_its_mask_ap() {
    let dir = tempfile::tempdir().unwrap();
    let (table, r) = synthetic_table(
        dir.path(),
        (640, 360),
        1,
        &[
            "--models",
            "maskrcnn_mobilenet_v3_synthetic",
            "--precision",
            "fp32,fp16,int8",
            "--frames",
            "60",
            "--warmup",
            "2",
            "--model-runs",
            "2",
        ],
    );
    let rows = r["rows"].as_array().unwrap();
    let precisions: Vec<&str> = rows
        .iter()
        .map(|row| row["precision"].as_str().unwrap())
        .collect();
    assert_eq!(precisions, ["float32", "float16", "int8"], "{table}");
    let fp32 = rows[0]["mask_ap"].as_f64().unwrap();
    assert!(fp32 > 0.4, "{table}");
    for row in &rows[1..] {
        assert!(row["available"].as_bool().unwrap(), "{table}");
        let ap = row["mask_ap"].as_f64().unwrap();
        assert!((ap - fp32).abs() * 100.0 <= 1.5, "{ap} vs {fp32}: {table}");
        let change = row["mask_ap_change"].as_f64().unwrap();
        assert!((change - (ap - fp32) * 100.0).abs() < 1e-9, "{table}");
    }
}

/// A CPU row after an OpenVINO row runs on ONNX Runtime's CPU provider: ort asks ONNX
/// Runtime to pick devices itself, and once the OpenVINO plugin was registered a session
/// naming no provider went to OpenVINO. Seen with a Mask R-CNN export that OpenVINO cannot
/// load (torchvision's empty NMS branch put back): before the fix its CPU row failed with
/// OpenVINO's reason.
#[test]
fn cpu_rows_stay_on_the_cpu_after_openvino() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("unloadable.onnx");
    let trained = model("trained/maskrcnn_mobilenet_v3_synthetic.onnx");
    reference(
        "openvino_unloadable.py",
        &[trained.to_str().unwrap(), onnx.to_str().unwrap()],
    );
    let config =
        std::fs::read_to_string(root().join("configs/maskrcnn_mobilenet_v3_synthetic.toml"))
            .unwrap()
            .replace(
                "onnx = \"../models/trained/maskrcnn_mobilenet_v3_synthetic.onnx\"",
                &format!("onnx = {:?}", onnx.to_str().unwrap()),
            );
    let config_path = dir.path().join("unloadable.toml");
    std::fs::write(&config_path, config).unwrap();
    let (table, r) = synthetic_table(
        dir.path(),
        (320, 192),
        1,
        &[
            "--models",
            config_path.to_str().unwrap(),
            "--providers",
            "openvino,cpu",
            "--frames",
            "2",
            "--warmup",
            "1",
            "--model-runs",
            "1",
        ],
    );
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!(rows[0]["provider"], "OpenVINO", "{table}");
    assert_eq!(rows[0]["available"], false, "{table}");
    // OpenVINO's own reason (it cannot load the model), or, where ONNX Runtime's Python
    // API is offered no OpenVINO CPU device (as on an AMD EPYC), that one: the plugin is
    // registered either way, and the CPU row must still run on the CPU.
    let reason = rows[0]["reason"].as_str().unwrap();
    let expect = if openvino_sees_cpu() {
        "If"
    } else {
        NO_OPENVINO_CPU
    };
    assert!(reason.contains(expect), "{table}");
    assert_eq!(rows[1]["provider"], "CPU", "{table}");
    assert_eq!(rows[1]["available"], true, "{table}");
    assert!(rows[1]["mask_ap"].as_f64().is_some(), "{table}");
}
