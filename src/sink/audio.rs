//! Audio passthrough for the video file sinks: the input file's audio track is copied into
//! the output (remuxed, not re-encoded) on the same timeline as the video, and cut where the
//! video ends, so a run stopped early gets as much audio as video.
//!
//! `[[sinks]] type = "mp4", path = "../out/demo.mp4", audio = true` (the default) copies
//! the audio of a single file input when the container takes its format (AAC in MP4;
//! anything in Matroska); otherwise the output is video only, with a warning.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_pbutils as pbutils;
use gstreamer_pbutils::prelude::*;

/// How long looking into the input for its audio may take.
const DISCOVER_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(10);

/// Seconds of audio read ahead of the muxer at most; the reader waits beyond that.
const READ_AHEAD: gst::ClockTime = gst::ClockTime::from_seconds(10);

/// A running audio copy; `end_at` cuts it where the video ends.
pub struct AudioCopy {
    end: Arc<AtomicU64>,
}

impl AudioCopy {
    /// Audio past `t` (on the output's timeline) is dropped and the track ends there.
    pub fn end_at(&self, t: Duration) {
        self.end.store(t.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Adds `filesrc ! parsebin ! queue` for the first audio track of `input`, linked to a new
/// audio pad of `target` (the muxer, or the segmenter around `mux`), shifted by `first_pts`
/// so it lines up with the video. `Ok(None)` when the input has no audio the container takes.
pub fn add(
    pipeline: &gst::Pipeline,
    mux: &gst::Element,
    target: &gst::Element,
    input: &Path,
    first_pts: Duration,
) -> Result<Option<AudioCopy>, String> {
    let Some(caps) = audio_caps(input)? else {
        return Ok(None);
    };
    let accepted = mux
        .pad_template("audio_%u")
        .is_some_and(|t| t.caps().can_intersect(&caps));
    if !accepted {
        tracing::warn!(
            input = %input.display(),
            audio = %caps.structure(0).map(|s| s.name().as_str()).unwrap_or("?"),
            muxer = %mux.factory().map(|f| f.name().to_string()).unwrap_or_default(),
            "The container cannot hold this audio; the output is video only (mkv takes any)."
        );
        return Ok(None);
    }
    let make = |f: &str| {
        gst::ElementFactory::make(f)
            .build()
            .map_err(|_| format!("GStreamer element {f} is missing (see scripts/setup)"))
    };
    let (src, parse, queue) = (make("filesrc")?, make("parsebin")?, make("queue")?);
    src.set_property("location", input.to_string_lossy().as_ref());
    queue.set_property("max-size-buffers", 0u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", READ_AHEAD.nseconds());
    pipeline
        .add_many([&src, &parse, &queue])
        .map_err(|e| e.to_string())?;
    src.link(&parse).map_err(|e| e.to_string())?;
    let sink_pad = target
        .request_pad_simple("audio_%u")
        .ok_or("the muxer gives no audio pad")?;
    queue
        .static_pad("src")
        .ok_or("queue without src pad")?
        .link(&sink_pad)
        .map_err(|e| format!("cannot link the audio track: {e:?}"))?;

    // The first audio pad goes to the queue; every other stream to a fakesink, so that no
    // unlinked pad stops the reader.
    let linked = Arc::new(AtomicBool::new(false));
    let (weak_pipeline, queue_sink) = (pipeline.downgrade(), queue.static_pad("sink"));
    parse.connect_pad_added(move |_, pad| {
        let is_audio = pad
            .current_caps()
            .or_else(|| Some(pad.query_caps(None)))
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("audio/")))
            .unwrap_or(false);
        if is_audio && !linked.swap(true, Ordering::Relaxed) {
            if let Some(q) = &queue_sink {
                let _ = pad.link(q);
            }
            return;
        }
        let Some(pipeline) = weak_pipeline.upgrade() else {
            return;
        };
        if let Ok(fake) = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
        {
            let _ = pipeline.add(&fake);
            let _ = fake.sync_state_with_parent();
            if let Some(p) = fake.static_pad("sink") {
                let _ = pad.link(&p);
            }
        }
    });

    // Shift onto the output's timeline; drop what precedes the first frame, and end the
    // track where the video ends.
    let end = Arc::new(AtomicU64::new(u64::MAX));
    let (limit, ended) = (end.clone(), AtomicBool::new(false));
    let first = first_pts.as_nanos() as u64;
    queue
        .static_pad("src")
        .ok_or("queue without src pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if ended.load(Ordering::Relaxed) {
                return gst::PadProbeReturn::Drop;
            }
            let Some(buffer) = info.buffer_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            let Some(pts) = buffer.pts().map(|p| p.nseconds()) else {
                return gst::PadProbeReturn::Ok;
            };
            if pts < first {
                return gst::PadProbeReturn::Drop;
            }
            let shifted = pts - first;
            if shifted >= limit.load(Ordering::Relaxed) {
                ended.store(true, Ordering::Relaxed);
                pad.push_event(gst::event::Eos::new());
                return gst::PadProbeReturn::Drop;
            }
            let b = buffer.make_mut();
            b.set_pts(gst::ClockTime::from_nseconds(shifted));
            if let Some(dts) = b.dts() {
                b.set_dts(gst::ClockTime::from_nseconds(
                    dts.nseconds().saturating_sub(first),
                ));
            }
            gst::PadProbeReturn::Ok
        });
    Ok(Some(AudioCopy { end }))
}

/// The caps of the first audio track of `input`, if it has one.
fn audio_caps(input: &Path) -> Result<Option<gst::Caps>, String> {
    let absolute = std::fs::canonicalize(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let uri = gst::glib::filename_to_uri(&absolute, None).map_err(|e| e.to_string())?;
    let discoverer = pbutils::Discoverer::new(DISCOVER_TIMEOUT).map_err(|e| e.to_string())?;
    let info = discoverer
        .discover_uri(&uri)
        .map_err(|e| format!("cannot look into {}: {e}", input.display()))?;
    Ok(info.audio_streams().first().and_then(|a| a.caps()))
}
