//! Building the decoding pipeline: `<source> ! decodebin ! videoconvert ! I420/NV12/RGB ! appsink`
//! for each kind of input, and setting enum properties by their nicks.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::{make, Decode, DecodeError, Input, RtspTransport};

impl Decode {
    /// Adds `src ! decodebin` to the pipeline; returns the decodebin, whose pads appear once
    /// the stream type is known.
    fn with_decodebin(
        &self,
        pipeline: &gst::Pipeline,
        src: &gst::Element,
    ) -> Result<gst::Element, DecodeError> {
        let decodebin = make("decodebin")?;
        pipeline
            .add_many([src, &decodebin])
            .map_err(|e| self.error(e.to_string()))?;
        src.link(&decodebin)
            .map_err(|e| self.error(e.to_string()))?;
        Ok(decodebin)
    }

    /// Builds `<source> ! [videoflip !] videoconvert ! RGB ! appsink`; also returns whether a video pad
    /// ever got linked (decodebin links dynamically), and for a live stream its audio.
    pub(super) fn build(&self) -> Result<Built, DecodeError> {
        gst::init()?;
        let pipeline = gst::Pipeline::new();
        if self.options.threads > 0 {
            let n = self.options.threads as i32;
            // FFmpeg's decoders (avdec_*) are plugged deep inside decodebin.
            pipeline.connect_deep_element_added(move |_, _, element| {
                if element.find_property("max-threads").is_some() {
                    element.set_property("max-threads", n);
                }
            });
        }
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let convert = make("videoconvert")?;
        convert.set_property("n-threads", threads as u32);
        // The decoder's own YUV planes (4:2:0, and JPEG's 4:2:2 and 4:4:4) pass through (converted to RGB in segstream, in
        // parallel SIMD bands); anything else is converted by videoconvert.
        let appsink = gst_app::AppSink::builder()
            .caps(
                &gst_video::VideoCapsBuilder::new()
                    .format_list([
                        gst_video::VideoFormat::I420,
                        gst_video::VideoFormat::Nv12,
                        gst_video::VideoFormat::Y42b,
                        gst_video::VideoFormat::Y444,
                        gst_video::VideoFormat::Rgb,
                    ])
                    .build(),
            )
            .sync(false)
            .max_buffers(2)
            .drop(self.config.is_live())
            .build();
        pipeline
            .add_many([&convert, appsink.upcast_ref()])
            .and_then(|_| convert.link(&appsink))
            .map_err(|e| self.error(e.to_string()))?;
        // Frames are read through their video meta (strides, plane offsets), so decoders may
        // hand over their own buffers instead of copying each frame into a packed one.
        if let Some(pad) = appsink.static_pad("sink") {
            pad.add_probe(gst::PadProbeType::QUERY_DOWNSTREAM, |_, info| {
                if let Some(gst::QueryViewMut::Allocation(q)) =
                    info.query_mut().map(|q| q.view_mut())
                {
                    q.add_allocation_meta::<gst_video::VideoMeta>(None);
                }
                gst::PadProbeReturn::Ok
            });
        }
        let linked = Arc::new(AtomicBool::new(false));

        // Elements whose output pads appear once the stream type is known.
        let dynamic: gst::Element = match &self.config {
            Input::File { path, start_index } => {
                let s = path.to_string_lossy();
                if s.contains('%') {
                    let src = make("multifilesrc")?;
                    src.set_property("location", s.as_ref());
                    src.set_property("index", *start_index as i32);
                    let lower = s.to_ascii_lowercase();
                    let caps = if lower.ends_with(".png") {
                        "image/png"
                    } else if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
                        "image/jpeg"
                    } else {
                        return Err(self.error(
                            "image sequences must be .png, .jpg or .jpeg (e.g. frames/%05d.png)",
                        ));
                    };
                    src.set_property("caps", gst::Caps::builder(caps).build());
                    self.with_decodebin(&pipeline, &src)?
                } else {
                    let abs = std::fs::canonicalize(path).map_err(|e| {
                        self.error(format!("cannot open: {e} (expected an existing file)"))
                    })?;
                    let uri = gst::glib::filename_to_uri(&abs, None)
                        .map_err(|e| self.error(e.to_string()))?;
                    let bin = make("uridecodebin")?;
                    bin.set_property("uri", uri.as_str());
                    pipeline.add(&bin).map_err(|e| self.error(e.to_string()))?;
                    bin
                }
            }
            Input::Uri { uri } => {
                let bin = make("uridecodebin")?;
                bin.set_property("uri", uri.as_str());
                pipeline.add(&bin).map_err(|e| self.error(e.to_string()))?;
                bin
            }
            Input::Rtsp {
                url,
                latency_ms,
                timeout_s,
                transport,
                ..
            } => {
                let bin = make("uridecodebin")?;
                bin.set_property("uri", url.as_str());
                let (latency, timeout_us) = (*latency_ms, (*timeout_s * 1e6) as u64);
                let protocols = match transport {
                    RtspTransport::Auto => None,
                    RtspTransport::Tcp => Some("tcp"),
                    RtspTransport::Udp => Some("udp"),
                };
                bin.connect("source-setup", false, move |args| {
                    if let Ok(src) = args[1].get::<gst::Element>() {
                        if src.find_property("latency").is_some() {
                            src.set_property("latency", latency);
                        }
                        if let Some(p) =
                            protocols.filter(|_| src.find_property("protocols").is_some())
                        {
                            src.set_property_from_str("protocols", p);
                        }
                        if src.find_property("tcp-timeout").is_some() {
                            src.set_property("tcp-timeout", timeout_us);
                        }
                        if src.find_property("timeout").is_some() {
                            src.set_property("timeout", timeout_us);
                        }
                    }
                    None
                });
                // Audio stays encoded (parsed, not decoded), to be copied into recordings.
                bin.set_property(
                    "caps",
                    gst::Caps::from_str(PASSED_ON).map_err(|e| self.error(e.to_string()))?,
                );
                pipeline.add(&bin).map_err(|e| self.error(e.to_string()))?;
                bin
            }
            Input::Camera { device } => {
                if !device.exists() {
                    return Err(
                        self.error("camera device does not exist (expected e.g. /dev/video0)")
                    );
                }
                let src = make("v4l2src")?;
                src.set_property("device", device.to_string_lossy().as_ref());
                self.with_decodebin(&pipeline, &src)?
            }
            Input::Test {
                pattern,
                width,
                height,
                fps,
                frames,
                live,
            } => {
                let src = make("videotestsrc")?;
                set_enum_by_nick(&src, "pattern", pattern).map_err(|m| self.error(m))?;
                src.set_property("is-live", *live);
                if let Some(n) = frames {
                    src.set_property("num-buffers", i32::try_from(*n).unwrap_or(i32::MAX));
                }
                let caps = gst_video::VideoCapsBuilder::new()
                    .width(*width as i32)
                    .height(*height as i32)
                    .framerate(gst::Fraction::new(*fps as i32, 1))
                    .build();
                let filter = make("capsfilter")?;
                filter.set_property("caps", &caps);
                pipeline
                    .add_many([&src, &filter])
                    .map_err(|e| self.error(e.to_string()))?;
                gst::Element::link_many([&src, &filter, &convert])
                    .map_err(|e| self.error(e.to_string()))?;
                linked.store(true, Ordering::Relaxed);
                return Ok(Built {
                    pipeline,
                    appsink,
                    linked,
                    audio: None,
                });
            }
        };

