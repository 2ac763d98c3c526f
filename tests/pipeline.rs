//! Whole pipelines on real files: nothing lost, nothing reordered, outputs playable.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Mean absolute difference between two RGB PNGs of the same size.
fn mad(a: &Png, b: &Png) -> f64 {
    assert_eq!(
        (a.width, a.height, a.channels),
        (b.width, b.height, b.channels)
    );
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum::<f64>()
        / a.data.len() as f64
}

/// Frames decoded by PyAV into `dir`.
fn reference_frames(video: &Path, dir: &Path) -> Vec<Png> {
    reference(
        "video.py",
        &["frames", video.to_str().unwrap(), dir.to_str().unwrap()],
    );
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names.iter().map(|p| read_png(p)).collect()
}

#[test]
fn file_of_300_frames_comes_out_whole_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.mp4");
    // The pattern moves one pixel per frame, so every frame differs from its neighbours.
    make_video(&input, 300, 320, 176, "pattern=smpte horizontal-speed=1");
    let frames = dir.path().join("frames");
    let out = dir.path().join("out.mp4");
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"file\"\npath = {input:?}\n\n\
             [[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\nqueue = {{ capacity = 2 }}\n\n\
             [[transforms]]\ntype = \"composite\"\n\n\
             [[sinks]]\ntype = \"mp4\"\npath = {out:?}\n\n\
             [[sinks]]\ntype = \"png\"\ndir = {frames:?}\nwhat = \"frame\"\n"
        ),
    );
    let cmd = segstream(&["run", p.to_str().unwrap()]);
    let o = run_with_deadline(cmd, Duration::from_secs(600));
    assert!(o.status.success(), "{}", stderr(&o));

    let ours: Vec<_> = (0..300)
        .map(|i| frames.join(format!("{i:06}.png")))
        .collect();
    assert!(
        ours.iter().all(|p| p.exists()),
        "some of the 300 frames are missing"
    );
    assert!(!frames.join("000300.png").exists());
    let reference = reference_frames(&input, &dir.path().join("ref"));
    assert_eq!(reference.len(), 300);
    // Frame i must be the input's frame i: closest to it among all its neighbours.
    for (i, path) in ours.iter().enumerate() {
        let png = read_png(path);
        let d = mad(&png, &reference[i]);
        for j in [i.wrapping_sub(1), i + 1] {
            if let Some(other) = reference.get(j) {
                assert!(
                    d < mad(&png, other),
                    "output frame {i} looks more like input frame {j}"
                );
            }
        }
        assert!(
            d < 4.0,
            "output frame {i} differs from input frame {i} by {d:.2} on average"
        );
    }
    assert_eq!(video_info(&out), (300, 320, 176));
}

#[test]
fn mkv_sink_writes_every_frame_as_matroska() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.mp4");
    make_video(&input, 45, 320, 176, "pattern=ball");
    let (mp4, mkv) = (dir.path().join("out.mp4"), dir.path().join("out.mkv"));
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"file\"\npath = {input:?}\n\n\
             [[transforms]]\ntype = \"infer\"\nmodel = \"deeplabv3plus_mobilenet_v2\"\n\n\
             [[transforms]]\ntype = \"composite\"\n\n\
             [[sinks]]\ntype = \"mp4\"\npath = {mp4:?}\n\n\
             [[sinks]]\ntype = \"mkv\"\npath = {mkv:?}\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap()]),
        Duration::from_secs(300),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let info = reference("video.py", &["info", mkv.to_str().unwrap()]);
    assert!(info.contains("matroska"), "not a Matroska file: {info}");
    assert_eq!(video_info(&mkv), (45, 320, 176));
    // The same encoder feeds both containers: the pictures agree.
    let a = reference_frames(&mp4, &dir.path().join("a"));
    let b = reference_frames(&mkv, &dir.path().join("b"));
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        let d = mad(a, b);
        assert!(d < 1.0, "mkv frame {i} differs from the mp4's by {d:.2}");
    }
}

#[test]
fn demo_pipeline_writes_playable_overlay_video() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo.mp4");
    let o = run_with_deadline(
        segstream(&[
            "run",
            "pipelines/file_to_mp4.toml",
            "--output",
            out.to_str().unwrap(),
        ]),
        Duration::from_secs(600),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("output: {}", out.display())));
    let input = root().join("assets/sample.mp4");
    let (frames, w, h) = video_info(&input);
    assert_eq!(
        video_info(&out),
        (frames, w, h),
        "output should match the input's frames and size"
    );
    // The overlay is visible: the output differs clearly from the input.
    let a = reference_frames(&input, &dir.path().join("in"));
    let b = reference_frames(&out, &dir.path().join("out"));
    let d = mad(&a[0], &b[0]);
    assert!(
        d > 10.0,
        "output frame 0 differs from the input by only {d:.2}: no overlay?"
    );
}

