//! Live sources: RTSP served in-process on 127.0.0.1, outages and reconnection, unanswering
//! servers, bounded latency under a slow stage, several streams at once, and the rtsp sink
//! serving FFmpeg's client while another client stalls.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

/// An RTSP server on 127.0.0.1:`port` with one H.264 test stream at `/live` (160x120,
/// 15 fps, moving ball), running on its own thread and main context until dropped.
struct RtspServer {
    main_loop: glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RtspServer {
    fn start(port: u16, mounts_: &[&str]) -> RtspServer {
        gst::init().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mounts_: Vec<String> = mounts_.iter().map(|s| s.to_string()).collect();
        let thread = std::thread::spawn(move || {
            let context = glib::MainContext::new();
            let main_loop = glib::MainLoop::new(Some(&context), false);
            let server = rtsp::RTSPServer::new();
            server.set_address("127.0.0.1");
            server.set_service(&port.to_string());
            let mounts = server.mount_points().unwrap();
            for (i, mount) in mounts_.iter().enumerate() {
                let factory = rtsp::RTSPMediaFactory::new();
                // Each stream has its own pattern, so outputs can be told apart.
                let pattern = ["ball", "snow"][i % 2];
                // `/vfr` is encoded as "variable rate" (framerate 0/1), as some cameras and
                // servers do: its H.264 timing info then says 1000000000/1.
                let variable = if mount.as_str() == "/vfr" {
                    ",format=I420 ! capssetter caps=\"video/x-raw,framerate=(fraction)0/1\""
                } else {
                    ""
                };
                // `/av` also sends AAC audio, as cameras with a microphone do.
                let audio = if mount.as_str() == "/av" {
                    "audiotestsrc is-live=true wave=ticks ! audio/x-raw,rate=48000,channels=1 \
                     ! avenc_aac ! rtpmp4gpay name=pay1 pt=97"
                } else {
                    ""
                };
                factory.set_launch(&format!(
                    "( videotestsrc is-live=true pattern={pattern} \
                     ! video/x-raw,width=160,height=120,framerate=15/1{variable} \
                     ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 \
                     ! rtph264pay name=pay0 pt=96 config-interval=1 {audio} )"
                ));
                mounts.add_factory(mount, factory);
            }
            let source = server.attach(Some(&context)).unwrap();
            tx.send(main_loop.clone()).unwrap();
            main_loop.run();
            // Close every client connection and the listening socket.
            server.client_filter(Some(&mut |_, _| rtsp::RTSPFilterResult::Remove));
            if let Some(listener) = context.find_source_by_id(&source) {
                listener.destroy();
            }
            // Let the closes run on this context before it goes away.
            while context.iteration(false) {}
        });
        let main_loop = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        RtspServer {
            main_loop,
            thread: Some(thread),
        }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running `segstream run`, with its stderr collected as it comes.
struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(pipeline: &Path, extra: &[&str]) -> Running {
        let mut args = vec!["run", pipeline.to_str().unwrap()];
        args.extend_from_slice(extra);
        let mut child = segstream(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Running {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `text`; fails the test after `limit`.
    fn wait_for(&mut self, text: &str, limit: Duration) {
        let start = Instant::now();
        while !self.stderr().contains(text) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "segstream exited ({status}) before {text:?}: {}",
                    self.stderr()
                );
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("no {text:?} after {limit:?}: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn signal(&self, signal: &str) {
        assert!(Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success());
    }

    /// Waits for the exit (killing it after `limit`) and returns the status and all stderr.
    fn finish(mut self, limit: Duration) -> (ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("segstream hung after {limit:?}: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.stderr())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Frames written by the sink named `name`, from the summary table.
fn sink_frames(stderr: &str, name: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} row in the summary: {stderr}"));
    line.split_whitespace()
        .nth(name.split_whitespace().count())
        .unwrap()
        .parse()
        .unwrap()
}

/// The value of a `key=value` field in the first log line containing `message`.
fn log_field(stderr: &str, message: &str, key: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains(message))
        .unwrap_or_else(|| panic!("no {message:?} line: {stderr}"));
    let at = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    line[at + key.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_cameras_aac_audio_is_recorded_in_sync_and_a_silent_stream_stays_video_only() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = RtspServer::start(port, &["/av", "/live"]);
    let frame = 1.0 / 15.0;
    for (mount, audio) in [("av", true), ("live", true), ("av", false)] {
        let (mp4, mkv) = (dir.path().join("out.mp4"), dir.path().join("out.mkv"));
        let p = pipeline_file(
            dir.path(),
            "p.toml",
            &format!(
                "[source]\ntype = \"rtsp\"\nurl = \"rtsp://127.0.0.1:{port}/{mount}\"\n\
                 transport = \"tcp\"\nlatency_ms = 50\n\n\
                 [[sinks]]\ntype = \"mp4\"\npath = {mp4:?}\naudio = {audio}\n\n\
                 [[sinks]]\ntype = \"mkv\"\npath = {mkv:?}\naudio = {audio}\n"
            ),
        );
        let o = run_with_deadline(
            segstream(&["run", p.to_str().unwrap(), "--frames", "45"]),
            Duration::from_secs(120),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        for out in [&mp4, &mkv] {
            assert_video_and_aac(out, 3.0, 2.0 * frame, audio && mount == "av", frame);
        }
    }
}

#[test]
fn rtsp_server_restart_is_one_outage_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("rtsp.mp4");
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"rtsp\"\nurl = \"rtsp://127.0.0.1:{port}/live\"\n\
             transport = \"tcp\"\nlatency_ms = 50\ntimeout_s = 2\nbackoff_max_s = 1\n\n\
             [[sinks]]\ntype = \"mp4\"\npath = {out:?}\n"
        ),
    );
    let server = RtspServer::start(port, &["/live"]);
    let mut run = Running::start(&p, &["--log-level", "warn", "--status-interval", "0.5"]);
    // Frames flow: the status line counts some.
    let start = Instant::now();
    while !run.stderr().lines().any(|l| {
        l.starts_with("status:")
            && l.split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n >= 10)
    }) {
        assert!(run.is_running(), "segstream ended early: {}", run.stderr());
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no frames: {}",
            run.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    drop(server);
    run.wait_for("Stream lost; reconnecting.", Duration::from_secs(30));
    // Down long enough for several failed attempts.
    std::thread::sleep(Duration::from_secs(3));
    assert!(run.is_running(), "segstream gave up: {}", run.stderr());

    let server = RtspServer::start(port, &["/live"]);
    run.wait_for("Stream back.", Duration::from_secs(60));
    // Let a second's worth of frames through after the outage.
    std::thread::sleep(Duration::from_secs(2));
    assert!(run.is_running(), "{}", run.stderr());
    run.signal("-INT");
    let (status, err) = run.finish(Duration::from_secs(60));
    drop(server);

    assert_eq!(status.code(), Some(130), "{err}");
    assert_eq!(
        err.matches("Stream lost; reconnecting.").count(),
        1,
        "one outage expected: {err}"
    );
    assert!(err.contains("1 outage(s) of the source"), "{err}");
    assert!(err.contains("each reconnected"), "{err}");
    let before = log_field(&err, "Stream lost; reconnecting.", "frames");
    let written = sink_frames(&err, "sink mp4");
    assert!(
        written > before + 5,
        "{written} frames written, {before} before the outage: no frames after it"
    );
    // One file, kept open across the outage, with every frame processed.
    assert_eq!(video_info(&out), (written, 160, 120));
}

#[test]
fn rtsp_server_that_never_answers_fails_after_the_timeout_and_a_refusal_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // One port with nothing listening, one that accepts connections and never replies.
    let refused = free_port();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    for (port, expected) in [
        (refused, "connection refused by 127.0.0.1"),
        (silent_port, "no frame within 2 s"),
    ] {
        let url = format!("rtsp://127.0.0.1:{port}/none");
        let p = pipeline_file(
            dir.path(),
            &format!("p{port}.toml"),
            &format!(
                "[source]\ntype = \"rtsp\"\nurl = \"{url}\"\ntimeout_s = 2\n\n\
                 [[sinks]]\ntype = \"null\"\n"
            ),
        );
        let started = std::time::Instant::now();
        let o = run_with_deadline(
            segstream(&["run", p.to_str().unwrap()]),
            Duration::from_secs(60),
        );
        let took = started.elapsed();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(
            lines[0].contains(&url) && lines[0].contains(expected),
            "{}",
            lines[0]
        );
        if port == refused {
            // The timeout is for silence; a refusal is known at once.
            assert!(took < Duration::from_secs(2), "refusal took {took:?}");
        }
    }
    drop(silent);
}

/// The columns (in, out, dropped) of a stage's row in the summary table.
fn stage_row(stderr: &str, name: &str) -> (u64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} row in the summary: {stderr}"));
    let n: Vec<u64> = line[name.len()..]
        .split_whitespace()
        .take(3)
        .map(|v| v.parse().unwrap())
        .collect();
    (n[0], n[1], n[2])
}

/// The p99 capture-to-output latency of the summary, in milliseconds.
fn latency_p99_ms(stderr: &str) -> f64 {
    let at = stderr
        .find("p99 ")
        .unwrap_or_else(|| panic!("no latency in the summary: {stderr}"));
    stderr[at + 4..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A 100 ms stage behind a 30 fps live source: frames are dropped (and counted) so the
/// newest frame is processed; latency stays within what the queues can hold.
#[test]
fn slow_stage_on_a_live_source_drops_frames_and_bounds_latency() {
    let dir = tempfile::tempdir().unwrap();
    let (delay_ms, capacity) = (100u64, 2u64);
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"test\"\nwidth = 160\nheight = 120\nfps = 30\nlive = true\n\n\
             [[transforms]]\ntype = \"delay\"\nms = {delay_ms}\nqueue = {{ capacity = {capacity} }}\n\n\
             [[sinks]]\ntype = \"null\"\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap(), "--frames", "90"]),
        Duration::from_secs(120),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let (_, decoded, _) = stage_row(&err, "decode");
    let (delay_in, _, dropped) = stage_row(&err, "delay");
    let (sink_in, _, _) = stage_row(&err, "sink null");
    assert_eq!(decoded, 90);
    assert!(dropped > 30, "only {dropped} of 90 frames dropped: {err}");
    assert_eq!(
        delay_in + dropped,
        decoded,
        "every frame is processed or counted"
    );
    assert_eq!(sink_in, delay_in);
    // A frame waits behind at most `capacity` queued frames and the one in progress; the
    // rest is slack for a loaded machine. Blocking instead would reach seconds here.
    let bound = ((capacity + 1) * delay_ms + 250) as f64;
    let p99 = latency_p99_ms(&err);
    assert!(p99 < bound, "p99 latency {p99} ms over {bound} ms: {err}");
}

/// With the default queues a live frame never waits behind older ones: the queue in front of
/// a slow stage holds the newest frame only, so capture-to-output latency stays within the
/// stage's own time plus two frame intervals (plus slack for a loaded machine; four queued
/// frames, the file default, would reach five stage times).
#[test]
fn live_latency_is_the_slow_stages_time_plus_two_frame_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let delay_ms = 60.0;
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"test\"\nwidth = 160\nheight = 120\nfps = 30\nlive = true\n\n\
             [[transforms]]\ntype = \"delay\"\nms = {delay_ms}\n\n\
             [[sinks]]\ntype = \"null\"\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap(), "--frames", "120"]),
        Duration::from_secs(120),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let (delay_in, _, dropped) = stage_row(&err, "delay");
    assert!(
        dropped > 30,
        "a 60 ms stage at 30 fps drops about half: {err}"
    );
    assert_eq!(
        delay_in + dropped,
        120,
        "every frame is processed or counted"
    );
    let bound = delay_ms + 2.0 * 1000.0 / 30.0 + 60.0;
    let p99 = latency_p99_ms(&err);
    assert!(p99 < bound, "p99 latency {p99} ms over {bound} ms: {err}");
}

/// A live source cannot be blocked: with `when_full = "block"` the capture buffer in front
/// of segstream drops instead, and those drops are counted at decode from the gaps in the
/// stream's timestamps.
#[test]
fn blocking_a_live_source_counts_the_frames_it_loses() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        "[source]\ntype = \"test\"\nwidth = 160\nheight = 120\nfps = 30\nlive = true\n\n\
         [[transforms]]\ntype = \"delay\"\nms = 100\n\
         queue = { capacity = 2, when_full = \"block\" }\n\n\
         [[sinks]]\ntype = \"null\"\n",
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap(), "--frames", "30"]),
        Duration::from_secs(120),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let (_, decoded, lost) = stage_row(&err, "decode");
    assert_eq!(decoded, 30);
    assert_eq!(stage_row(&err, "delay"), (30, 30, 0), "{err}");
    // 30 frames at 10 per second take about 3 s, in which the source made about 90; a busy
    // machine shifts that, so only the order of magnitude is checked.
    assert!(
        (20..=150).contains(&lost),
        "{lost} frames lost at decode, expected about 60: {err}"
    );
}

/// The same slow stage on a file is lossless: back-pressure instead of drops.
#[test]
fn slow_stage_on_a_file_processes_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.mp4");
    make_video(&input, 45, 160, 120, "pattern=ball");
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"file\"\npath = {input:?}\n\n\
             [[transforms]]\ntype = \"delay\"\nms = 20\nqueue = {{ capacity = 2 }}\n\n\
             [[sinks]]\ntype = \"null\"\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap()]),
        Duration::from_secs(120),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let (frames, _, _) = video_info(&input);
    assert_eq!(stage_row(&err, "delay"), (frames, frames, 0), "{err}");
    assert_eq!(stage_row(&err, "sink null").0, frames, "{err}");
}

