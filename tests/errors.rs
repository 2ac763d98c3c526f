//! Bad input gets a one-line error and a non-zero exit: never a panic, never a hang.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn null_pipeline(dir: &Path) -> std::path::PathBuf {
    pipeline_file(
        dir,
        "null.toml",
        "[source]\ntype = \"test\"\n\n[[sinks]]\ntype = \"null\"\n",
    )
}

fn infer_pipeline(dir: &Path, model: &Path, providers: &str) -> std::path::PathBuf {
    pipeline_file(
        dir,
        "infer.toml",
        &format!(
            "[source]\ntype = \"test\"\nframes = 3\nwidth = 64\nheight = 64\n\n\
             [[transforms]]\ntype = \"infer\"\nmodel = {model:?}\n{providers}\n\n\
             [[sinks]]\ntype = \"null\"\n"
        ),
    )
}

#[test]
fn missing_input_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_fails(
        &null_pipeline(dir.path()),
        &["--input", "/nonexistent/clip.mp4"],
        &["/nonexistent/clip.mp4", "does not exist"],
    );
}

#[test]
fn corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("garbage.mp4");
    std::fs::write(
        &bad,
        (0..50_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_fails(
        &null_pipeline(dir.path()),
        &["--input", bad.to_str().unwrap()],
        &["garbage.mp4"],
    );
}

#[test]
fn truncated_video() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.mp4");
    make_video(&full, 60, 160, 96, "");
    let bytes = std::fs::read(&full).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_fails(
        &null_pipeline(dir.path()),
        &["--input", cut.to_str().unwrap()],
        &["cut.mp4"],
    );
}

// Index at the front (faststart): the first half decodes, then the data stops short.
#[test]
fn truncated_video_with_index_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.mp4");
    let pipeline = format!(
        "videotestsrc num-buffers=90 ! video/x-raw,width=160,height=96,framerate=30/1 ! videoconvert \
         ! x264enc speed-preset=ultrafast ! mp4mux faststart=true ! filesink location={}",
        full.display()
    );
    let mut cmd = std::process::Command::new("gst-launch-1.0");
    cmd.arg("-q").args(pipeline.split_whitespace());
    assert!(run_with_deadline(cmd, Duration::from_secs(60))
        .status
        .success());
    let bytes = std::fs::read(&full).unwrap();
    let cut = dir.path().join("cut_faststart.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_fails(
        &null_pipeline(dir.path()),
        &["--input", cut.to_str().unwrap()],
        &["cut_faststart.mp4", "truncated"],
    );
}

#[test]
fn unreachable_rtsp_url() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on the discard port of loopback.
    assert_fails(
        &null_pipeline(dir.path()),
        &["--input", "rtsp://127.0.0.1:9/stream"],
        &["rtsp://127.0.0.1:9/stream"],
    );
}

#[test]
fn missing_onnx_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = edited_config(dir.path(), "deeplabv3plus_mobilenet_v2", |t| {
        let start = t.find("onnx = ").unwrap();
        let end = start + t[start..].find('\n').unwrap();
        format!("{}onnx = \"nowhere/model.onnx\"{}", &t[..start], &t[end..])
    });
    assert_fails(
        &infer_pipeline(dir.path(), &config, ""),
        &[],
        &["nowhere/model.onnx", "does not exist"],
    );
}

#[test]
fn model_input_name_disagrees_with_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = edited_config(dir.path(), "deeplabv3plus_mobilenet_v2", |t| {
        t.replace("name = \"input\"", "name = \"pixels\"")
    });
    assert_fails(
        &infer_pipeline(dir.path(), &config, ""),
        &[],
        &[
            "\"pixels\" not found",
            "input [",
            "does not match its config",
        ],
    );
}

#[test]
fn model_class_count_disagrees_with_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = edited_config(dir.path(), "deeplabv3plus_mobilenet_v2", |t| {
        let start = t.find("[classes]").unwrap();
        format!(
            "{}[classes]\nnames = [\"a\", \"b\", \"c\", \"d\", \"e\"]\n",
            &t[..start]
        )
    });
    assert_fails(
        &infer_pipeline(dir.path(), &config, ""),
        &[],
        &["has 19 classes, but the config names 5"],
    );
}

