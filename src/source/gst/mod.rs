//! Decoding with GStreamer, shared by the `file`, `uri`, `rtsp`, `camera` and `test`
//! sources: frames from anything GStreamer can open, as RGB with their timestamps.
//!
//! `let source = Decode::new(Input::File { path: "clip.mp4".into(), start_index: 0 }, None);`
//!
//! Files, still images, numbered image sequences, URIs (HTTP, RTSP), V4L2 cameras and
//! `videotestsrc`, all ending in an appsink that takes the decoder's I420 or NV12 as it is
//! (converted to RGB here, see `yuv.rs`) and anything else as RGB from `videoconvert`.

use std::net::ToSocketAddrs;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::frame::Frame;
use crate::runtime::{BoxError, Output, Source};

mod build;
mod input;
mod pool;
mod yuv;

pub use build::check_test_pattern;
pub use input::{next_sequence_index, sequence_file, Input, RtspTransport};
use pool::{to_image, ImagePool};
pub use yuv::rgb_to_nv12;

/// How long one wait for a frame lasts before the loop looks at the bus and stop flag again.
const PULL_TIMEOUT: Duration = Duration::from_millis(100);

/// A file source that yields neither a frame nor end of stream for this long is stalled.
const FILE_STALL: Duration = Duration::from_secs(20);

/// A local file whose demuxer has linked no stream this long after starting is unreadable.
const NO_STREAM_LIMIT: Duration = Duration::from_secs(5);

/// How long a stopped live stream waits for the audio of its last frames.
const AUDIO_GRACE: Duration = Duration::from_millis(500);

/// How long stopping a GStreamer pipeline may take before segstream moves on without it.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Sets a pipeline to Null on a helper thread, giving up after a few seconds: an element
/// wedged in its streaming thread must not hang segstream.
pub(crate) fn shutdown(pipeline: &gst::Pipeline) {
    let p = pipeline.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = p.set_state(gst::State::Null);
        let _ = tx.send(());
    });
    if rx.recv_timeout(SHUTDOWN_TIMEOUT).is_err() {
        tracing::warn!(
            timeout = ?SHUTDOWN_TIMEOUT,
            "A GStreamer pipeline did not stop in time; leaving it behind."
        );
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot read {input}: {message}")]
    Stream { input: String, message: String },
    #[error("{input}: no video stream found (expected a video, an image or an image sequence)")]
    NoVideo { input: String },
    #[error("{input}: ended without producing a frame (expected a video, an image or an image sequence)")]
    NoFrames { input: String },
    #[error("{input}: {message}")]
    Config { input: String, message: String },
    #[error("image sequence {input}: {missing} is missing, but {next} exists (the sequence has a gap; fill it, or start after it with start_index = {next_index}); the frames before were processed")]
    Gap {
        input: String,
        missing: String,
        next: String,
        next_index: u32,
    },
    #[error("{input} ended at {ended:.2} s of its {duration:.2} s (truncated or corrupt; the frames before were processed)")]
    Truncated {
        input: String,
        ended: f64,
        duration: f64,
    },
    #[error("{input}: no frame within {timeout_s} s of starting (expected an RTSP server answering there; last error: {last})")]
    NoAnswer {
        input: String,
        timeout_s: f64,
        last: String,
    },
    #[error("{input}: connection refused by {address} (expected an RTSP server listening there)")]
    Refused { input: String, address: String },
    #[error("{input}: stream lost for more than {max_outage_s} s after {frames} frames (last error: {last})")]
    Lost {
        input: String,
        max_outage_s: f64,
        frames: u64,
        last: String,
    },
    #[error("cannot start GStreamer: {0}")]
    Init(#[from] gst::glib::Error),
    #[error("GStreamer element {0} is missing (install the GStreamer plugin packages; see scripts/setup)")]
    MissingElement(String),
}

/// The decode stage.
pub struct Decode {
    config: Input,
    /// Stop after this many frames.
    max_frames: Option<u64>,
    stream: u32,
    /// Frames sent so far, over every connection.
    seq: u64,
    /// Since when the stream has been lost, while reconnecting.
    outage_since: Option<Instant>,
    /// Timestamps of a reconnected stream continue from here.
    pts_base: Duration,
    /// End of the last frame sent, on the continued timeline.
    pts_end: Duration,
    /// Connections made so far (the first is 0).
    attempt: u32,
    /// End of the last audio packet passed on, on the frames' timeline.
    audio_end: Duration,
    options: DecodeOptions,
}

/// How a decoder works and hands over its frames: the settings file and RTSP sources share.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DecodeOptions {
    /// Threads each software video decoder may use (0: the decoder decides, by the cores).
    pub threads: u32,
    /// Each frame also carries the decoder's 4:2:0 planes as NV12 (`Frame::yuv`), for an
    /// infer stage with `pre_post = "graph"` to take instead of RGB.
    pub nv12: bool,
}