/// Resident memory (MiB) of a `segstream run` on a live test source, from its status
/// lines: at the first line with at least `early` frames out of the source (processed or
/// dropped later), and at the last line.
fn memory_over_run(pipeline: &Path, early: u64, frames: u64) -> (u64, f64, u64, f64) {
    let o = run_with_deadline(
        segstream(&[
            "run",
            pipeline.to_str().unwrap(),
            "--frames",
            &frames.to_string(),
            "--status-interval",
            "0.2",
        ]),
        Duration::from_secs(180),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(stage_row(&err, "decode").1, frames);
    let readings: Vec<(u64, f64)> = err
        .lines()
        .filter_map(|l| l.strip_prefix("status: "))
        .map(|l| {
            // `N frames` for live sources (`N/TOTAL frames` when the total is known), then
            // `D dropped (decode A, delay B, ..)` once frames are dropped. How many frames
            // the source has put out (what `--frames` counts) is N plus the drops after it,
            // whatever share of them a loaded machine drops.
            let n: u64 = l
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let after_source: u64 = l
                .split_once(" dropped (")
                .and_then(|(_, rest)| rest.split_once(')'))
                .map_or(0, |(stages, _)| {
                    stages
                        .split(", ")
                        .filter(|s| !s.starts_with("decode "))
                        .map(|s| s.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
                        .sum()
                });
            let n = n + after_source;
            let at = l.find("memory ").expect("memory in the status line");
            let mib = l[at + 7..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (n, mib)
        })
        .collect();
    let &(n0, m0) = readings
        .iter()
        .find(|(n, _)| *n >= early)
        .unwrap_or_else(|| panic!("no status line after {early} frames: {err}"));
    let &(n1, m1) = readings.last().unwrap();
    // The last reading comes late in the run.
    assert!(n1 >= frames * 6 / 10, "last status at frame {n1}: {err}");
    (n0, m0, n1, m1)
}

/// Ten times the frames, the same memory: nothing grows per frame.
#[test]
fn memory_stays_flat_over_a_long_live_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        "[source]\ntype = \"test\"\npattern = \"ball\"\nwidth = 320\nheight = 180\n\
         fps = 1000\nlive = true\n\n\
         [[transforms]]\ntype = \"delay\"\nms = 0\n\n\
         [[sinks]]\ntype = \"null\"\n",
    );
    let (n0, early, n1, late) = memory_over_run(&p, 1_000, 10_000);
    eprintln!("resident memory: {early:.1} MiB at {n0} frames, {late:.1} MiB at {n1}");
    assert!(
        (late - early).abs() / early < 0.05,
        "resident memory {early:.1} MiB at {n0} frames, {late:.1} MiB at {n1}"
    );
}

/// Share of near-black pixels in an RGB frame: the `ball` pattern is mostly black, `snow`
/// almost never.
fn dark_share(png: &Png) -> f64 {
    let dark = png
        .data
        .chunks(png.channels)
        .filter(|p| p.iter().all(|v| *v < 40))
        .count();
    dark as f64 / (png.width * png.height) as f64
}

#[test]
fn two_rtsp_sources_write_two_separate_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = RtspServer::start(port, &["/ball", "/snow"]);
    let out = dir.path().join("cam{stream}.mp4");
    let frames = dir.path().join("frames{stream}");
    let source = |mount: &str| {
        format!(
            "[[sources]]\ntype = \"rtsp\"\nurl = \"rtsp://127.0.0.1:{port}/{mount}\"\n\
             transport = \"tcp\"\nlatency_ms = 50\ntimeout_s = 10\n\n"
        )
    };
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "{}{}\
             [[sinks]]\ntype = \"mp4\"\npath = {out:?}\nqueue = {{ when_full = \"block\" }}\n\n\
             [[sinks]]\ntype = \"png\"\ndir = {frames:?}\nwhat = \"frame\"\n\
             queue = {{ when_full = \"block\" }}\n",
            source("ball"),
            source("snow")
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap(), "--frames", "30"]),
        Duration::from_secs(120),
    );
    drop(server);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    for (stream, ball) in [(0, true), (1, false)] {
        let mp4 = dir.path().join(format!("cam{stream}.mp4"));
        assert!(
            stdout.contains(&format!("output: {}", mp4.display())),
            "{stdout}"
        );
        assert_eq!(video_info(&mp4), (30, 160, 120), "stream {stream}");
        // Every frame of the stream is its own pattern: the streams never mix.
        for i in 0..30 {
            // The png sink prefixes the stream id of streams other than 0.
            let name = match stream {
                0 => format!("{i:06}.png"),
                s => format!("s{s}_{i:06}.png"),
            };
            let png = read_png(&dir.path().join(format!("frames{stream}")).join(name));
            let dark = dark_share(&png);
            assert!(
                if ball { dark > 0.8 } else { dark < 0.2 },
                "stream {stream} frame {i}: {:.0}% dark",
                100.0 * dark
            );
        }
    }
}

