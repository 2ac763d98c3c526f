//! Recordings that survive a crash: a SIGKILLed run leaves every output readable, holding
//! what was processed up to a moment before the kill.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Held by the tests that time a kill, so they do not share the two cores with each other.
static TIMED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn timed() -> std::sync::MutexGuard<'static, ()> {
    TIMED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts `segstream run PIPELINE` in the background, quietly.
fn start(pipeline: &Path) -> Child {
    segstream(&["run", pipeline.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Complete lines in a file that is being written (0 while it does not exist).
fn lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Polls the JSONL sink's line count (one line per processed frame) until `after` has passed
/// since the first frame, then SIGKILLs the run. Returns how many frames had been processed
/// one second before the kill, and how many at the kill.
fn kill_after(child: &mut Child, jsonl: &Path, after: Duration) -> (usize, usize) {
    let (before, _, at_kill) = kill_after_with(child, jsonl, after);
    (before, at_kill)
}

/// `kill_after`, also with the frames processed 1.5 s before the kill.
fn kill_after_with(child: &mut Child, jsonl: &Path, after: Duration) -> (usize, usize, usize) {
    let (before, at_kill) = kill_sampled(
        child,
        jsonl,
        after,
        &[Duration::from_secs(1), Duration::from_millis(1500)],
    );
    (before[0], before[1], at_kill)
}

/// Polls the JSONL sink's line count until `after` has passed since the first frame, then
/// SIGKILLs the run. Returns the frames processed each of `agos` before the kill, and at it.
fn kill_sampled(
    child: &mut Child,
    jsonl: &Path,
    after: Duration,
    agos: &[Duration],
) -> (Vec<usize>, usize) {
    let mut samples: Vec<(Instant, usize)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let first = loop {
        assert!(Instant::now() < deadline, "no frame processed in 120 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first frame"
        );
        let n = lines(jsonl);
        if n > 0 {
            break Instant::now();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    while first.elapsed() < after {
        samples.push((Instant::now(), lines(jsonl)));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before the kill; make the input longer"
    );
    let killed = Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();
    let processed_before = |ago: Duration| {
        samples
            .iter()
            .filter(|(t, _)| *t + ago <= killed)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    };
    (
        agos.iter().map(|a| processed_before(*a)).collect(),
        lines(jsonl),
    )
}

#[test]
fn sigkilled_mkv_recording_keeps_every_frame_but_its_last_cluster() {
    let _timed = timed();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.mp4");
    // Long enough that even an idle machine (over 500 fps here) is still running at the kill.
    make_video(&input, 2400, 640, 360, "pattern=ball");
    let out = dir.path().join("out.mkv");
    let jsonl = dir.path().join("out.jsonl");
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"file\"\npath = {input:?}\n\n\
             [[sinks]]\ntype = \"mkv\"\npath = {out:?}\n\n\
             [[sinks]]\ntype = \"jsonl\"\npath = {jsonl:?}\n"
        ),
    );
    let mut child = start(&p);
    // Clusters start at key frames, every two seconds of video: a kill loses at most the
    // cluster being written, so what was processed 2.5 s before is in the file.
    let (before, at_kill) = kill_sampled(
        &mut child,
        &jsonl,
        Duration::from_millis(3500),
        &[Duration::from_millis(2500)],
    );
    let (frames, w, h) = video_info(&out);
    eprintln!(
        "mkv kill at 3.5 s: {} frames processed 2.5 s before, {at_kill} at the kill, {frames} in \
         the file",
        before[0]
    );
    assert_eq!((w, h), (640, 360));
    assert!(before[0] > 0, "nothing processed 2.5 s before the kill");
    assert!(
        frames as usize >= before[0],
        "the MKV holds {frames} frames, but {} had been processed 2.5 s before the kill",
        before[0]
    );
}

#[test]
fn sigkilled_file_to_mp4_run_keeps_every_frame_up_to_a_second_before() {
    let _timed = timed();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.mp4");
    make_video(&input, 3600, 640, 360, "pattern=ball");
    for (k, after) in [1.5, 2.5, 3.5].into_iter().enumerate() {
        let out = dir.path().join(format!("out{k}.mp4"));
        let jsonl = dir.path().join(format!("out{k}.jsonl"));
        let p = pipeline_file(
            dir.path(),
            &format!("p{k}.toml"),
            &format!(
                "[source]\ntype = \"file\"\npath = {input:?}\n\n\
                 [[sinks]]\ntype = \"mp4\"\npath = {out:?}\n\n\
                 [[sinks]]\ntype = \"jsonl\"\npath = {jsonl:?}\n"
            ),
        );
        let mut child = start(&p);
        let (before, at_kill) = kill_after(&mut child, &jsonl, Duration::from_secs_f64(after));
        assert!(
            before > 0,
            "kill {k}: nothing processed a second before the kill"
        );
        let (frames, w, h) = video_info(&out);
        eprintln!(
            "kill at {after} s: {before} frames processed a second before, {at_kill} at the \
             kill, {frames} in the MP4"
        );
        assert_eq!((w, h), (640, 360), "kill {k}");
        assert!(
            frames as usize >= before,
            "kill at {after} s: the MP4 holds {frames} frames, but {before} had been processed \
             a second before the kill ({at_kill} at the kill)"
        );
    }
}

/// A tmpfs of `kib` KiB mounted for one test and unmounted when dropped: a disk that fills
/// up for real (ENOSPC), as a recorder's disk does.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn new(kib: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "cannot mount a {kib} KiB tmpfs (the disk-full tests run as root): {}",
            stderr(&o)
        );
        SmallDisk(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// Runs a pipeline of the `test` source (`frames` frames of `size`) into `sinks`, which is
/// expected to fail on a full disk; returns its one-line error.
fn run_until_full(dir: &Path, size: (u32, u32), sinks: &str) -> String {
    let p = pipeline_file(
        dir,
        "p.toml",
        &format!(
            "[source]\ntype = \"test\"\npattern = \"ball\"\nwidth = {}\nheight = {}\n\
             frames = 100000\n\n{sinks}",
            size.0, size.1
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap()]),
        Duration::from_secs(300),
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "a full disk must fail the run: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err.lines()
        .find(|l| l.contains("No space left on device"))
        .unwrap_or_else(|| panic!("no disk-full error in: {err}"))
        .to_owned()
}

/// Fills a `kib` KiB disk with one sink's output (`sink` gives the output on the disk and the
/// sink's table); returns `outputs.py KIND` on what was left.
fn fill_disk(
    kib: u32,
    size: (u32, u32),
    kind: &str,
    sink: impl Fn(&Path) -> (PathBuf, String),
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::new(kib);
    let (output, table) = sink(disk.path());
    let error = run_until_full(dir.path(), size, &table);
    assert!(error.contains(&output.display().to_string()), "{error}");
    reference("outputs.py", &[kind, output.to_str().unwrap()])
}

#[test]
fn jsonl_on_a_full_disk_ends_with_a_whole_line() {
    let check = fill_disk(16, (64, 48), "jsonl", |disk| {
        let jsonl = disk.join("meta.jsonl");
        let table = format!("[[sinks]]\ntype = \"jsonl\"\npath = {jsonl:?}\n");
        (jsonl, table)
    });
    assert!(check.contains("\"complete\": true"), "{check}");
    assert!(check.contains("\"bad\": 0"), "{check}");
    assert!(!check.contains("\"lines\": 0"), "{check}");
}

#[test]
fn pngs_on_a_full_disk_are_each_whole() {
    let check = fill_disk(256, (160, 120), "pngs", |disk| {
        let frames = disk.join("frames");
        let table = format!("[[sinks]]\ntype = \"png\"\ndir = {frames:?}\nwhat = \"frame\"\n");
        (frames, table)
    });
    // Every PNG decodes, and no temporary file is left behind.
    assert!(
        check.contains("\"unreadable\": [], \"other\": []"),
        "{check}"
    );
    assert!(!check.contains("\"png\": 0"), "{check}");
}

#[test]
fn sigkilled_png_sink_leaves_only_whole_pngs() {
    let _timed = timed();
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    let jsonl = dir.path().join("meta.jsonl");
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"test\"\npattern = \"ball\"\nwidth = 640\nheight = 360\n\
             frames = 100000\n\n\
             [[sinks]]\ntype = \"png\"\ndir = {frames:?}\nwhat = \"frame\"\n\n\
             [[sinks]]\ntype = \"jsonl\"\npath = {jsonl:?}\n"
        ),
    );
    let mut child = start(&p);
    kill_after(&mut child, &jsonl, Duration::from_millis(1500));
    let check = reference("outputs.py", &["pngs", frames.to_str().unwrap()]);
    assert!(check.contains("\"unreadable\": []"), "{check}");
    assert!(!check.contains("\"png\": 0"), "{check}");
    // What the kill interrupted is a hidden temporary file, never a PNG under its name.
    let at = check.find("\"other\": [").unwrap() + "\"other\": [".len();
    for name in check[at..].trim_end_matches([']', '}', '\n']).split(", ") {
        let name = name.trim_matches('"');
        assert!(
            name.is_empty() || (name.starts_with('.') && name.ends_with(".part")),
            "unexpected file {name} in {check}"
        );
    }
}

#[test]
fn odd_sized_input_is_encoded_with_even_padding_and_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("odd.mp4");
    make_video(&input, 20, 641, 359, "pattern=ball");
    let out = dir.path().join("out.mp4");
    let o = run_with_deadline(
        segstream(&[
            "run",
            "pipelines/file_to_mp4.toml",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]),
        Duration::from_secs(300),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("641x359") && err.contains("642x360"), "{err}");
    assert_eq!(video_info(&out), (20, 642, 360));
}

