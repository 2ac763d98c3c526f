//! Video file sinks and display: frames pushed into a GStreamer pipeline through `appsrc`.
//!
//! A video file sink (`mp4`, `mkv`) encodes H.264 (x264) into its container, whose muxer is
//! all that differs between them: a new container is a `Container` with its `Muxer` and a
//! `VideoFileConfig<C>` alias. The file is finalized on end of stream, on Ctrl-C, and after
//! a fatal error upstream, so every frame processed so far is kept.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use serde::Deserialize;

use super::audio::{self, AudioCopy};
use super::segments;
use super::Preset;
use crate::component::{BuildContext, CheckContext, Component, SinkComponent};
use crate::config::Problems;
use crate::frame::{Frame, RgbImage};
use crate::runtime::{BoxError, Output, QueueConfig, Stage};
use crate::source::gst::describe_gst_error;

/// A GStreamer muxer and the properties it is set up with (by name, as `gst-launch-1.0`
/// takes them).
#[derive(Clone, Copy, Debug)]
pub struct Muxer {
    pub factory: &'static str,
    pub properties: &'static [(&'static str, &'static str)],
}

/// A container a video file sink writes.
pub trait Container: Clone + std::fmt::Debug + Send + Sync + 'static {
    const MUXER: Muxer;
}

/// The settings of a video file sink in container `C`:
/// `[[sinks]] type = "mp4", path = "../out/demo.mp4", bitrate_kbps = 4000, preset = "veryfast"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoFileConfig<C> {
    pub path: PathBuf,
    /// Target bitrate in kbit/s.
    #[serde(default = "default_bitrate")]
    pub bitrate_kbps: u32,
    /// x264's speed preset: `ultrafast` leaves the most CPU to the model, slower ones give
    /// better pictures at the same bitrate.
    #[serde(default)]
    pub preset: Preset,
    /// Rotate into files of about this many seconds (the path names them with `{index}`
    /// or `{time}`); one file when absent.
    #[serde(default)]
    pub segment_s: Option<f64>,
    /// Copy the input's audio track (a file's, or a live stream's), when there is one the
    /// container takes.
    #[serde(default = "yes")]
    pub audio: bool,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(skip)]
    container: PhantomData<C>,
}

fn default_bitrate() -> u32 {
    4000
}

fn yes() -> bool {
    true
}