#[test]
fn model_output_name_disagrees_with_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = edited_config(dir.path(), "deeplabv3plus_mobilenet_v2", |t| {
        t.replace("name = \"logits\"", "name = \"out\"")
    });
    assert_fails(
        &infer_pipeline(dir.path(), &config, ""),
        &[],
        &["output \"out\" not found", "logits ["],
    );
}

// Asking for CUDA where there is none must fail loudly, not silently run on the CPU.
#[test]
fn unavailable_execution_provider_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = edited_config(dir.path(), "deeplabv3plus_mobilenet_v2", |t| t);
    assert_fails(
        &infer_pipeline(dir.path(), &config, "providers = [{ kind = \"cuda\" }]"),
        &[],
        &["execution provider CUDA was requested but cannot be used"],
    );
}

// The CPU build of ONNX Runtime has no TensorRT: the options are wired, and asking for it
// says so instead of running on the CPU.
#[test]
fn unavailable_tensorrt_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = edited_config(dir.path(), "deeplabv3plus_mobilenet_v2", |t| t);
    let trt = format!(
        "providers = [{{ kind = \"tensorrt\", fp16 = true, engine_cache_dir = {:?}, workspace_mb = 1024 }}]",
        dir.path().join("engines")
    );
    assert_fails(
        &infer_pipeline(dir.path(), &config, &trt),
        &[],
        &["execution provider TensorRT was requested but cannot be used"],
    );
}

// OpenVINO is strict like CUDA: a missing plugin library, a device OpenVINO does not see, a
// precision it has no name for, and INT8 on a model with no quantized operators are each one
// line naming the reason.
#[test]
fn unavailable_openvino_and_unknown_precision_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = edited_config(dir.path(), "deeplabv3plus_mobilenet_v2", |t| t);
    let missing = dir
        .path()
        .join("no/libonnxruntime_providers_openvino_plugin.so");
    assert_fails(
        &infer_pipeline(
            dir.path(),
            &config,
            &format!("providers = [{{ kind = \"openvino\", library = {missing:?} }}]"),
        ),
        &[],
        &[
            "execution provider OpenVINO was requested but cannot be used",
            &format!("{} not found", missing.display()),
        ],
    );
    assert_fails(
        &infer_pipeline(
            dir.path(),
            &config,
            "providers = [{ kind = \"openvino\", device = \"NPU\" }]",
        ),
        &[],
        &[
            "OpenVINO was requested but cannot be used",
            "no OpenVINO NPU device",
        ],
    );
    assert_fails(
        &infer_pipeline(
            dir.path(),
            &config,
            "providers = [{ kind = \"openvino\", precision = \"FP8\" }]",
        ),
        &[],
        &[
            "providers[0].precision",
            "\"FP8\" is not one of FP32, BF16, FP16, INT8",
        ],
    );
    assert_fails(
        &infer_pipeline(
            dir.path(),
            &config,
            "providers = [{ kind = \"openvino\", precision = \"INT8\" }]",
        ),
        &[],
        &["INT8 needs a quantized (QDQ) model", "_int8 variant"],
    );
}

// In-graph pre- and post-processing covers whole frames; asked for with tiling it is
// refused by name, never run on the host instead.
#[test]
fn in_graph_pre_post_where_it_cannot_run_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let semantic = edited_config(dir.path(), "deeplabv3plus_mobilenet_v2", |t| t);
    assert_fails(
        &infer_pipeline(
            dir.path(),
            &semantic,
            "pre_post = \"graph\"\ntiling = { width = 32, height = 32, overlap = 8 }",
        ),
        &[],
        &["pre_post", "\"graph\" works on whole frames", "tiling"],
    );
    assert_fails(
        &infer_pipeline(dir.path(), &semantic, "pre_post = \"gpu\""),
        &[],
        &["unknown variant `gpu`", "host", "graph"],
    );
}