#[test]
fn frames_too_small_to_encode_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let image = make_image(dir.path(), 1, 1, 7);
    let started = Instant::now();
    let o = run_with_deadline(
        segstream(&[
            "run",
            "pipelines/file_to_mp4.toml",
            "--input",
            image.to_str().unwrap(),
            "--output",
            dir.path().join("out.mp4").to_str().unwrap(),
        ]),
        Duration::from_secs(120),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("1x1") && err.contains("16x16"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refusing took {:?}",
        started.elapsed()
    );
}

#[test]
fn sigkilled_segmented_recording_keeps_every_segment_but_the_last_complete() {
    let _timed = timed();
    let dir = tempfile::tempdir().unwrap();
    let segments = dir.path().join("segments");
    let jsonl = dir.path().join("meta.jsonl");
    let template = segments.join("cam-{index}.mp4");
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"test\"\npattern = \"ball\"\nwidth = 640\nheight = 360\n\
             live = true\n\n\
             [[sinks]]\ntype = \"mp4\"\npath = {template:?}\nsegment_s = 2\n\n\
             [[sinks]]\ntype = \"jsonl\"\npath = {jsonl:?}\n"
        ),
    );
    let mut child = start(&p);
    let (before, before_1_5, at_kill) =
        kill_after_with(&mut child, &jsonl, Duration::from_millis(6500));
    let mut files: Vec<_> = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.len() >= 3,
        "expected at least 3 segments of 2 s in 6.5 s: {names:?}"
    );
    assert_eq!(names[0], "cam-00000.mp4");
    let mut total = 0;
    for (i, file) in files.iter().enumerate() {
        let (frames, w, h) = video_info(file);
        eprintln!("{}: {frames} frames", names[i]);
        assert_eq!((w, h), (640, 360));
        if i + 1 < files.len() {
            // A finished segment holds its two seconds at 30 fps.
            assert!(
                (55..=65).contains(&frames),
                "{} holds {frames} frames (expected about 60)",
                names[i]
            );
        }
        total += frames as usize;
    }
    // The segmenter holds back one group of pictures (half a second) before the muxer sees
    // it, so a segmented recording may lose half a second more than a plain one.
    assert!(
        total >= before_1_5,
        "the segments hold {total} frames, but {before_1_5} had been processed 1.5 s before \
         the kill ({before} a second before, {at_kill} at the kill)"
    );
}