/// One HTTP GET on 127.0.0.1; returns the body.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    body.to_owned()
}

/// The value of the sample `name` (with its labels, exactly as exported).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

/// Threads of process `pid` (from /proc).
fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn idle_and_half_open_metrics_connections_cost_no_thread_and_cannot_starve_scrapes() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        "[source]\ntype = \"test\"\nwidth = 64\nheight = 48\nfps = 30\nlive = true\n\n\
         [[sinks]]\ntype = \"null\"\n",
    );
    let address = format!("127.0.0.1:{port}");
    let mut run = Running::start(&p, &["--metrics", &address, "--status-interval", "0.2"]);
    run.wait_for("status: ", Duration::from_secs(60));
    let _ = http_get(port, "/metrics");
    let before = threads(run.child.id());
    // 50 clients that connect and say nothing, 10 that stop in the middle of a request.
    let mut idle: Vec<std::net::TcpStream> = (0..50)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for _ in 0..10 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metr").unwrap();
        idle.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let text = http_get(port, "/metrics");
    assert!(text.contains("segstream_frames_in_total"), "{text}");
    let during = threads(run.child.id());
    assert!(
        during <= before + 1,
        "60 idle connections took threads: {before} before, {during} with them"
    );
    // The server cuts off a client that never finishes its request.
    let s = &mut idle[55];
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut rest = Vec::new();
    let n = s.read_to_end(&mut rest).map(|_| rest.len());
    assert!(
        n.is_ok(),
        "a half-sent request was left open for 30 s: {n:?}"
    );
    run.signal("-INT");
    let (status, err) = run.finish(Duration::from_secs(60));
    assert_eq!(status.code(), Some(130), "{err}");
}