/// How one connection to the source ended.
enum Ended {
    /// End of stream.
    Eos,
    /// Stop request or frame limit.
    Stopped,
}

impl Decode {
    pub fn new(config: Input, max_frames: Option<u64>) -> Self {
        Decode {
            config,
            max_frames,
            stream: 0,
            seq: 0,
            outage_since: None,
            pts_base: Duration::ZERO,
            pts_end: Duration::ZERO,
            attempt: 0,
            audio_end: Duration::ZERO,
            options: DecodeOptions::default(),
        }
    }

    /// Decodes with `options` (threads, NV12 planes).
    pub fn options(mut self, options: DecodeOptions) -> Self {
        self.options = options;
        self
    }

    /// Frames sent so far.
    pub fn frames(&self) -> u64 {
        self.seq
    }

    fn input(&self) -> String {
        self.config.describe()
    }

    fn error(&self, message: impl Into<String>) -> DecodeError {
        DecodeError::Config {
            input: self.input(),
            message: message.into(),
        }
    }
}

fn make(factory: &str) -> Result<gst::Element, DecodeError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| DecodeError::MissingElement(factory.to_owned()))
}

/// One line out of a GStreamer error: its message, the element, and the last line of the
/// debug text (where the specific cause usually is).
pub(crate) fn describe_gst_error(err: &gst::message::Error) -> String {
    let mut text = err.error().to_string().trim_end_matches('.').to_owned();
    if let Some(debug) = err.debug() {
        if let Some(last) = debug.lines().map(str::trim).rfind(|l| !l.is_empty()) {
            if !last.contains("GstPipeline") && !text.contains(last) {
                text.push_str(&format!(" ({})", last.trim_end_matches('.')));
            }
        }
    }
    text
}

impl Decode {
    /// A video file whose frames stop well before its declared duration is truncated.
    fn check_complete(
        &self,
        pipeline: &gst::Pipeline,
        last_end: Option<gst::ClockTime>,
    ) -> Result<(), DecodeError> {
        if let Input::File { path, start_index } = &self.config {
            if path.to_string_lossy().contains('%') {
                return self.check_sequence(path, start_index + self.seq as u32);
            }
        }
        let is_video_file = match &self.config {
            Input::File { .. } => true,
            Input::Uri { uri } => uri.starts_with("file://"),
            _ => false,
        };
        let (Some(end), Some(duration)) = (last_end, pipeline.query_duration::<gst::ClockTime>())
        else {
            return Ok(());
        };
        // Containers round durations; allow a quarter second of slack.
        if is_video_file && end + gst::ClockTime::from_mseconds(250) < duration {
            return Err(DecodeError::Truncated {
                input: self.input(),
                ended: end.seconds_f64(),
                duration: duration.seconds_f64(),
            });
        }
        Ok(())
    }
}