/// Every decoded frame's time in seconds, as PyAV reads them.
fn frame_times(path: &Path) -> Vec<f64> {
    let out = reference("video.py", &["pts", path.to_str().unwrap()]);
    out.trim()
        .trim_matches(['[', ']'])
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect()
}

#[test]
fn variable_frame_rate_keeps_every_frame_at_its_input_time() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("vfr.mp4");
    reference("video.py", &["make-vfr", input.to_str().unwrap()]);
    let expected = frame_times(&input);
    assert_eq!(expected.len(), 40);
    let (mp4, mkv) = (dir.path().join("out.mp4"), dir.path().join("out.mkv"));
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"file\"\npath = {input:?}\n\n\
             [[sinks]]\ntype = \"mp4\"\npath = {mp4:?}\n\n\
             [[sinks]]\ntype = \"mkv\"\npath = {mkv:?}\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap()]),
        Duration::from_secs(120),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for out in [&mp4, &mkv] {
        let got = frame_times(out);
        assert_eq!(got.len(), 40, "{}: {got:?}", out.display());
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            let (g, e) = (g - got[0], e - expected[0]);
            assert!(
                (g - e).abs() < 0.002,
                "{}: frame {i} at {g:.3} s, the input's at {e:.3} s",
                out.display()
            );
        }
    }
}

