//! Audio passthrough for the video file sinks: the input file's audio track is copied into
//! the output (remuxed, not re-encoded) on the same timeline as the video, and cut where the
//! video ends, so a run stopped early gets as much audio as video.
//!
//! `[[sinks]] type = "mp4", path = "../out/demo.mp4", audio = true` (the default) copies
//! the audio of a single file input when the container takes its format (AAC in MP4;
//! anything in Matroska); otherwise the output is video only, with a warning.
//!
//! A live stream's audio (an RTSP camera's) comes from the source beside the frames
//! ([`crate::runtime::AudioTracks`]) and enters the muxer through an `appsrc`; when the
//! camera's audio stops for a few seconds the track ends there and the recording goes on
//! with video only, so a silent camera never holds the video back.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_pbutils as pbutils;
use gstreamer_pbutils::prelude::*;

use crate::runtime::AudioPacket;

/// How long looking into the input for its audio may take.
const DISCOVER_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(10);

/// Seconds of audio read ahead of the muxer at most; the reader waits beyond that.
const READ_AHEAD: gst::ClockTime = gst::ClockTime::from_seconds(10);

/// A live stream's audio that stops this long ends the track (the video goes on).
const SILENCE: Duration = Duration::from_secs(2);

/// Bytes of live audio held in front of the muxer at most (the oldest go first).
const LIVE_QUEUE_BYTES: u64 = 1 << 20;

/// A running audio copy; `end_at` cuts it where the video ends.
pub struct AudioCopy {
    end: Arc<AtomicU64>,
    /// A live track's feeder, which ends the track once the end is set.
    feeder: Option<std::thread::JoinHandle<()>>,
}

impl AudioCopy {
    /// Audio past `t` (on the output's timeline) is dropped and the track ends there; a
    /// live track has ended when this returns.
    pub fn end_at(&mut self, t: Duration) {
        self.end.store(t.as_nanos() as u64, Ordering::Relaxed);
        if let Some(feeder) = self.feeder.take() {
            let _ = feeder.join();
        }
    }
}

impl Drop for AudioCopy {
    fn drop(&mut self) {
        if self.feeder.is_some() {
            self.end_at(Duration::ZERO);
        }
    }
}

/// Whether `mux` takes audio in format `caps`; warns when it does not.
fn takes(mux: &gst::Element, caps: &gst::Caps, input: &str) -> bool {
    let accepted = mux
        .pad_template("audio_%u")
        .is_some_and(|t| t.caps().can_intersect(caps));
    if !accepted {
        tracing::warn!(
            input = %input,
            audio = %caps.structure(0).map(|s| s.name().as_str()).unwrap_or("?"),
            muxer = %mux.factory().map(|f| f.name().to_string()).unwrap_or_default(),
            "The container cannot hold this audio; the output is video only (mkv takes any)."
        );
    }
    accepted
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| format!("GStreamer element {factory} is missing (see scripts/setup)"))
}

/// Links `queue`'s output to a new audio pad of `target`.
fn link_to(queue: &gst::Element, target: &gst::Element) -> Result<(), String> {
    let sink_pad = target
        .request_pad_simple("audio_%u")
        .ok_or("the muxer gives no audio pad")?;
    queue
        .static_pad("src")
        .ok_or("queue without src pad")?
        .link(&sink_pad)
        .map_err(|e| format!("cannot link the audio track: {e:?}"))?;
    Ok(())
}

