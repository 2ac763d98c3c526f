//! Pipeline files: problems name the line and column they come from, every problem comes in
//! one report, relative paths resolve against the file's folder, and `validate` refuses
//! what `run` would refuse, in one line each, without running a frame.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// `validate` on `pipeline` fails with one problem line containing every fragment; `run`
/// fails with one error line containing them too.
fn refused(pipeline: &Path, extra: &[&str], expect: &[&str]) {
    for command in ["validate", "run"] {
        assert_refused(command, pipeline, extra, expect);
    }
}

const TEST_SOURCE: &str = "[source]\ntype = \"test\"\nframes = 2\nwidth = 64\nheight = 64\n";

#[test]
fn a_type_error_in_a_sink_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_file(
        dir.path(),
        "types.toml",
        &format!(
            "{TEST_SOURCE}\n[[sinks]]\ntype = \"null\"\n\n[[sinks]]\ntype = \"mp4\"\n\
             path = \"out.mp4\"\nbitrate_kbps = -3\n"
        ),
    );
    // bitrate_kbps is on line 13, its value in column 16.
    refused(
        &p,
        &[],
        &[
            "types.toml:13:16",
            "sinks[1]",
            "invalid value: integer `-3`",
        ],
    );
}

#[test]
fn a_type_error_inside_a_table_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_file(
        dir.path(),
        "nested.toml",
        "[source]\ntype = \"test\"\n\n[[sinks]]\ntype = \"null\"\nqueue = { capacity = \"four\" }\n",
    );
    refused(
        &p,
        &[],
        &["nested.toml:6:", "invalid type: string \"four\""],
    );
    let p = pipeline_file(
        dir.path(),
        "wide.toml",
        "[source]\ntype = \"test\"\nwidth = \"wide\"\n\n[[sinks]]\ntype = \"null\"\n",
    );
    refused(&p, &[], &["wide.toml:3:9", "invalid type: string \"wide\""]);
}

#[test]
fn an_unknown_key_in_a_nested_table_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_file(
        dir.path(),
        "unknown.toml",
        &format!(
            "{TEST_SOURCE}\n[[transforms]]\ntype = \"delay\"\nms = 1\n\
             queue = {{ capacity = 2, when_ful = \"block\" }}\n\n[[sinks]]\ntype = \"null\"\n"
        ),
    );
    refused(&p, &[], &["unknown.toml:10:", "unknown field `when_ful`"]);
}

#[test]
fn an_out_of_range_value_in_a_nested_table_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_file(
        dir.path(),
        "range.toml",
        &format!(
            "{TEST_SOURCE}\n[[transforms]]\ntype = \"delay\"\nms = 1\n\n\
             [[sinks]]\ntype = \"null\"\n\n[sinks.queue]\ncapacity = 100000\n"
        ),
    );
    refused(
        &p,
        &[],
        &[
            "range.toml:15:1",
            "sinks[0].queue.capacity",
            "100000 is out of range (expected 1 to 4096)",
        ],
    );
}

#[test]
fn every_problem_comes_in_one_report() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_file(
        dir.path(),
        "many.toml",
        "[source]\ntype = \"test\"\nwidth = \"wide\"\n\n[[transforms]]\ntype = \"delay\"\nms = -1\n\n\
         [[transforms]]\ntype = \"delay\"\nms = 70000\n\n[[sinks]]\ntype = \"nul\"\n",
    );
    let o = run_with_deadline(
        segstream(&["validate", p.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for expect in [
        "many.toml:3:9: source: invalid type",
        "many.toml:7:6: transforms[0]: invalid value: integer `-1`",
        "many.toml:11:1: transforms[1].ms: 70000 is out of range",
        "many.toml:14:8: sinks[0].type: unknown type \"nul\"",
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("error:") && l.contains(expect)),
            "missing {expect:?}: {err}"
        );
    }
    assert!(err.contains("4 problem(s) found"), "{err}");
}