#[test]
fn metrics_endpoint_serves_counters_and_histograms() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        "[source]\ntype = \"test\"\nwidth = 160\nheight = 120\nfps = 30\nlive = true\n\n\
         [[transforms]]\ntype = \"delay\"\nms = 60\nqueue = { capacity = 1 }\n\n\
         [[sinks]]\ntype = \"null\"\n",
    );
    let address = format!("127.0.0.1:{port}");
    let mut run = Running::start(&p, &["--metrics", &address, "--status-interval", "0.2"]);
    run.wait_for("status: ", Duration::from_secs(60));
    // Let frames be dropped behind the slow stage.
    std::thread::sleep(Duration::from_secs(2));
    let text = http_get(port, "/metrics");
    run.signal("-INT");
    let (status, err) = run.finish(Duration::from_secs(60));
    assert_eq!(status.code(), Some(130), "{err}");

    let decoded = sample(&text, "segstream_frames_out_total{stage=\"decode\"}");
    let taken = sample(&text, "segstream_frames_in_total{stage=\"delay\"}");
    let dropped = sample(
        &text,
        "segstream_dropped_total{stage=\"delay\",stream=\"0\"}",
    );
    assert!(decoded > 30.0, "{text}");
    assert!(dropped > 0.0, "{text}");
    // Frames in the queue or on their way are neither taken nor dropped yet.
    assert!(
        (decoded - taken - dropped).abs() <= 3.0,
        "decoded {decoded}, taken {taken}, dropped {dropped}"
    );
    assert_eq!(sample(&text, "segstream_outages_total"), 0.0);
    // Every delay frame took at least 60 ms: none in the buckets up to 50 ms.
    let count = sample(&text, "segstream_stage_busy_seconds_count{stage=\"delay\"}");
    assert!(count > 0.0);
    assert_eq!(
        sample(
            &text,
            "segstream_stage_busy_seconds_bucket{le=\"0.05\",stage=\"delay\"}"
        ),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            "segstream_stage_busy_seconds_bucket{le=\"0.5\",stage=\"delay\"}"
        ),
        count
    );
    assert!(sample(&text, "segstream_latency_seconds_count") > 0.0);
    assert!(text.contains("segstream_queue_depth{stage=\"delay\"}"));
}