#[test]
fn aac_audio_is_copied_in_sync_and_cut_where_the_video_ends() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("av.mp4");
    // 3 s of video and 3.2 s of AAC, muxed by GStreamer alone.
    let launch = format!(
        "videotestsrc num-buffers=90 pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! x264enc speed-preset=ultrafast ! mp4mux name=m ! filesink location={} \
         audiotestsrc num-buffers=150 samplesperbuffer=1024 ! audio/x-raw,rate=48000 \
         ! avenc_aac ! m.",
        input.display()
    );
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.arg("-q").args(launch.split_whitespace());
    let o = run_with_deadline(cmd, Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    let frame = 1.0 / 30.0;
    for (frames, audio, seconds) in [
        (None, true, 3.0),
        (Some("30"), true, 1.0),
        (None, false, 3.0),
    ] {
        let (mp4, mkv) = (dir.path().join("out.mp4"), dir.path().join("out.mkv"));
        let p = pipeline_file(
            dir.path(),
            "p.toml",
            &format!(
                "[source]\ntype = \"file\"\npath = {input:?}\n\n\
                 [[sinks]]\ntype = \"mp4\"\npath = {mp4:?}\naudio = {audio}\n\n\
                 [[sinks]]\ntype = \"mkv\"\npath = {mkv:?}\naudio = {audio}\n"
            ),
        );
        let mut args = vec!["run", p.to_str().unwrap()];
        if let Some(n) = frames {
            args.extend(["--frames", n]);
        }
        let o = run_with_deadline(segstream(&args), Duration::from_secs(120));
        assert!(o.status.success(), "{}", stderr(&o));
        for out in [&mp4, &mkv] {
            assert_video_and_aac(out, seconds, frame, audio, frame);
        }
    }
}