impl<C: Container> Component for VideoFileConfig<C> {
    fn check(&mut self, cx: &CheckContext<'_>, p: &mut Problems) {
        self.path = cx.resolve(&self.path);
        p.range("bitrate_kbps", self.bitrate_kbps, 64, 200_000);
        segments::check(&self.path, self.segment_s, p);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl<C: Container> SinkComponent for VideoFileConfig<C> {
    fn queue(&self) -> QueueConfig {
        self.queue
    }

    fn output(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn set_output(&mut self, path: PathBuf) -> bool {
        self.path = path;
        true
    }

    fn whole_output(&self) -> bool {
        self.segment_s.is_none()
    }

    fn build(
        &self,
        cx: &BuildContext<'_>,
        output: Option<&Path>,
    ) -> Result<Box<dyn Stage>, BoxError> {
        Ok(Box::new(VideoSink::new(VideoSinkKind::File {
            audio: cx.input_file.clone().filter(|_| self.audio),
            live_audio: self.audio && cx.live && cx.input_file.is_none(),
            path: output.unwrap_or(&self.path).to_owned(),
            bitrate_kbps: self.bitrate_kbps,
            preset: self.preset,
            muxer: C::MUXER,
            segment: self.segment_s.map(Duration::from_secs_f64),
        })))
    }
}

/// The smallest width and height x264 encodes.
const MIN_ENCODED: u32 = 16;

/// How long a recording of a live stream waits on its first frame for the source to know
/// the stream's audio.
const AUDIO_WAIT: Duration = Duration::from_secs(2);

/// How long finalizing may take before it is reported as stuck.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("cannot write {target}: {message}")]
    Gst { target: String, message: String },
    #[error("{target}: frame {seq} is {got}, but the stream started at {expected} (the sink needs a fixed size)")]
    SizeChanged {
        target: String,
        seq: u64,
        got: String,
        expected: String,
    },
}

#[derive(Clone, Debug)]
pub enum VideoSinkKind {
    /// H.264 in a file, through `muxer`.
    File {
        path: PathBuf,
        bitrate_kbps: u32,
        preset: Preset,
        muxer: Muxer,
        /// Rotate into segments of this length (`path` is then a template).
        segment: Option<Duration>,
        /// The input file whose audio track is copied.
        audio: Option<PathBuf>,
        /// Copy the live stream's audio, which its source passes on.
        live_audio: bool,
    },
    Display,
}

struct Running {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    width: u32,
    height: u32,
    /// Size of the frames pushed now (changes when the stream changes resolution).
    input_size: (u32, u32),
    frame_duration: Duration,
    first_pts: Option<Duration>,
    last_pts: Option<Duration>,
    audio: Option<AudioCopy>,
    /// Signalled when the encoder has drained the input queue to half.
    room: Arc<Room>,
}

/// Room in `appsrc`'s queue: `need-data` sets the flag and wakes the pushing thread.
#[derive(Default)]
struct Room {
    ready: Mutex<bool>,
    signal: Condvar,
}

/// How long a push waits for room before looking at the bus again.
const ROOM_WAIT: Duration = Duration::from_millis(50);

/// Lends a frame's pixels to GStreamer without copying them.
pub(super) struct Pixels(pub(super) Arc<RgbImage>);

impl AsRef<[u8]> for Pixels {
    fn as_ref(&self) -> &[u8] {
        &self.0.data
    }
}

pub struct VideoSink {
    kind: VideoSinkKind,
    running: Option<Running>,
}

impl VideoSink {
    pub fn new(kind: VideoSinkKind) -> Self {
        VideoSink {
            kind,
            running: None,
        }
    }

    fn target(&self) -> String {
        match &self.kind {
            VideoSinkKind::File { path, .. } => path.display().to_string(),
            VideoSinkKind::Display => "display".into(),
        }
    }

    fn err(&self, message: impl Into<String>) -> VideoError {
        VideoError::Gst {
            target: self.target(),
            message: message.into(),
        }
    }

    fn element(&self, factory: &str) -> Result<gst::Element, VideoError> {
        gst::ElementFactory::make(factory).build().map_err(|_| {
            self.err(format!(
                "GStreamer element {factory} is missing (see scripts/setup)"
            ))
        })
    }

    fn open(&self, frame: &Frame, out: &Output) -> Result<Running, VideoError> {
        gst::init().map_err(|e| self.err(e.to_string()))?;
        let (width, height) = (frame.image.width, frame.image.height);
        let (num, den) = frame.rate.unwrap_or((30, 1));
        let caps = gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::Rgb)
            .width(width as i32)
            .height(height as i32)
            .framerate(gst::Fraction::new(num, den))
            .build();
        let appsrc = gst_app::AppSrc::builder()
            .caps(&caps)
            .format(gst::Format::Time)
            .max_bytes(4 * width as u64 * height as u64 * 3)
            // `need-data` once the queue is half drained: a push waiting for room wakes then.
            .min_percent(50)
            .build();
        let room = Arc::new(Room::default());
        let signal = room.clone();
        appsrc.set_callbacks(
            gst_app::AppSrcCallbacks::builder()
                .need_data(move |_, _| {
                    *signal.ready.lock().unwrap_or_else(|e| e.into_inner()) = true;
                    signal.signal.notify_all();
                })
                .build(),
        );
        let convert = self.element("videoconvert")?;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        convert.set_property("n-threads", threads as u32);
        // A stream that changes resolution mid-way is scaled back to its first size: the
        // encoder (and a display window) keep one size for the whole run.
        let scale = self.element("videoscale")?;
        let fixed = self.element("capsfilter")?;
        fixed.set_property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("width", width as i32)
                .field("height", height as i32)
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                .build(),
        );
        let mut chain: Vec<gst::Element> = vec![appsrc.clone().upcast(), convert, scale, fixed];
        // The input whose audio to copy, the muxer, and the element its pad is asked of.
        let mut audio_from: Option<(Option<PathBuf>, gst::Element, gst::Element)> = None;
        match &self.kind {
            VideoSinkKind::File {
                path,
                bitrate_kbps,
                preset,
                muxer,
                segment,
                audio,
                live_audio,
            } => {
                if width < MIN_ENCODED || height < MIN_ENCODED {
                    return Err(self.err(format!(
                        "frames of {width}x{height} are too small to encode (H.264 takes at \
                         least {MIN_ENCODED}x{MIN_ENCODED}); use a png or jsonl sink for them"
                    )));
                }
                // H.264 in 4:2:0 needs even sizes: an odd width or height gets one black
                // column or row on the right or at the bottom.
                if width % 2 == 1 || height % 2 == 1 {
                    let pad = self.element("videobox")?;
                    pad.set_property("right", -((width % 2) as i32));
                    pad.set_property("bottom", -((height % 2) as i32));
                    pad.set_property_from_str("fill", "black");
                    tracing::warn!(
                        sink = %self.target(),
                        "Frames are {width}x{height}; encoding them as {}x{} (H.264 needs even \
                         sizes), with a black column or row added.",
                        width + width % 2,
                        height + height % 2
                    );
                    chain.push(pad);
                }
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| self.err(e.to_string()))?;
                }
                let enc = self.element("x264enc")?;
                enc.set_property("bitrate", *bitrate_kbps);
                enc.set_property_from_str("speed-preset", preset.name());
                // A short look-ahead keeps few frames inside the encoder, so a crash loses
                // little more than the container's last fragment or cluster.
                enc.set_property("rc-lookahead", 5i32);
                enc.set_property("sliced-threads", true);
                // No B-frames: decode order is presentation order, so the container needs no
                // composition offsets and no edit list, which would hide the last frames of
                // inputs with variable frame rate or timestamp gaps.
                enc.set_property("bframes", 0u32);
                // A key frame every two seconds keeps the file seekable; a segmented
                // recording has one every half second, because the segmenter holds a whole
                // group of pictures back until it knows where the next segment starts.
                let gop_half_seconds = if segment.is_some() { 1 } else { 4 };
                enc.set_property(
                    "key-int-max",
                    ((gop_half_seconds * num) / (2 * den.max(1))).max(1) as u32,
                );
                let filter = self.element("capsfilter")?;
                // Main profile with 4:2:0 chroma plays everywhere.
                filter.set_property(
                    "caps",
                    gst::Caps::builder("video/x-h264")
                        .field("profile", "main")
                        .build(),
                );
                let mux = self.element(muxer.factory)?;
                for (name, value) in muxer.properties {
                    mux.set_property_from_str(name, value);
                }
                chain.extend([enc, filter, self.element("h264parse")?]);
                let target = match segment {
                    None => {
                        let sink = self.element("filesink")?;
                        sink.set_property("location", path.to_string_lossy().as_ref());
                        chain.extend([mux.clone(), sink]);
                        mux.clone()
                    }
                    Some(length) => {
                        let split = self.segmenter(path, mux.clone(), *length)?;
                        chain.push(split.clone());
                        split
                    }
                };
                if audio.is_some() || *live_audio {
                    audio_from = Some((audio.clone(), mux, target));
                }
            }
            VideoSinkKind::Display => {
                let sink = self.element("autovideosink")?;
                sink.set_property("sync", false);
                chain.push(sink);
            }
        }
        let pipeline = gst::Pipeline::new();
        pipeline
            .add_many(&chain)
            .map_err(|e| self.err(e.to_string()))?;
        gst::Element::link_many(&chain).map_err(|e| self.err(e.to_string()))?;
        let first_pts = frame.pts.unwrap_or(Duration::ZERO);
        let audio = audio_from.and_then(|(input, mux, target)| {
            let added = match input {
                Some(input) => audio::add(&pipeline, &mux, &target, &input, first_pts),
                None => match out.audio().subscribe(frame.stream, AUDIO_WAIT) {
                    Some(track) => {
                        let input = format!("stream {}", frame.stream);
                        audio::add_live(&pipeline, &mux, &target, track, first_pts, &input)
                    }
                    None => Ok(None),
                },
            };
            added.unwrap_or_else(|e| {
                tracing::warn!(sink = %self.target(), "Cannot copy the audio ({e}); video only.");
                None
            })
        });
        if pipeline.set_state(gst::State::Playing).is_err() {
            let bus = pipeline.bus().expect("pipeline has a bus");
            let message = bus
                .timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error])
                .and_then(|m| match m.view() {
                    gst::MessageView::Error(e) => Some(describe_gst_error(e)),
                    _ => None,
                })
                .unwrap_or_else(|| "the output pipeline refused to start".into());
            crate::source::gst::shutdown(&pipeline);
            return Err(self.err(message));
        }
        let frame_duration = Duration::from_secs_f64(den as f64 / num.max(1) as f64);
        Ok(Running {
            pipeline,
            appsrc,
            width,
            height,
            input_size: (width, height),
            frame_duration,
            first_pts: None,
            last_pts: None,
            audio,
            room,
        })
    }

    /// `splitmuxsink` around `mux`: a new file of `template` every `length`, starting on a
    /// key frame it asks the encoder for; each file is finalized before the next opens.
    fn segmenter(
        &self,
        template: &Path,
        mux: gst::Element,
        length: Duration,
    ) -> Result<gst::Element, VideoError> {
        let split = self.element("splitmuxsink")?;
        split.set_property("muxer", &mux);
        split.set_property("max-size-time", length.as_nanos() as u64);
        split.set_property("send-keyframe-requests", true);
        let template = template.to_owned();
        split.connect("format-location", false, move |args| {
            let index = args[1].get::<u32>().unwrap_or(0);
            let path = segments::segment_path(&template, index, SystemTime::now());
            Some(path.to_string_lossy().into_owned().to_value())
        });
        Ok(split)
    }

    fn check_bus(&self, pipeline: &gst::Pipeline) -> Result<(), VideoError> {
        let bus = pipeline.bus().expect("pipeline has a bus");
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Err(self.err(describe_gst_error(e)));
            }
        }
        Ok(())
    }
}

