//! `rtsp`: serves the composited stream (H.264 over RTSP) so a camera's overlay can be
//! watched live in any player: `ffplay rtsp://127.0.0.1:8554/segstream`.
//!
//! `[[sinks]] type = "rtsp", address = "127.0.0.1:8554", mount = "/segstream"`
//!
//! One encoder feeds every client (a shared gst-rtsp-server media). The pipeline never waits
//! for a client: frames go into a two-frame queue that drops its oldest frame when the
//! encoder falls behind (counted as drops of this sink), and a client that stops reading has
//! its backlog dropped by the server while the others go on. With several sources, stream 0
//! is served.
//!
//! gst-rtsp-server's sender thread sleeps until a new packet or a sent message wakes it, and
//! it takes no packet while every client has one still unsent. So when the only client stops
//! reading, the media's pipeline blocks, and nothing wakes the sender for a client that
//! comes next: it would get no data at all. The sink wakes the sender whenever a client
//! starts playing (as a sent message does), and twice a second besides, in case the new
//! client's transport was not in yet; the sender then feeds the new client and drops the
//! stalled one when its backlog is full.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_video as gst_video;
use serde::Deserialize;

use super::video::Pixels;
use super::Preset;
use crate::component::{BuildContext, CheckContext, Component, SinkComponent};
use crate::config::Problems;
use crate::frame::Frame;
use crate::runtime::{BoxError, Output, QueueConfig, Stage};

/// Frames waiting for the encoder at most; older ones are dropped.
const PENDING_FRAMES: u64 = 2;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtspSinkConfig {
    /// Where the server listens; loopback unless you mean to share the stream.
    #[serde(default = "default_address")]
    pub address: String,
    /// The stream's path on the server.
    #[serde(default = "default_mount")]
    pub mount: String,
    /// Target bitrate in kbit/s.
    #[serde(default = "default_bitrate")]
    pub bitrate_kbps: u32,
    /// x264's speed preset (see the `mp4` sink).
    #[serde(default)]
    pub preset: Preset,
    #[serde(default)]
    pub queue: QueueConfig,
}

fn default_address() -> String {
    "127.0.0.1:8554".into()
}

fn default_mount() -> String {
    "/segstream".into()
}

fn default_bitrate() -> u32 {
    2000
}

