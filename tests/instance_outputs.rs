//! Instance outputs other tools read: every JSONL line parses, pycocotools decodes each RLE
//! to exactly the mask segstream composited (its instance-id PNG), and the panoptic PNG is
//! the one built independently from the label map and the decoded masks.

mod common;

use std::time::Duration;

use common::*;

fn class_names(model: &str) -> String {
    let text =
        std::fs::read_to_string(root().join("configs").join(format!("{model}.toml"))).unwrap();
    let value: toml::Value = toml::from_str(&text).unwrap();
    value["classes"]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn jsonl_masks_decode_to_the_composited_masks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let semantic = edited_config(d, "deeplabv3plus_mobilenet_v2", |t| t);
    // Untrained weights score low: a low threshold gives the frames several instances.
    let instance = edited_config(d, "maskrcnn_mobilenet_v3", |t| {
        t.replace("score_threshold = 0.5", "score_threshold = 0.05")
    });
    let (jsonl, ids, labels, panoptic, video) = (
        d.join("meta.jsonl"),
        d.join("instances"),
        d.join("labels"),
        d.join("panoptic"),
        d.join("out.mp4"),
    );
    let pipeline = pipeline_file(
        d,
        "panoptic.toml",
        &format!(
            "[source]\ntype = \"synthetic\"\nwidth = 320\nheight = 192\nframes = 4\n\n\
             [[transforms]]\ntype = \"infer\"\nmodel = {semantic:?}\n\n\
             [[transforms]]\ntype = \"infer\"\nmodel = {instance:?}\n\n\
             [[transforms]]\ntype = \"composite\"\n\n\
             [[sinks]]\ntype = \"jsonl\"\npath = {jsonl:?}\n\n\
             [[sinks]]\ntype = \"png\"\nwhat = \"instances\"\ndir = {ids:?}\n\n\
             [[sinks]]\ntype = \"png\"\nwhat = \"labels\"\ndir = {labels:?}\n\n\
             [[sinks]]\ntype = \"png\"\nwhat = \"panoptic\"\ndir = {panoptic:?}\n\n\
             [[sinks]]\ntype = \"mp4\"\npath = {video:?}\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", pipeline.to_str().unwrap()]),
        Duration::from_secs(300),
    );
    assert!(o.status.success(), "segstream failed: {}", stderr(&o));
    let summary = reference(
        "coco_outputs.py",
        &[
            jsonl.to_str().unwrap(),
            ids.to_str().unwrap(),
            labels.to_str().unwrap(),
            panoptic.to_str().unwrap(),
            &class_names("deeplabv3plus_mobilenet_v2"),
            &class_names("maskrcnn_mobilenet_v3"),
        ],
    );
    eprintln!("{summary}");
    let v: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
    assert_eq!(v["frames"], 4);
    assert!(
        v["nonempty"].as_u64().unwrap() >= 4,
        "too few instances to test anything: {summary}"
    );
    assert_eq!(video_info(&video).0, 4);
}

#[test]
fn jsonl_without_instance_model_still_describes_frames() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let jsonl = d.join("meta.jsonl");
    let pipeline = pipeline_file(
        d,
        "p.toml",
        &format!(
            "[source]\ntype = \"synthetic\"\nwidth = 64\nheight = 48\nframes = 3\n\n\
             [[sinks]]\ntype = \"jsonl\"\npath = {jsonl:?}\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", pipeline.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "segstream failed: {}", stderr(&o));
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], i as u64);
        assert_eq!(
            (l["width"].as_u64(), l["height"].as_u64()),
            (Some(64), Some(48))
        );
        assert!(l.get("instances").is_none());
    }
}