impl Stage for VideoSink {
    fn process(&mut self, frame: Frame, out: &mut Output) -> Result<(), BoxError> {
        if self.running.is_none() {
            self.running = Some(self.open(&frame, out)?);
        }
        let target = self.target();
        let r = self.running.as_mut().expect("opened above");
        let image = frame.display_image();
        if (image.width, image.height) != r.input_size {
            if image.width < 2 || image.height < 2 {
                return Err(Box::new(VideoError::SizeChanged {
                    target,
                    seq: frame.seq,
                    got: format!("{}x{}", image.width, image.height),
                    expected: format!("{}x{}", r.width, r.height),
                }));
            }
            tracing::warn!(
                sink = %target,
                seq = frame.seq,
                from = %format!("{}x{}", r.input_size.0, r.input_size.1),
                to = %format!("{}x{}", image.width, image.height),
                "Resolution changed; scaling to the output's {}x{}.",
                r.width,
                r.height
            );
            let caps = r
                .appsrc
                .caps()
                .map(|c| {
                    let mut c = c.copy();
                    if let Some(s) = c.make_mut().structure_mut(0) {
                        s.set("width", image.width as i32);
                        s.set("height", image.height as i32);
                    }
                    c
                })
                .ok_or_else(|| VideoError::Gst {
                    target: target.clone(),
                    message: "the encoder input has no caps".into(),
                })?;
            r.appsrc.set_caps(Some(&caps));
            r.input_size = (image.width, image.height);
        }
        // Timestamps relative to the first frame, strictly increasing (muxers insist).
        let pts = match (frame.pts, r.first_pts) {
            (Some(p), Some(first)) => p.saturating_sub(first),
            (Some(p), None) => {
                r.first_pts = Some(p);
                Duration::ZERO
            }
            (None, _) => r.frame_duration * frame.seq as u32,
        };
        let pts = match r.last_pts {
            Some(last) if pts <= last => last + r.frame_duration,
            _ => pts,
        };
        r.last_pts = Some(pts);
        let mut buffer = gst::Buffer::from_slice(Pixels(image.clone()));
        {
            let b = buffer.get_mut().expect("new buffer is writable");
            b.set_pts(gst::ClockTime::from_nseconds(pts.as_nanos() as u64));
            b.set_duration(gst::ClockTime::from_nseconds(
                r.frame_duration.as_nanos() as u64
            ));
        }
        // Wait for room (back-pressure), looking at the bus meanwhile: an error downstream
        // stops the queue from draining, and a push must not wait for room forever.
        let (pipeline, appsrc, room) = (r.pipeline.clone(), r.appsrc.clone(), r.room.clone());
        self.check_bus(&pipeline)?;
        while appsrc.current_level_bytes() >= appsrc.max_bytes() {
            let ready = room.ready.lock().unwrap_or_else(|e| e.into_inner());
            let (mut ready, _) = room
                .signal
                .wait_timeout_while(ready, ROOM_WAIT, |ready| !*ready)
                .unwrap_or_else(|e| e.into_inner());
            *ready = false;
            drop(ready);
            self.check_bus(&pipeline)?;
        }
        let r = self.running.as_mut().expect("opened above");
        let pushed = r.appsrc.push_buffer(buffer);
        let pipeline = r.pipeline.clone();
        self.check_bus(&pipeline)?;
        pushed.map_err(|e| self.err(format!("the encoder refused a frame ({e:?})")))?;
        Ok(())
    }

    fn flush(&mut self, _out: &mut Output) -> Result<(), BoxError> {
        let Some(mut r) = self.running.take() else {
            return Ok(());
        };
        if let Some(audio) = &mut r.audio {
            audio.end_at(r.last_pts.map_or(Duration::ZERO, |l| l + r.frame_duration));
        }
        let _ = r.appsrc.end_of_stream();
        let bus = r.pipeline.bus().expect("pipeline has a bus");
        let result = match bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(FINISH_TIMEOUT.as_nanos() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            Some(msg) => match msg.view() {
                gst::MessageView::Error(e) => Err(self.err(describe_gst_error(e))),
                _ => Ok(()),
            },
            None => Err(self.err(format!("finalizing took longer than {FINISH_TIMEOUT:?}"))),
        };
        crate::source::gst::shutdown(&r.pipeline);
        result?;
        Ok(())
    }
}