#[test]
fn unknown_key_in_pipeline_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_file(
        dir.path(),
        "typo.toml",
        "[source]\ntype = \"test\"\nwidht = 320\n\n[[sinks]]\ntype = \"null\"\n",
    );
    assert_fails(
        &p,
        &[],
        &["typo.toml:3", "unknown field `widht`", "`width`"],
    );
}

#[test]
fn out_of_range_value_in_pipeline_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = edited_config(dir.path(), "deeplabv3plus_mobilenet_v2", |t| t);
    let p = pipeline_file(
        dir.path(),
        "range.toml",
        &format!(
            "[source]\ntype = \"test\"\n\n[[transforms]]\ntype = \"infer\"\nmodel = {config:?}\n\n\
             [[transforms]]\ntype = \"composite\"\nalpha = 1.5\n\n[[sinks]]\ntype = \"null\"\n"
        ),
    );
    assert_fails(
        &p,
        &[],
        &[
            "transforms[1].alpha",
            "1.5 is out of range (expected 0 to 1)",
        ],
    );
}

#[test]
fn validate_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mismatched = edited_config(dir.path(), "deeplabv3plus_mobilenet_v2", |t| {
        t.replace("name = \"input\"", "name = \"pixels\"")
    });
    let p = pipeline_file(
        dir.path(),
        "many.toml",
        &format!(
            "[source]\ntype = \"file\"\npath = \"/nonexistent.mp4\"\n\n\
             [[transforms]]\ntype = \"infer\"\nmodel = {mismatched:?}\n\n\
             [[transforms]]\ntype = \"composite\"\nalpha = -1\n\n\
             [[sinks]]\ntype = \"null\"\nqueue = {{ capacity = 0 }}\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["validate", p.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for expect in [
        "/nonexistent.mp4 does not exist",
        "alpha: -1 is out of range",
        "capacity: 0 is out of range",
        "\"pixels\" not found",
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("error:") && l.contains(expect)),
            "validate did not report {expect:?}: {err}"
        );
    }
    assert!(err.contains("4 problem(s) found"), "{err}");
}

#[test]
fn validate_accepts_the_bundled_pipelines() {
    for p in [
        "pipelines/file_to_mp4.toml",
        "pipelines/file_to_png.toml",
        "pipelines/semantic_and_instances.toml",
        "pipelines/file_to_mp4_refined.toml",
    ] {
        let o = run_with_deadline(segstream(&["validate", p]), Duration::from_secs(60));
        assert!(o.status.success(), "{p}: {}", stderr(&o));
    }
}

#[test]
fn image_sequence_with_a_gap_names_the_first_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let image = make_image(dir.path(), 32, 24, 3);
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for i in [0, 1, 2, 3, 5, 6, 7] {
        std::fs::copy(&image, frames.join(format!("{i:05}.png"))).unwrap();
    }
    let pattern = frames.join("%05d.png");
    let out = dir.path().join("labels");
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"file\"\npath = {pattern:?}\n\n\
             [[sinks]]\ntype = \"png\"\ndir = {out:?}\nwhat = \"frame\"\n"
        ),
    );
    assert_fails(
        &p,
        &[],
        &[
            "00004.png is missing",
            "00005.png exists",
            "start_index = 5",
        ],
    );
    // The frames before the gap were processed and written.
    for i in 0..4 {
        assert!(out.join(format!("{i:06}.png")).is_file(), "frame {i}");
    }
}

#[test]
fn a_frame_that_would_need_more_memory_than_the_limit_is_refused_with_the_figure() {
    let dir = tempfile::tempdir().unwrap();
    let still = make_image(dir.path(), 3840, 2160, 7);
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"file\"\npath = {still:?}\n\n\
             [[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\n\
             max_frame_mib = 1024\n\n[[sinks]]\ntype = \"null\"\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap(), "--status-interval", "0"]),
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // 8.3 megapixels at 330 MiB each: about 2.7 GiB, over the 1 GiB limit.
    assert!(
        err.lines().any(|l| l.starts_with("error:")
            && l.contains("frame 3840x2160")
            && l.contains("would need about 2.7 GiB")
            && l.contains("limit 1024 MiB")),
        "{err}"
    );
}