impl Decode {
    /// An image sequence ends at its first missing file: if a later one exists, the
    /// sequence has a gap and the run must not end as if it were complete.
    fn check_sequence(&self, pattern: &std::path::Path, missing: u32) -> Result<(), DecodeError> {
        let Some(next_index) = next_sequence_index(pattern, missing) else {
            return Ok(());
        };
        let name = |i| {
            sequence_file(pattern, i)
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        Err(DecodeError::Gap {
            input: self.input(),
            missing: name(missing),
            next: name(next_index),
            next_index,
        })
    }
}

/// How long probing an RTSP server's port may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The address of an `rtsp://` URL when it actively refuses a TCP connection (nothing
/// listens on that port); `None` when it accepts, cannot be resolved, or stays silent.
fn refused(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?.trim_matches(['[', ']']).to_owned();
    let default = if parsed.scheme() == "rtsps" { 322 } else { 554 };
    let port = parsed.port().unwrap_or(default);
    let addresses: Vec<_> = (host.as_str(), port).to_socket_addrs().ok()?.collect();
    let all_refused = !addresses.is_empty()
        && addresses.iter().all(|a| {
            matches!(
                std::net::TcpStream::connect_timeout(a, PROBE_TIMEOUT),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
            )
        });
    all_refused.then(|| format!("{host}:{port}"))
}

/// Frames a live stream skipped between the end of one frame and the start of the next
/// (`gap`), at `num/den` frames per second: GStreamer's appsink drops the oldest frame when
/// segstream falls behind, and networks lose some. Half a frame of jitter is tolerated.
fn missed_frames(gap: gst::ClockTime, num: i32, den: i32) -> u64 {
    if num <= 0 || den <= 0 {
        return 0;
    }
    let frames = gap.nseconds() as f64 * 1e-9 * num as f64 / den as f64;
    (frames + 0.5).floor().max(0.0) as u64
}

impl Source for Decode {
    fn run(&mut self, out: &mut Output) -> Result<(), BoxError> {
        let Input::Rtsp {
            timeout_s,
            reconnect,
            backoff_max_s,
            max_outage_s,
            ..
        } = self.config
        else {
            return self.connect(out, None).map(|_| ());
        };
        self.run_reconnecting(out, timeout_s, reconnect, backoff_max_s, max_outage_s)
    }
}

impl Decode {
    /// Keeps a live stream going: a lost connection (error, end of stream, or no frame for
    /// `timeout_s`) is one outage, retried with a doubling wait until frames flow again.
    fn run_reconnecting(
        &mut self,
        out: &mut Output,
        timeout_s: f64,
        reconnect: bool,
        backoff_max_s: f64,
        max_outage_s: Option<f64>,
    ) -> Result<(), BoxError> {
        let input = self.input();
        let timeout = Duration::from_secs_f64(timeout_s);
        let backoff_max = Duration::from_secs_f64(backoff_max_s);
        let started = Instant::now();
        let mut backoff = Duration::from_millis(500);
        loop {
            let before = self.seq;
            let result = self.connect(out, Some(timeout));
            let last = match result {
                Ok(Ended::Stopped) => return Ok(()),
                Ok(Ended::Eos) => "the server ended the stream".to_owned(),
                Err(e) if e.is::<crate::runtime::Aborted>() => return Err(e),
                Err(e) => e.to_string(),
            };
            if out.stop_requested() {
                return Ok(());
            }
            if self.seq > before {
                backoff = Duration::from_millis(500);
            }
            if self.seq == 0 {
                // Nothing listens there: say so now; the timeout is for silence.
                if let Some(address) = refused(&input) {
                    return Err(Box::new(DecodeError::Refused { input, address }));
                }
                // Never answered: retry until the timeout, then fail clearly.
                if started.elapsed() >= timeout {
                    return Err(Box::new(DecodeError::NoAnswer {
                        input,
                        timeout_s,
                        last,
                    }));
                }
            } else {
                if !reconnect {
                    return Err(Box::new(DecodeError::Stream {
                        input,
                        message: last,
                    }));
                }
                let since = *self.outage_since.get_or_insert_with(|| {
                    out.count_outage();
                    tracing::warn!(
                        stage = "decode",
                        stream = out.stream(),
                        input = %input,
                        frames = self.seq,
                        error = %last,
                        "Stream lost; reconnecting."
                    );
                    Instant::now()
                });
                if let Some(max) = max_outage_s {
                    if since.elapsed().as_secs_f64() > max {
                        return Err(Box::new(DecodeError::Lost {
                            input,
                            max_outage_s: max,
                            frames: self.seq,
                            last,
                        }));
                    }
                }
                tracing::debug!(stage = "decode", error = %last, wait = ?backoff, "Reconnecting.");
            }
            // Wait, looking up often enough to honour a stop request.
            let wait_until = Instant::now() + backoff;
            while Instant::now() < wait_until {
                if out.stop_requested() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            backoff = (backoff * 2).min(backoff_max);
        }
    }

    /// One connection to the source, from building its pipeline to end of stream, stop,
    /// or error. With `stall`, going that long without a frame is an error (live streams).
    fn connect(&mut self, out: &mut Output, stall: Option<Duration>) -> Result<Ended, BoxError> {
        let input = self.input();
        let attempt = self.attempt;
        self.attempt += 1;
        self.pts_base = self.pts_end;
        let build::Built {
            pipeline,
            appsink,
            linked,
            audio,
        } = self.build()?;
        let stream = out.stream();
        if audio.is_some() {
            out.audio().expect(stream);
        }
        let mut audio_known = false;
        let bus = pipeline.bus().expect("pipeline has a bus");
        // Stops the pipeline however this function returns.
        struct Guard(gst::Pipeline);
        impl Drop for Guard {
            fn drop(&mut self) {
                shutdown(&self.0);
            }
        }
        let _guard = Guard(pipeline.clone());

        let stream_error = |msg: &gst::message::Error| -> BoxError {
            if !linked.load(Ordering::Relaxed) && msg.error().to_string().contains("not-linked")
                || !linked.load(Ordering::Relaxed)
                    && msg
                        .debug()
                        .map(|d| d.contains("not-linked"))
                        .unwrap_or(false)
            {
                return Box::new(DecodeError::NoVideo {
                    input: input.clone(),
                });
            }
            tracing::debug!(stage = "decode", debug = ?msg.debug(), "GStreamer error.");
            Box::new(DecodeError::Stream {
                input: input.clone(),
                message: describe_gst_error(msg),
            })
        };

        if pipeline.set_state(gst::State::Playing).is_err() {
            // The reason is on the bus.
            if let Some(msg) =
                bus.timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error])
            {
                if let gst::MessageView::Error(e) = msg.view() {
                    return Err(stream_error(e));
                }
            }
            return Err(Box::new(DecodeError::Stream {
                input: input.clone(),
                message: "the pipeline refused to start".into(),
            }));
        }