/// Adds `appsrc ! queue` for a live stream's audio (format `caps`, packets from `packets`),
/// linked like [`add`]; packets before `first_pts` (the first frame) are dropped. A thread
/// feeds the packets until the end is set, the source goes, or the audio stops for
/// [`SILENCE`].
pub fn add_live(
    pipeline: &gst::Pipeline,
    mux: &gst::Element,
    target: &gst::Element,
    (caps, packets): (String, Receiver<AudioPacket>),
    first_pts: Duration,
    input: &str,
) -> Result<Option<AudioCopy>, String> {
    let caps = gst::Caps::from_str(&caps).map_err(|e| format!("audio caps {caps:?}: {e}"))?;
    if !takes(mux, &caps, input) {
        return Ok(None);
    }
    let appsrc = gst_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .block(false)
        .max_bytes(LIVE_QUEUE_BYTES)
        .build();
    if appsrc.find_property("leaky-type").is_some() {
        appsrc.set_property_from_str("leaky-type", "downstream");
    }
    // A depayloader's output may lack what the muxer asks (AAC's rate and channels): its
    // parser fills that in from the codec data.
    let mut chain = vec![appsrc.clone().upcast::<gst::Element>()];
    if let Some(parser) = parser_for(&caps) {
        chain.push(make(parser)?);
    }
    let queue = make("queue")?;
    chain.push(queue.clone());
    pipeline.add_many(&chain).map_err(|e| e.to_string())?;
    gst::Element::link_many(&chain).map_err(|e| e.to_string())?;
    link_to(&queue, target)?;
    let end = Arc::new(AtomicU64::new(u64::MAX));
    let limit = end.clone();
    let input = input.to_owned();
    let feeder = std::thread::Builder::new()
        .name("audio".into())
        .spawn(move || feed(&appsrc, &packets, first_pts, &limit, &input))
        .map_err(|e| format!("cannot start the audio thread: {e}"))?;
    Ok(Some(AudioCopy {
        end,
        feeder: Some(feeder),
    }))
}

/// The parser for encoded audio in format `caps`, when GStreamer has one.
fn parser_for(caps: &gst::Caps) -> Option<&'static str> {
    let s = caps.structure(0)?;
    match (s.name().as_str(), s.get::<i32>("mpegversion").ok()) {
        ("audio/mpeg", Some(2 | 4)) => Some("aacparse"),
        ("audio/mpeg", Some(1)) => Some("mpegaudioparse"),
        ("audio/x-opus", _) => Some("opusparse"),
        _ => None,
    }
}

/// Pushes `packets` into `appsrc` shifted by `first`, then ends the track.
fn feed(
    appsrc: &gst_app::AppSrc,
    packets: &Receiver<AudioPacket>,
    first: Duration,
    end: &AtomicU64,
    input: &str,
) {
    let mut last_packet = Instant::now();
    loop {
        let ending = end.load(Ordering::Relaxed) != u64::MAX;
        // Once the video has ended, take only what has already arrived.
        let packet = if ending {
            match packets.try_recv() {
                Ok(p) => p,
                Err(_) => break,
            }
        } else {
            match packets.recv_timeout(Duration::from_millis(50)) {
                Ok(p) => p,
                Err(RecvTimeoutError::Timeout) => {
                    if last_packet.elapsed() >= SILENCE {
                        tracing::warn!(
                            input = %input,
                            silent_s = SILENCE.as_secs_f64(),
                            "The stream's audio stopped; the rest of the recording is video only."
                        );
                        break;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        last_packet = Instant::now();
        let Some(shifted) = packet.pts.checked_sub(first) else {
            continue;
        };
        if shifted.as_nanos() as u64 >= end.load(Ordering::Relaxed) {
            break;
        }
        let mut buffer = gst::Buffer::from_slice(packet.data.clone());
        {
            let b = buffer.get_mut().expect("new buffer is writable");
            b.set_pts(gst::ClockTime::from_nseconds(shifted.as_nanos() as u64));
            if let Some(d) = packet.duration {
                b.set_duration(gst::ClockTime::from_nseconds(d.as_nanos() as u64));
            }
        }
        if appsrc.push_buffer(buffer).is_err() {
            break;
        }
    }
    let _ = appsrc.end_of_stream();
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
    if !takes(mux, &caps, &input.display().to_string()) {
        return Ok(None);
    }
    let (src, parse, queue) = (make("filesrc")?, make("parsebin")?, make("queue")?);
    src.set_property("location", input.to_string_lossy().as_ref());
    queue.set_property("max-size-buffers", 0u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", READ_AHEAD.nseconds());
    pipeline
        .add_many([&src, &parse, &queue])
        .map_err(|e| e.to_string())?;
    src.link(&parse).map_err(|e| e.to_string())?;
    link_to(&queue, target)?;

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
    Ok(Some(AudioCopy { end, feeder: None }))
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