/// Sends `signal` to a long run after a second; the MP4 must be finalized and playable with
/// every frame the sink received, and the exit code must be 128 + the signal's number.
fn signal_finalizes_mp4(signal: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live.mp4");
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"test\"\npattern = \"ball\"\nwidth = 320\nheight = 180\n\n\
             [[sinks]]\ntype = \"mp4\"\npath = {out:?}\n"
        ),
    );
    let child = segstream(&["run", p.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let start = std::time::Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "shutdown took {:?}",
        start.elapsed()
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{signal}: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("sink mp4"))
        .unwrap_or_else(|| panic!("no summary: {err}"));
    let written: u64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(written > 0);
    assert_eq!(video_info(&out), (written, 320, 180));
}

#[test]
fn sigint_finalizes_the_mp4() {
    signal_finalizes_mp4("-INT", 130);
}

#[test]
fn sigterm_finalizes_the_mp4() {
    signal_finalizes_mp4("-TERM", 143);
}

#[test]
fn sighup_finalizes_the_mp4() {
    signal_finalizes_mp4("-HUP", 129);
}

/// SIGINT in the middle of a file: exit 130, and the MP4 holds every frame processed so
/// far, which are the file's first frames in order (files are lossless).
#[test]
fn sigint_during_a_file_keeps_every_processed_frame() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.mp4");
    make_video(&input, 300, 160, 120, "pattern=smpte horizontal-speed=1");
    let out = dir.path().join("out.mp4");
    let frames = dir.path().join("frames");
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"file\"\npath = {input:?}\n\n\
             [[transforms]]\ntype = \"delay\"\nms = 20\n\n\
             [[sinks]]\ntype = \"mp4\"\npath = {out:?}\n\n\
             [[sinks]]\ntype = \"png\"\ndir = {frames:?}\nwhat = \"frame\"\n"
        ),
    );
    let child = segstream(&["run", p.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let start = std::time::Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(30));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    let row = |name: &str| -> Vec<u64> {
        err.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row: {err}"))[name.len()..]
            .split_whitespace()
            .take(3)
            .map(|v| v.parse().unwrap())
            .collect()
    };
    let processed = row("delay")[1];
    assert!(processed > 0 && processed < 300, "{err}");
    assert_eq!(row("sink mp4")[0], processed, "{err}");
    assert_eq!(video_info(&out), (processed, 160, 120));
    // The PNGs are frames 0..processed of the input, each closest to its own input frame.
    let reference = reference_frames(&input, &dir.path().join("ref"));
    for i in [0, processed as usize / 2, processed as usize - 1] {
        let png = read_png(&frames.join(format!("{i:06}.png")));
        let d = mad(&png, &reference[i]);
        assert!(d < 4.0, "frame {i} differs by {d:.2}");
        for j in [i.wrapping_sub(1), i + 1] {
            if let Some(other) = reference.get(j) {
                assert!(d < mad(&png, other), "frame {i} looks like input frame {j}");
            }
        }
    }
    assert!(!frames.join(format!("{processed:06}.png")).exists());
}

/// Decoded pixels are the colours FFmpeg shows: the decoder's own YUV converted by segstream
/// with the stream's matrix and range (BT.601 for SD, BT.709 for HD, full-range JPEG; a
/// 4:2:0 JPEG, since GStreamer's jpegdec gives 4:2:0 for 4:4:4 ones and FFmpeg does not).
#[test]
fn decoded_frames_have_the_colours_ffmpeg_shows() {
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("sd.mp4");
    make_video(&sd, 3, 640, 360, "pattern=smpte");
    let hd = dir.path().join("hd.mp4");
    make_video(&hd, 3, 1280, 720, "pattern=smpte");
    let jpeg = dir.path().join("still.jpg");
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.arg("-q").args(
        format!(
            "videotestsrc num-buffers=1 pattern=smpte \
             ! video/x-raw,width=320,height=240,format=I420 ! jpegenc quality=95 \
             ! filesink location={}",
            jpeg.display()
        )
        .split_whitespace(),
    );
    let o = run_with_deadline(cmd, Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    for input in [&sd, &hd, &jpeg] {
        let name = input.file_stem().unwrap().to_str().unwrap();
        let frames = dir.path().join(format!("{name}-ours"));
        let p = pipeline_file(
            dir.path(),
            "p.toml",
            &format!(
                "[source]\ntype = \"file\"\npath = {input:?}\n\n\
                 [[sinks]]\ntype = \"png\"\ndir = {frames:?}\nwhat = \"frame\"\n"
            ),
        );
        let o = run_with_deadline(
            segstream(&["run", p.to_str().unwrap(), "--frames", "1"]),
            Duration::from_secs(60),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let ours = read_png(&frames.join("000000.png"));
        let theirs = &reference_frames(input, &dir.path().join(format!("{name}-ref")))[0];
        let d = mad(&ours, theirs);
        assert!(
            d < 1.5,
            "{name}: mean difference {d:.2} from FFmpeg's colours"
        );
    }
}
