//! Building the decoding pipeline: `<source> ! decodebin ! videoconvert ! RGB ! appsink`
//! for each kind of input, and setting enum properties by their nicks.

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
    /// ever got linked (decodebin links dynamically).
    pub(super) fn build(
        &self,
    ) -> Result<(gst::Pipeline, gst_app::AppSink, Arc<AtomicBool>), DecodeError> {
        gst::init()?;
        let pipeline = gst::Pipeline::new();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let convert = make("videoconvert")?;
        convert.set_property("n-threads", threads as u32);
        let appsink = gst_app::AppSink::builder()
            .caps(
                &gst_video::VideoCapsBuilder::new()
                    .format(gst_video::VideoFormat::Rgb)
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
                return Ok((pipeline, appsink, linked));
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
        let linked_flag = linked.clone();
        dynamic.connect_pad_added(move |_, pad| {
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let is_video = caps
                .structure(0)
                .map(|s| s.name().starts_with("video/"))
                .unwrap_or(false);
            if is_video && !sink_pad.is_linked() && pad.link(&sink_pad).is_ok() {
                linked_flag.store(true, Ordering::Relaxed);
            }
        });
        Ok((pipeline, appsink, linked))
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
