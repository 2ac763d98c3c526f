//! Many files in one run: a folder in, one MP4 and one JSONL per file named after it, a
//! corrupt file reported and skipped over, reruns that skip what is complete, shards that
//! split a folder with no overlap, and a kill that leaves no partial file under a finished
//! name. Frame counts come from PyAV (FFmpeg), not from segstream.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const CLIPS: [&str; 6] = [
    "a_ball",
    "b_snow",
    "c_corrupt",
    "d_bars",
    "e_smpte",
    "f_gradient",
];

/// Six clips in `dir/in`: five good ones of different lengths, `c_corrupt.mp4` cut in half
/// (no index: unreadable). Returns (folder, frames of each good clip as PyAV counts them).
fn clips(dir: &Path, frames: u32) -> (PathBuf, BTreeMap<String, u64>) {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let patterns = ["ball", "snow", "ball", "bar", "smpte", "gradient"];
    let mut counts = BTreeMap::new();
    for (k, (name, pattern)) in CLIPS.iter().zip(patterns).enumerate() {
        let path = input.join(format!("{name}.mp4"));
        make_video(
            &path,
            frames + k as u32,
            320,
            240,
            &format!("pattern={pattern}"),
        );
        if name.contains("corrupt") {
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        } else {
            counts.insert(name.to_string(), video_info(&path).0);
        }
    }
    // Not a video: a folder's other files are left alone.
    std::fs::write(input.join("notes.txt"), "not a clip").unwrap();
    (input, counts)
}

/// A pipeline of segmentation into an MP4 and a JSONL per file.
fn segmenting(dir: &Path) -> PathBuf {
    segmenting_pipeline(dir, "batch.toml")
}

fn lines(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .count() as u64
}

fn summary(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn outcome_of(summary: &serde_json::Value, name: &str) -> String {
    summary["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {summary}"))["outcome"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn run(pipeline: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", pipeline.to_str().unwrap(), "--status-interval", "0"];
    args.extend(extra);
    run_with_deadline(segstream(&args), Duration::from_secs(600))
}

#[test]
fn a_folder_with_a_corrupt_clip_gives_every_other_output_whole_and_reruns_skip_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_, counts) = clips(dir.path(), 12);
    let p = segmenting(dir.path());
    let out = dir.path().join("out");

    let o = run(&p, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "one file failed: exit 1\n{err}");
    assert!(
        err.contains("failed files:") && err.contains("c_corrupt.mp4"),
        "a table names the corrupt file:\n{err}"
    );
    for (name, frames) in &counts {
        let mp4 = out.join(format!("{name}.mp4"));
        assert_eq!(
            video_info(&mp4).0,
            *frames,
            "{name}.mp4 holds every frame of its input"
        );
        assert_eq!(
            lines(&out.join(format!("{name}.jsonl"))),
            *frames,
            "{name}.jsonl"
        );
    }
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("corrupt") || n.ends_with(".partial")),
        "no output of the corrupt file and nothing partial: {names:?}"
    );
    let s = summary(&out.join("batch.json"));
    assert_eq!(
        (s["complete"].as_u64(), s["failed"].as_u64()),
        (Some(5), Some(1))
    );
    assert_eq!(outcome_of(&s, "c_corrupt"), "failed");
    for (name, frames) in &counts {
        let row = s["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name.as_str())
            .unwrap();
        assert_eq!(
            row["frames"].as_u64(),
            Some(*frames),
            "{name} in batch.json"
        );
        assert!(row["fps"].as_f64().unwrap() > 0.0, "{row}");
    }

    // A rerun skips the five complete files and leaves them untouched.
    let stamp = |name: &str| {
        std::fs::metadata(out.join(format!("{name}.mp4")))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before = stamp("a_ball");
    let t = Instant::now();
    let o = run(&p, &[]);
    let err = stderr(&o);
    eprintln!("rerun took {:.1} s", t.elapsed().as_secs_f64());
    assert!(err.contains("skipping 5 file(s)"), "{err}");
    assert_eq!(
        o.status.code(),
        Some(1),
        "the corrupt file fails again:\n{err}"
    );
    assert_eq!(stamp("a_ball"), before, "a skipped output is not rewritten");
    let s = summary(&out.join("batch.json"));
    assert_eq!(s["skipped"].as_u64(), Some(5), "{s}");

    // --force redoes them.
    let o = run(&p, &["--force"]);
    assert!(!stderr(&o).contains("skipping"), "{}", stderr(&o));
    assert_ne!(stamp("a_ball"), before, "--force rewrites");
    assert_eq!(video_info(&out.join("a_ball.mp4")).0, counts["a_ball"]);
}

#[test]
fn three_shards_cover_every_file_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = clips(dir.path(), 5);
    let p = pipeline_file(
        dir.path(),
        "jsonl.toml",
        "[source]\ntype = \"file\"\npath = \"in\"\n\n\
         [[sinks]]\ntype = \"jsonl\"\npath = \"out/{name}.jsonl\"\n",
    );
    // Three processes at once, as three pods of an Indexed Job: no coordination.
    let children: Vec<_> = (0..3)
        .map(|i| {
            segstream(&["run", p.to_str().unwrap(), "--status-interval", "0"])
                .env("JOB_COMPLETION_INDEX", i.to_string())
                .env("JOB_COMPLETIONS", "3")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.code().is_some(), "{}", stderr(&o));
    }
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for i in 0..3 {
        let s = summary(&dir.path().join(format!("out/batch-{i}-of-3.json")));
        assert_eq!(s["shard"], format!("{i}/3"));
        for r in s["rows"].as_array().unwrap() {
            seen.entry(r["name"].as_str().unwrap().into())
                .or_default()
                .push(i);
        }
    }
    let all: Vec<&str> = CLIPS.to_vec();
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>(),
        all,
        "every file in some shard"
    );
    for (name, shards) in &seen {
        assert_eq!(shards.len(), 1, "{name} in shards {shards:?}");
    }
    // The same split with --shard, and files of other shards untouched.
    let o = run(&p, &["--shard", "1/3", "--force"]);
    let err = stderr(&o);
    let in_shard = seen.values().filter(|s| s[0] == 1).count();
    assert!(
        err.contains(&format!("shard 1/3: {in_shard} of the 6 files")),
        "{err}"
    );
    let o = run(&p, &["--shard", "3/3"]);
    assert!(
        stderr(&o).contains("--shard 3/3 is not a shard"),
        "{}",
        stderr(&o)
    );
    drop(input);
}