        // Rotation metadata (a phone clip's image-orientation tag) is applied; without one
        // videoflip passes frames through untouched.
        let flip = make("videoflip")?;
        set_enum_by_nick(&flip, "video-direction", "auto").map_err(|m| self.error(m))?;
        pipeline
            .add(&flip)
            .and_then(|_| flip.link(&convert))
            .map_err(|e| self.error(e.to_string()))?;
        let sink_pad = flip.static_pad("sink").expect("videoflip has a sink pad");
        let audio = match self.config {
            Input::Rtsp { .. } => Some(self.audio_branch(&pipeline, &dynamic)?),
            _ => None,
        };
        let audio_pad = audio.as_ref().map(|a| a.sink.clone());
        let linked_flag = linked.clone();
        dynamic.connect_pad_added(move |_, pad| {
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let name = caps.structure(0).map(|s| s.name().as_str()).unwrap_or("");
            if name.starts_with("video/") && !sink_pad.is_linked() && pad.link(&sink_pad).is_ok() {
                linked_flag.store(true, Ordering::Relaxed);
            }
            if let Some(a) = audio_pad
                .as_ref()
                .filter(|a| name.starts_with("audio/") && !a.is_linked())
            {
                let _ = pad.link(a);
            }
        });
        Ok(Built {
            pipeline,
            appsink,
            linked,
            audio,
        })
    }

    /// `queue ! appsink` for a live stream's first audio track, kept encoded; its pad is
    /// linked when the stream shows one.
    fn audio_branch(
        &self,
        pipeline: &gst::Pipeline,
        dynamic: &gst::Element,
    ) -> Result<AudioBranch, DecodeError> {
        let queue = make("queue")?;
        // A stream without audio leaves this branch empty: it must not hold up the start.
        let appsink = gst_app::AppSink::builder()
            .sync(false)
            .async_(false)
            .max_buffers(AUDIO_BACKLOG)
            .drop(true)
            .build();
        pipeline
            .add_many([&queue, appsink.upcast_ref()])
            .and_then(|_| queue.link(&appsink))
            .map_err(|e| self.error(e.to_string()))?;
        let settled = Arc::new(AtomicBool::new(false));
        let flag = settled.clone();
        dynamic.connect_no_more_pads(move |_| flag.store(true, Ordering::Relaxed));
        Ok(AudioBranch {
            sink: queue.static_pad("sink").expect("queue has a sink pad"),
            appsink,
            settled,
        })
    }
}