/// A stream that changes resolution mid-way: the MP4 keeps its first size and every frame.
#[test]
fn resolution_change_mid_stream_keeps_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path().join("seq");
    std::fs::create_dir_all(&seq).unwrap();
    // Frames 0-4: a ball on black at 64x48 (about 60% black); frames 5-9: colour bars at
    // 96x64 (about 20% black once letterboxed).
    for i in 0..10 {
        let (pattern, w, h) = if i < 5 {
            ("ball", 64, 48)
        } else {
            ("smpte", 96, 64)
        };
        let pipeline = format!(
            "videotestsrc num-buffers=1 pattern={pattern} ! video/x-raw,width={w},height={h} \
             ! pngenc ! filesink location={}",
            seq.join(format!("{i:05}.png")).display()
        );
        let mut cmd = Command::new("gst-launch-1.0");
        cmd.arg("-q").args(pipeline.split_whitespace());
        assert!(run_with_deadline(cmd, Duration::from_secs(60))
            .status
            .success());
    }
    let out = dir.path().join("out.mp4");
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"file\"\npath = {:?}\n\n[[sinks]]\ntype = \"mp4\"\npath = {out:?}\n",
            seq.join("%05d.png")
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("Resolution changed") && err.contains("from=64x48 to=96x64"),
        "{err}"
    );
    assert_eq!(video_info(&out), (10, 64, 48));
    let decoded = dir.path().join("decoded");
    reference(
        "video.py",
        &["frames", out.to_str().unwrap(), decoded.to_str().unwrap()],
    );
    for i in 0..10 {
        let dark = dark_share(&read_png(&decoded.join(format!("{i:06}.png"))));
        assert!(
            if i < 5 { dark > 0.45 } else { dark < 0.3 },
            "frame {i}: {:.0}% dark",
            100.0 * dark
        );
    }
}