#[test]
fn relative_paths_resolve_against_the_pipeline_folder() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere/pipelines");
    std::fs::create_dir_all(&elsewhere).unwrap();
    make_video(&dir.path().join("elsewhere/clip.mp4"), 5, 64, 48, "");
    let p = pipeline_file(
        &elsewhere,
        "relative.toml",
        "[source]\ntype = \"file\"\npath = \"../clip.mp4\"\n\n\
         [[sinks]]\ntype = \"jsonl\"\npath = \"../out/meta.jsonl\"\n",
    );
    // Run from another folder altogether.
    let mut cmd = segstream(&["run", p.to_str().unwrap()]);
    cmd.current_dir(dir.path());
    let o = run_with_deadline(cmd, Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = std::fs::read_to_string(dir.path().join("elsewhere/out/meta.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 5);
}

#[test]
fn validate_refuses_what_run_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let null = pipeline_file(
        dir.path(),
        "null.toml",
        "[source]\ntype = \"test\"\n\n[[sinks]]\ntype = \"null\"\n",
    );
    // An image sequence whose files are missing.
    let frames = dir.path().join("frames/%05d.png");
    refused(
        &null,
        &["--input", frames.to_str().unwrap()],
        &["00000.png does not exist"],
    );
    // An unknown test pattern.
    refused(
        &null,
        &["--input", "test:nosuch"],
        &["unknown test pattern \"nosuch\"", "smpte"],
    );
    // A malformed synthetic seed.
    refused(&null, &["--input", "synthetic:x"], &["is not a seed"]);
    // NaN and infinities.
    let nan = pipeline_file(
        dir.path(),
        "nan.toml",
        "[source]\ntype = \"rtsp\"\nurl = \"rtsp://127.0.0.1:9/x\"\ntimeout_s = nan\n\n\
         [[sinks]]\ntype = \"null\"\n",
    );
    refused(
        &nan,
        &[],
        &["nan.toml:4:1: source.timeout_s: NaN is out of range"],
    );
    let inf = pipeline_file(
        dir.path(),
        "inf.toml",
        "[source]\ntype = \"rtsp\"\nurl = \"rtsp://127.0.0.1:9/x\"\nbackoff_max_s = inf\n\n\
         [[sinks]]\ntype = \"null\"\n",
    );
    refused(&inf, &[], &["source.backoff_max_s: inf is out of range"]);
    let cores = std::thread::available_parallelism().unwrap().get();
    let threads = pipeline_file(
        dir.path(),
        "threads.toml",
        &format!(
            "{TEST_SOURCE}\n[[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\n\
             threads = 1024\n\n[[sinks]]\ntype = \"null\"\n"
        ),
    );
    refused(
        &threads,
        &[],
        &[
            "transforms[0].threads: 1024 is out of range",
            &format!("expected 0 to 256; counts above this machine's {cores} cores are capped"),
        ],
    );
    // A settle threshold is a probability, from 0.5 (half the pixels' iterations skipped
    // early) to 1 (exact mean field).
    let settle = pipeline_file(
        dir.path(),
        "settle.toml",
        &format!(
            "{TEST_SOURCE}\n[[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\n\n\
             [[transforms]]\ntype = \"refine\"\nsettle = 1.5\n\n[[sinks]]\ntype = \"null\"\n"
        ),
    );
    refused(
        &settle,
        &[],
        &["transforms[1].settle: 1.5 is out of range (expected 0.5 to 1)"],
    );
    // More threads than cores (a file written for a bigger machine): capped, with a warning.
    let more = pipeline_file(
        dir.path(),
        "more.toml",
        &format!(
            "{TEST_SOURCE}\n[[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\n\
             threads = {}\n\n[[sinks]]\ntype = \"null\"\n",
            cores + 1
        ),
    );
    let o = run_with_deadline(
        segstream(&["validate", more.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "infer threads = {} is more than the {cores} cores this machine runs at once: \
             capped to {cores}",
            cores + 1
        )),
        "{err}"
    );
    // Thousands of sinks.
    let sinks = "\n[[sinks]]\ntype = \"null\"\n".repeat(3000);
    let many = pipeline_file(dir.path(), "sinks.toml", &format!("{TEST_SOURCE}{sinks}"));
    refused(
        &many,
        &[],
        &["sinks: 3000 sinks is out of range (expected at most 64)"],
    );
    // An output that is the input.
    let clip = dir.path().join("clip.mp4");
    make_video(&clip, 5, 64, 48, "");
    let mp4 = pipeline_file(
        dir.path(),
        "same.toml",
        "[source]\ntype = \"file\"\npath = \"clip.mp4\"\n\n[[sinks]]\ntype = \"mp4\"\npath = \"clip.mp4\"\n",
    );
    refused(&mp4, &[], &["sinks[0]", "is the input"]);
    let bytes = std::fs::metadata(&clip).unwrap().len();
    assert!(bytes > 0);
    // A PNG folder that holds the input sequence.
    let png = pipeline_file(
        dir.path(),
        "png.toml",
        "[source]\ntype = \"file\"\npath = \"seq/%03d.png\"\n\n[[sinks]]\ntype = \"png\"\nwhat = \"frame\"\ndir = \"seq\"\n",
    );
    std::fs::create_dir_all(dir.path().join("seq")).unwrap();
    std::fs::copy(
        make_image(dir.path(), 32, 32, 1),
        dir.path().join("seq/000.png"),
    )
    .unwrap();
    refused(&png, &[], &["sinks[0]", "is the input"]);
}

#[test]
fn validate_opens_the_requested_execution_provider() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_file(
        dir.path(),
        "cuda.toml",
        &format!(
            "{TEST_SOURCE}\n[[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\n\
             providers = [{{ kind = \"cuda\" }}]\n\n[[sinks]]\ntype = \"null\"\n"
        ),
    );
    refused(
        &p,
        &[],
        &["execution provider CUDA was requested but cannot be used"],
    );
}

#[test]
fn flags_out_of_range_are_one_line_errors() {
    for (flag, value, expect) in [
        (
            "--status-interval",
            "inf",
            "--status-interval inf is out of range",
        ),
        (
            "--status-interval",
            "NaN",
            "--status-interval NaN is out of range",
        ),
        ("--threads", "4096", "--threads 4096 is out of range"),
    ] {
        let o = run_with_deadline(
            segstream(&["run", "pipelines/file_to_mp4.toml", flag, value]),
            Duration::from_secs(60),
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.lines()
                .any(|l| l.starts_with("error:") && l.contains(expect)),
            "{err}"
        );
    }
}

// `--input` replaces what the source reads, not how: a synthetic source keeps the file's
// frame size and length and takes only the seed.
#[test]
fn input_override_keeps_how_the_pipeline_reads_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("frames");
    let p = pipeline_file(
        dir.path(),
        "synthetic.toml",
        &format!(
            "[source]\ntype = \"synthetic\"\nwidth = 96\nheight = 64\nframes = 3\nseed = 1\n\n\
             [[sinks]]\ntype = \"png\"\ndir = {out:?}\nwhat = \"frame\"\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap(), "--input", "synthetic:9"]),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["000000.png", "000001.png", "000002.png"]);
    let png = read_png(&out.join("000000.png"));
    assert_eq!((png.width, png.height), (96, 64));
    // The seed is the input's: another scene than seed 1's.
    let o = run_with_deadline(
        segstream(&[
            "run",
            p.to_str().unwrap(),
            "--output",
            dir.path().join("seed1").to_str().unwrap(),
        ]),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(
        read_png(&dir.path().join("seed1/000000.png")).data,
        png.data
    );
}