impl Component for RtspSinkConfig {
    fn check(&mut self, _cx: &CheckContext<'_>, p: &mut Problems) {
        if self.address.parse::<SocketAddr>().is_err() {
            p.push(
                "address",
                format!(
                    "{:?} is not an address (expected IP:PORT, such as 127.0.0.1:8554)",
                    self.address
                ),
            );
        }
        if !self.mount.starts_with('/') || self.mount.contains(char::is_whitespace) {
            p.push(
                "mount",
                format!(
                    "{:?} is not a path (expected one starting with /, such as /segstream)",
                    self.mount
                ),
            );
        }
        p.range("bitrate_kbps", self.bitrate_kbps, 64, 200_000);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SinkComponent for RtspSinkConfig {
    fn queue(&self) -> QueueConfig {
        self.queue
    }

    fn shared_by_streams(&self) -> bool {
        true
    }

    fn build(
        &self,
        _cx: &BuildContext<'_>,
        _output: Option<&Path>,
    ) -> Result<Box<dyn Stage>, BoxError> {
        Ok(Box::new(RtspSink {
            settings: self.clone(),
            state: None,
            format: None,
        }))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot serve RTSP on {address}{mount}: {message}")]
pub struct RtspSinkError {
    address: String,
    mount: String,
    message: String,
}

/// The server while it runs: its main loop's thread and the source of the shared media,
/// once a client has asked for it.
struct State {
    main_loop: glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
    appsrc: Arc<Mutex<Option<gst_app::AppSrc>>>,
    caps: Arc<Mutex<Option<gst::Caps>>>,
}

/// Wakes the sender threads of `media`'s streams, as a message sent to one of their clients
/// would: each then sends what it holds to every client able to take it.
fn wake_senders(media: &rtsp::RTSPMedia) {
    for i in 0..media.n_streams() {
        let Some(stream) = media.stream(i) else {
            continue;
        };
        if let Some(transport) = stream.transport_filter(None).first() {
            transport.message_sent();
        }
    }
}

/// Width, height and frame rate (when known).
type Format = (u32, u32, Option<(i32, i32)>);

pub struct RtspSink {
    settings: RtspSinkConfig,
    state: Option<State>,
    /// Size and rate of the frames served now.
    format: Option<Format>,
}

impl RtspSink {
    fn err(&self, message: impl Into<String>) -> RtspSinkError {
        RtspSinkError {
            address: self.settings.address.clone(),
            mount: self.settings.mount.clone(),
            message: message.into(),
        }
    }
}

impl Stage for RtspSink {
    fn start(&mut self) -> Result<(), BoxError> {
        gst::init().map_err(|e| self.err(e.to_string()))?;
        let addr: SocketAddr = self
            .settings
            .address
            .parse()
            .map_err(|_| self.err("not an IP:PORT address"))?;
        let appsrc: Arc<Mutex<Option<gst_app::AppSrc>>> = Arc::default();
        let media: Arc<Mutex<Option<rtsp::RTSPMedia>>> = Arc::default();
        let caps: Arc<Mutex<Option<gst::Caps>>> = Arc::default();
        let context = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let server = rtsp::RTSPServer::new();
        server.set_address(&addr.ip().to_string());
        server.set_service(&addr.port().to_string());
        let factory = rtsp::RTSPMediaFactory::new();
        factory.set_launch(&format!(
            "( appsrc name=src is-live=true format=time do-timestamp=true \
             ! videoconvert ! video/x-raw,format=I420 \
             ! x264enc tune=zerolatency speed-preset={} bitrate={} key-int-max=30 \
             ! video/x-h264,profile=main ! rtph264pay name=pay0 pt=96 config-interval=1 )",
            self.settings.preset.name(),
            self.settings.bitrate_kbps
        ));
        factory.set_shared(true);
        {
            let (appsrc, caps, shared) = (appsrc.clone(), caps.clone(), media.clone());
            factory.connect_media_configure(move |_, media| {
                *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(media.clone());
                let Some(bin) = media.element().downcast::<gst::Bin>().ok() else {
                    return;
                };
                let Some(src) = bin
                    .by_name("src")
                    .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
                else {
                    return;
                };
                src.set_property("max-buffers", PENDING_FRAMES);
                src.set_property_from_str("leaky-type", "downstream");
                src.set_block(false);
                if let Some(c) = caps.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    src.set_caps(Some(c));
                }
                *appsrc.lock().unwrap_or_else(|e| e.into_inner()) = Some(src);
            });
        }
        server
            .mount_points()
            .ok_or_else(|| self.err("the server has no mount points"))?
            .add_factory(&self.settings.mount, factory);
        let wake = {
            let media = media.clone();
            let source = glib::timeout_source_new(
                std::time::Duration::from_millis(500),
                None,
                glib::Priority::DEFAULT,
                move || {
                    if let Some(m) = media.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                        wake_senders(m);
                    }
                    glib::ControlFlow::Continue
                },
            );
            source.attach(Some(&context));
            source
        };
        {
            let context = context.clone();
            server.connect_client_connected(move |_, client| {
                let (media, context) = (media.clone(), context.clone());
                client.connect_play_request(move |_, _| {
                    // After the request's handling, once the new client's transport is in.
                    let media = media.clone();
                    glib::idle_source_new(None, glib::Priority::DEFAULT, move || {
                        if let Some(m) = media.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                            wake_senders(m);
                        }
                        glib::ControlFlow::Break
                    })
                    .attach(Some(&context));
                });
            });
        }
        let source = server
            .attach(Some(&context))
            .map_err(|e| self.err(format!("{e} (is the port in use?)")))?;
        let (lp, ctx) = (main_loop.clone(), context.clone());
        let thread = std::thread::Builder::new()
            .name("segstream-rtsp".into())
            .spawn(move || {
                let _ = ctx.with_thread_default(|| lp.run());
                server.client_filter(Some(&mut |_, _| rtsp::RTSPFilterResult::Remove));
                if let Some(listener) = ctx.find_source_by_id(&source) {
                    listener.destroy();
                }
                wake.destroy();
                while ctx.iteration(false) {}
            })
            .map_err(|e| self.err(e.to_string()))?;
        tracing::info!(
            sink = "rtsp",
            url = %format!("rtsp://{}{}", self.settings.address, self.settings.mount),
            "Serving."
        );
        self.state = Some(State {
            main_loop,
            thread: Some(thread),
            appsrc,
            caps,
        });
        Ok(())
    }

    fn process(&mut self, frame: Frame, out: &mut Output) -> Result<(), BoxError> {
        if frame.stream != 0 {
            return Ok(());
        }
        let state = self.state.as_ref().expect("start() ran");
        let image = frame.display_image().clone();
        // Caps are made when the frame format changes, not per frame; a media created later
        // takes them in `media-configure`.
        let format = (image.width, image.height, frame.rate);
        let changed = (self.format != Some(format)).then(|| {
            self.format = Some(format);
            let (n, d) = frame.rate.unwrap_or((30, 1));
            let caps = gst_video::VideoCapsBuilder::new()
                .format(gst_video::VideoFormat::Rgb)
                .width(image.width as i32)
                .height(image.height as i32)
                .framerate(gst::Fraction::new(n, d))
                .build();
            *state.caps.lock().unwrap_or_else(|e| e.into_inner()) = Some(caps.clone());
            caps
        });
        // No client yet: nothing to feed.
        let Some(src) = state
            .appsrc
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return Ok(());
        };
        if let Some(caps) = changed {
            src.set_caps(Some(&caps));
        }
        if src.property::<u64>("current-level-buffers") >= PENDING_FRAMES {
            // The queue drops its oldest frame to take this one.
            out.count_drop(frame.stream);
        }
        // A media that all clients left is flushing; frames go nowhere until one returns.
        let _ = src.push_buffer(gst::Buffer::from_slice(Pixels(image)));
        Ok(())
    }

    fn flush(&mut self, _out: &mut Output) -> Result<(), BoxError> {
        if let Some(mut state) = self.state.take() {
            if let Some(src) = state
                .appsrc
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                let _ = src.end_of_stream();
            }
            state.main_loop.quit();
            if let Some(t) = state.thread.take() {
                let _ = t.join();
            }
        }
        Ok(())
    }
}