        let first_seq = self.seq;
        let mut pool = ImagePool::default();
        // The first timestamp of this connection, to continue the timeline after a reconnect.
        let mut first_pts: Option<Duration> = None;
        // Time spent waiting for the next frame (not time spent blocked downstream).
        let mut waiting = Duration::ZERO;
        let live = self.config.is_live();
        // End time of the last frame, to notice files that stop before their declared end.
        let mut last_end: Option<gst::ClockTime> = None;
        let ended = loop {
            if out.stop_requested() || self.max_frames.is_some_and(|m| self.seq >= m) {
                break Ended::Stopped;
            }
            while let Some(msg) =
                bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Warning])
            {
                match msg.view() {
                    gst::MessageView::Error(e) => return Err(stream_error(e)),
                    gst::MessageView::Warning(w) => {
                        tracing::warn!(stage = "decode", input = %input, "{}", w.error())
                    }
                    _ => {}
                }
            }
            if let Some(a) = &audio {
                audio_known |= self.pass_audio(out, a, attempt, first_pts, audio_known);
            }
            match appsink.try_pull_sample(gst::ClockTime::from_mseconds(
                PULL_TIMEOUT.as_millis() as u64
            )) {
                Some(sample) => {
                    waiting = Duration::ZERO;
                    let decoded =
                        to_image(&sample, pool.take(), self.options.nv12).map_err(|message| {
                            Box::new(DecodeError::Stream {
                                input: input.clone(),
                                message,
                            }) as BoxError
                        })?;
                    let rate = decoded.rate;
                    if let Some(since) = self.outage_since.take() {
                        out.count_reconnect();
                        tracing::warn!(
                            stage = "decode",
                            stream = out.stream(),
                            input = %input,
                            outage_s = since.elapsed().as_secs_f64(),
                            "Stream back."
                        );
                    }
                    if self.seq == 0 && !live {
                        if let (Some(d), Some((n, den))) =
                            (pipeline.query_duration::<gst::ClockTime>(), rate)
                        {
                            let frames = d.seconds_f64() * n as f64 / den.max(1) as f64;
                            out.set_expected_frames(frames.round() as u64);
                        }
                    }
                    let mut frame = Frame::new(self.stream, self.seq, decoded.image);
                    frame.yuv = decoded.nv12.map(Arc::new);
                    let buffer = sample.buffer();
                    let pts = buffer
                        .and_then(|b| b.pts())
                        .map(|t| Duration::from_nanos(t.nseconds()));
                    let duration = buffer
                        .and_then(|b| b.duration())
                        .map(|t| Duration::from_nanos(t.nseconds()))
                        .unwrap_or(Duration::ZERO);
                    frame.pts = pts.map(|p| {
                        if attempt == 0 {
                            p
                        } else {
                            // A new connection starts its clock again; carry on after the
                            // last frame of the previous one.
                            self.pts_base + p.saturating_sub(*first_pts.get_or_insert(p))
                        }
                    });
                    if let Some(p) = frame.pts {
                        self.pts_end = p + duration;
                    }
                    frame.rate = rate;
                    if let Some(b) = buffer {
                        if let Some(pts) = b.pts() {
                            if let (true, Some(end), Some((n, d))) = (live, last_end, rate) {
                                let lost = missed_frames(pts.saturating_sub(end), n, d);
                                if lost > 0 {
                                    out.count_source_drops(lost);
                                }
                            }
                            last_end = Some(pts + b.duration().unwrap_or(gst::ClockTime::ZERO));
                        }
                    }
                    pool.sent(frame.image.clone());
                    out.send(frame)?;
                    self.seq += 1;
                }
                None if appsink.is_eos() => {
                    // An error may have been posted right before end of stream.
                    if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
                        if let gst::MessageView::Error(e) = msg.view() {
                            return Err(stream_error(e));
                        }
                    }
                    self.check_complete(&pipeline, last_end)?;
                    break Ended::Eos;
                }
                None => {
                    waiting += PULL_TIMEOUT;
                    // decodebin drops the error of a demuxer that fails while it is being
                    // plugged in (seen with a cut MP4, about 1 run in 20): a local file
                    // that has found no stream within a few seconds never will.
                    if matches!(self.config, Input::File { .. })
                        && !linked.load(Ordering::Relaxed)
                        && waiting >= NO_STREAM_LIMIT
                    {
                        return Err(Box::new(DecodeError::Stream {
                            input: input.clone(),
                            message: format!(
                                "no stream found within {} s (expected a video; the file may \
                                 be corrupt)",
                                NO_STREAM_LIMIT.as_secs()
                            ),
                        }));
                    }
                    if let Some(stall) = stall.filter(|s| waiting >= *s) {
                        return Err(Box::new(DecodeError::Stream {
                            input: input.clone(),
                            message: format!("no frame for {:.1} s", stall.as_secs_f64()),
                        }));
                    }
                    if !live && waiting >= FILE_STALL {
                        return Err(Box::new(DecodeError::Stream {
                            input: input.clone(),
                            message: format!(
                                "no frame and no end of stream for {} s (the decoder stalled; \
                                 the file may be corrupt)",
                                FILE_STALL.as_secs()
                            ),
                        }));
                    }
                }
            }
        };
        if let (Some(a), Ended::Stopped, true) = (&audio, &ended, audio_known) {
            // The audio of the last frames may still be on its way: wait a little for it.
            let deadline = Instant::now() + AUDIO_GRACE;
            while self.audio_end < self.pts_end && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
                self.pass_audio(out, a, attempt, first_pts, true);
            }
        }
        if self.seq == 0 && !out.stop_requested() && stall.is_none() {
            return Err(Box::new(if linked.load(Ordering::Relaxed) {
                DecodeError::NoFrames { input }
            } else {
                DecodeError::NoVideo { input }
            }));
        }
        tracing::debug!(
            stage = "decode",
            frames = self.seq - first_seq,
            "Source finished."
        );
        Ok(ended)
    }
}