#[test]
fn rotation_metadata_is_applied_as_players_apply_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("phone.mp4");
    // A 320x240 clip to be shown turned a quarter clockwise, as phones record (PyAV).
    reference("video.py", &["make-rotated", input.to_str().unwrap()]);
    let reference_dir = dir.path().join("reference");
    let facts = reference(
        "video.py",
        &[
            "displayed",
            input.to_str().unwrap(),
            reference_dir.to_str().unwrap(),
        ],
    );
    assert!(
        facts.contains("\"rotation_cw\": 90"),
        "the clip carries the rotation: {facts}"
    );
    let out = dir.path().join("frames");
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"file\"\npath = {input:?}\n\n\
             [[sinks]]\ntype = \"png\"\ndir = {out:?}\nwhat = \"frame\"\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap(), "--status-interval", "0"]),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let ours = read_png(&out.join("000000.png"));
    let theirs = read_png(&reference_dir.join("000000.png"));
    assert_eq!((ours.width, ours.height), (240, 320), "turned upright");
    assert_eq!((theirs.width, theirs.height), (240, 320));
    // The same picture as FFmpeg shows it (colour conversion differs by a level or two).
    let diff: f64 = ours
        .data
        .iter()
        .zip(&theirs.data)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .sum::<f64>()
        / ours.data.len() as f64;
    assert!(
        diff < 4.0,
        "mean difference {diff:.2} from FFmpeg's upright frame"
    );
}

/// The settings x264 wrote into a stream (its SEI message: "x264 - core ... options: ...").
fn x264_options(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(11)
        .position(|w| w == b"x264 - core")
        .unwrap_or_else(|| panic!("{}: no x264 settings in the stream", path.display()));
    let end = bytes[at..]
        .iter()
        .position(|&b| b == 0)
        .map_or(bytes.len(), |e| at + e);
    String::from_utf8_lossy(&bytes[at..end]).into_owned()
}

/// `preset` picks x264's speed preset for file sinks: the encoder's own record of its
/// settings in the stream names the one asked for (each preset has its own subpixel
/// refinement level), the default is `veryfast`, ffprobe reads every frame back, and a
/// preset x264 does not have is refused by name.
#[test]
fn file_sinks_encode_with_the_preset_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.mp4");
    make_video(&input, 10, 320, 240, "pattern=ball");
    // The input file into one sink, whose settings are `sink`.
    let pipeline = |name: &str, sink: &str| {
        pipeline_file(
            dir.path(),
            name,
            &format!(
                "[source]\ntype = \"file\"\npath = {:?}\n\n[[sinks]]\n{sink}",
                input.to_str().unwrap()
            ),
        )
    };
    for (preset, subme) in [
        (None, "subme=2"),
        (Some("ultrafast"), "subme=0"),
        (Some("slow"), "subme=8"),
    ] {
        let name = preset.unwrap_or("default");
        for container in ["mp4", "mkv"] {
            let out = dir.path().join(format!("{name}.{container}"));
            let line = preset.map_or(String::new(), |p| format!("preset = \"{p}\"\n"));
            let sink = format!(
                "type = \"{container}\"\npath = {:?}\n{line}",
                out.to_str().unwrap()
            );
            let p = pipeline("preset.toml", &sink);
            let o = run_with_deadline(
                segstream(&["run", p.to_str().unwrap()]),
                Duration::from_secs(120),
            );
            assert!(o.status.success(), "{name} {container}: {}", stderr(&o));
            assert_eq!(video_info(&out), (10, 320, 240), "{name} {container}");
            let options = x264_options(&out);
            assert!(
                options.split_whitespace().any(|o| o == subme),
                "{name} {container}: {subme} expected in {options}"
            );
        }
    }
    let p = pipeline(
        "bad_preset.toml",
        "type = \"mp4\"\npath = \"out.mp4\"\npreset = \"warp\"\n",
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    for part in [
        "bad_preset.toml",
        "unknown variant `warp`",
        "ultrafast",
        "veryslow",
    ] {
        assert!(err.contains(part), "{part:?} expected in: {err}");
    }
}