#[test]
fn a_killed_batch_leaves_no_partial_output_under_a_finished_name() {
    let dir = tempfile::tempdir().unwrap();
    let (_, counts) = clips(dir.path(), 40);
    let p = segmenting(dir.path());
    let out = dir.path().join("out");
    let mut child = segstream(&["run", p.to_str().unwrap(), "--status-interval", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once the first file is complete and others are in flight.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !out.join("a_ball.jsonl").exists() {
        assert!(Instant::now() < deadline, "no file completed in 300 s");
        assert!(child.try_wait().unwrap().is_none(), "the batch ended first");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut partial = 0;
    for e in std::fs::read_dir(&out).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".partial") {
            partial += 1;
            continue;
        }
        // Every output under a finished name holds every frame of its input.
        let stem = name.split('.').next().unwrap();
        let path = out.join(&name);
        let frames = if name.ends_with(".mp4") {
            video_info(&path).0
        } else {
            lines(&path)
        };
        assert_eq!(frames, counts[stem], "{name} after the kill");
    }
    assert!(partial > 0, "files in flight are left as .partial");
    // The rerun finishes the rest and keeps what was finished.
    let o = run(&p, &[]);
    assert!(stderr(&o).contains("skipping"), "{}", stderr(&o));
    for (name, frames) in &counts {
        assert_eq!(
            video_info(&out.join(format!("{name}.mp4"))).0,
            *frames,
            "{name}"
        );
        assert!(!out.join(format!("{name}.mp4.partial")).exists());
    }
}

#[test]
fn many_files_need_a_name_in_every_output_path() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    make_video(&input.join("x.mp4"), 3, 64, 64, "");
    std::fs::copy(input.join("x.mp4"), input.join("x.mkv")).unwrap();
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        "[source]\ntype = \"file\"\npath = \"in\"\n\n\
         [[sinks]]\ntype = \"mp4\"\npath = \"out/all.mp4\"\n\n\
         [[sinks]]\ntype = \"jsonl\"\npath = \"out/{name}.jsonl\"\n",
    );
    let o = run_with_deadline(
        segstream(&["validate", p.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("would be written by all 2 input files"),
        "{err}"
    );
    assert!(err.contains("both have the name x"), "{err}");
    let o = run_with_deadline(
        segstream(&[
            "validate",
            p.to_str().unwrap(),
            "--input",
            "/nonexistent/*.mp4",
        ]),
        Duration::from_secs(60),
    );
    assert!(stderr(&o).contains("matches no file"), "{}", stderr(&o));
}

#[test]
fn bench_over_a_folder_runs_every_frame_of_every_file_and_warms_up_once() {
    let dir = tempfile::tempdir().unwrap();
    let (input, counts) = clips(dir.path(), 8);
    let p = pipeline_file(
        dir.path(),
        "jsonl.toml",
        "[source]\ntype = \"file\"\npath = \"in\"\n\n\
         [[sinks]]\ntype = \"jsonl\"\npath = \"out/{name}.jsonl\"\n",
    );
    let o = run_with_deadline(
        segstream(&[
            "bench",
            p.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--warmup",
            "3",
        ]),
        Duration::from_secs(300),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    // The corrupt clip fails alone; the five others are run whole.
    let total: u64 = counts.values().sum();
    assert!(
        out.contains(&format!("{} frames after 3 warm-up", total - 3)),
        "{out}"
    );
}