/// What decodebin hands on as it is: raw video to convert, and audio parsed but encoded
/// (the formats cameras send), or raw when it is something else.
const PASSED_ON: &str = "video/x-raw(ANY); audio/mpeg; audio/x-opus; audio/x-alaw; \
                         audio/x-mulaw; audio/x-raw(ANY)";

/// Audio packets the source may hold before the oldest are dropped.
const AUDIO_BACKLOG: u32 = 256;

/// A built decoding pipeline.
pub(super) struct Built {
    pub pipeline: gst::Pipeline,
    pub appsink: gst_app::AppSink,
    /// Whether a video pad got linked.
    pub linked: Arc<AtomicBool>,
    /// A live stream's audio.
    pub audio: Option<AudioBranch>,
}

/// The audio of a live stream, taken as it comes.
pub(super) struct AudioBranch {
    sink: gst::Pad,
    pub appsink: gst_app::AppSink,
    /// The stream has shown all its pads.
    pub settled: Arc<AtomicBool>,
}

impl AudioBranch {
    /// Whether the stream has an audio track linked here.
    pub fn linked(&self) -> bool {
        self.sink.is_linked()
    }
}

/// Sets an enum property from its nick, with an error listing the valid nicks.
fn set_enum_by_nick(element: &gst::Element, property: &str, nick: &str) -> Result<(), String> {
    let pspec = element
        .find_property(property)
        .ok_or_else(|| format!("no property {property}"))?;
    let class = gst::glib::EnumClass::with_type(pspec.value_type())
        .ok_or_else(|| format!("{property} is not an enum"))?;
    match class.to_value_by_nick(nick) {
        Some(value) => {
            element.set_property_from_value(property, &value);
            Ok(())
        }
        None => {
            let nicks: Vec<&str> = class.values().iter().map(|v| v.nick()).collect();
            Err(format!(
                "unknown {property} {nick:?} (expected one of {})",
                nicks.join(", ")
            ))
        }
    }
}

/// Checks that `videotestsrc` has the pattern `nick`, without starting anything; the error
/// lists the patterns it has.
pub fn check_test_pattern(nick: &str) -> Result<(), String> {
    gst::init().map_err(|e| format!("cannot initialize GStreamer: {e}"))?;
    let src = make("videotestsrc").map_err(|e| e.to_string())?;
    set_enum_by_nick(&src, "pattern", nick)
        .map_err(|m| m.replacen("unknown pattern", "unknown test pattern", 1))
}