// With a preset other than the default, so the server's encoder takes the setting too. Snow
// at 20 Mbit/s fills the stalled client's socket (4 MB at most here) within about 2 s, so the
// server is truly stuck on it, alone, before the second client comes: gst-rtsp-server's
// sender then takes no more packets, and the second client got none until the sink learnt
// to wake it (8 s and more of stall failed every time before; a trickle of `ball` at 2 Mbit/s
// stalled in CI only when its socket buffer happened to be small).
#[test]
fn rtsp_sink_serves_clients_and_a_stalled_one_does_not_slow_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("rtsp://127.0.0.1:{port}/seg");
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"test\"\npattern = \"snow\"\nwidth = 640\nheight = 360\n\
             live = true\n\n\
             [[sinks]]\ntype = \"rtsp\"\naddress = \"127.0.0.1:{port}\"\nmount = \"/seg\"\n\
             preset = \"ultrafast\"\nbitrate_kbps = 20000\n"
        ),
    );
    let mut run = Running::start(&p, &["--log-level", "info"]);
    run.wait_for("Serving.", Duration::from_secs(30));
    // A client that sets up RTP over TCP, plays, and never reads again.
    let mut staller = Command::new(python())
        .arg(root().join("tests/reference/rtsp_client.py"))
        .args(["stall", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(staller.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first.trim(), "stalled");
    std::thread::sleep(Duration::from_secs(10));
    // FFmpeg's RTSP client still gets a live stream: 150 frames at 30 fps take 5 s; a
    // stalled server would not deliver them at all.
    let got = reference("rtsp_client.py", &["count", &url, "150"]);
    let _ = staller.kill();
    let _ = staller.wait();
    assert!(got.contains("\"frames\": 150"), "{got}");
    let seconds: f64 = got
        .split("\"seconds\": ")
        .nth(1)
        .and_then(|s| s.trim().trim_end_matches('}').parse().ok())
        .unwrap_or_else(|| panic!("{got}"));
    assert!(seconds < 20.0, "150 frames took {seconds:.1} s: {got}");
    assert!(run.is_running(), "{}", run.stderr());
    run.signal("-INT");
    let (status, err) = run.finish(Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(sink_frames(&err, "sink rtsp") > 0, "{err}");
}

#[test]
fn rtsp_stream_without_a_frame_rate_is_recorded_at_its_real_timing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = RtspServer::start(port, &["/vfr"]);
    let out = dir.path().join("out.mp4");
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"rtsp\"\nurl = \"rtsp://127.0.0.1:{port}/vfr\"\n\n\
             [[sinks]]\ntype = \"mp4\"\npath = {out:?}\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap(), "--frames", "45"]),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(video_info(&out), (45, 160, 120));
    // 45 frames at 15 fps span three seconds.
    let t: serde_json::Value =
        serde_json::from_str(&reference("video.py", &["tracks", out.to_str().unwrap()])).unwrap();
    let span = t["video_s"].as_f64().unwrap();
    assert!((span - 3.0).abs() < 0.5, "{t}");
}