impl Decode {
    /// Hands the audio packets waiting in `audio` to the run, on the frames' timeline
    /// (`first_pts`: this connection's first frame, to continue after a reconnect); says
    /// whether the stream's audio is known (announced, or known to be absent).
    fn pass_audio(
        &mut self,
        out: &Output,
        audio: &build::AudioBranch,
        attempt: u32,
        first_pts: Option<Duration>,
        known: bool,
    ) -> bool {
        let stream = out.stream();
        let mut known = known;
        while let Some(sample) = audio.appsink.try_pull_sample(gst::ClockTime::ZERO) {
            if !known {
                let caps = sample.caps().map(|c| c.to_string());
                tracing::debug!(stage = "decode", caps = ?caps, "Audio track.");
                out.audio().announce(stream, caps);
                known = true;
            }
            let Some(buffer) = sample.buffer() else {
                continue;
            };
            let Some(pts) = buffer.pts().map(|t| Duration::from_nanos(t.nseconds())) else {
                continue;
            };
            let pts = if attempt == 0 {
                pts
            } else {
                // Audio before this connection's first frame has nothing to line up with.
                match first_pts {
                    Some(first) if pts >= first => self.pts_base + (pts - first),
                    _ => continue,
                }
            };
            let Ok(map) = buffer.map_readable() else {
                continue;
            };
            let duration = buffer
                .duration()
                .map(|d| Duration::from_nanos(d.nseconds()));
            self.audio_end = pts + duration.unwrap_or(Duration::ZERO);
            out.audio().publish(
                stream,
                crate::runtime::AudioPacket {
                    pts,
                    duration,
                    data: Arc::from(map.as_slice()),
                },
            );
        }
        // All pads shown and none of them audio: there is none.
        if !known && audio.settled.load(Ordering::Relaxed) && !audio.linked() {
            out.audio().announce(stream, None);
            known = true;
        }
        known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_in_a_live_stream_count_whole_missed_frames() {
        let ms = gst::ClockTime::from_mseconds;
        // 30 fps: a frame lasts 33.3 ms; end of one frame to start of the next.
        assert_eq!(missed_frames(ms(0), 30, 1), 0);
        assert_eq!(missed_frames(ms(10), 30, 1), 0, "jitter is not a drop");
        assert_eq!(missed_frames(ms(33), 30, 1), 1);
        assert_eq!(missed_frames(ms(100), 30, 1), 3);
        assert_eq!(missed_frames(ms(100), 30000, 1001), 3);
        assert_eq!(missed_frames(ms(1000), 0, 1), 0, "unknown rate");
    }
}
