//! `rtsp`: an RTSP stream that reconnects on its own when it drops.
//!
//! `[source] type = "rtsp", url = "rtsp://camera.local:8554/stream"`; on the command line
//! `--input rtsp://...`.

use serde::Deserialize;

use super::gst::{Decode, DecodeOptions, Input, RtspTransport};
use crate::component::{BuildContext, CheckContext, Component, SourceComponent};
use crate::config::Problems;
use crate::runtime::{BoxError, Source};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RtspConfig {
    pub url: String,
    /// Jitter-buffer latency in milliseconds.
    #[serde(default = "default_latency")]
    pub latency_ms: u32,
    /// Seconds without a frame after which the stream counts as lost (and, before the
    /// first frame, after which an unanswering server is an error).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Lower transport: `auto` (UDP, falling back to TCP), `tcp` or `udp`.
    #[serde(default)]
    pub transport: RtspTransport,
    /// Reconnect on its own when the stream drops or the server restarts.
    #[serde(default = "yes")]
    pub reconnect: bool,
    /// Longest wait between reconnection attempts, in seconds (the wait doubles from
    /// half a second up to this).
    #[serde(default = "default_backoff_max")]
    pub backoff_max_s: f64,
    /// Give up when one outage lasts longer than this many seconds; never when absent.
    #[serde(default)]
    pub max_outage_s: Option<f64>,
    /// Threads of the video decoder (0, the default: the decoder decides by the cores).
    #[serde(default)]
    pub decoder_threads: u32,
    /// Keep the decoder's 4:2:0 planes on each frame as NV12, beside RGB: an infer stage
    /// with `pre_post = "graph"` then takes them (half the bytes of RGB to a GPU).
    #[serde(default)]
    pub nv12: bool,
}

fn default_latency() -> u32 {
    200
}
fn default_timeout() -> f64 {
    10.0
}
fn default_backoff_max() -> f64 {
    5.0
}
fn yes() -> bool {
    true
}

impl Component for RtspConfig {
    fn check(&mut self, _cx: &CheckContext<'_>, p: &mut Problems) {
        if !self.url.starts_with("rtsp://") && !self.url.starts_with("rtsps://") {
            p.push(
                "url",
                format!("{:?} is not an RTSP URL (expected rtsp://...)", self.url),
            );
        }
        p.range("timeout_s", self.timeout_s, 0.1, 3600.0);
        p.range("latency_ms", self.latency_ms, 0, 60000);
        p.range("backoff_max_s", self.backoff_max_s, 0.1, 3600.0);
        p.range("decoder_threads", self.decoder_threads, 0, 64);
        if let Some(m) = self.max_outage_s {
            p.range("max_outage_s", m, 0.1, 1e9);
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SourceComponent for RtspConfig {
    fn from_input(input: &str) -> Option<Result<Self, String>> {
        (input.starts_with("rtsp://") || input.starts_with("rtsps://")).then(|| {
            Ok(RtspConfig {
                url: input.to_owned(),
                latency_ms: default_latency(),
                timeout_s: default_timeout(),
                transport: RtspTransport::default(),
                reconnect: true,
                backoff_max_s: default_backoff_max(),
                max_outage_s: None,
                decoder_threads: 0,
                nv12: false,
            })
        })
    }

    fn keep_settings_of(&mut self, file: &dyn SourceComponent) {
        if let Some(f) = file.as_any().downcast_ref::<RtspConfig>() {
            *self = RtspConfig {
                url: std::mem::take(&mut self.url),
                ..f.clone()
            };
        }
    }

    fn is_live(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.url.clone()
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, BoxError> {
        let input = Input::Rtsp {
            url: self.url.clone(),
            latency_ms: self.latency_ms,
            timeout_s: self.timeout_s,
            transport: self.transport,
            reconnect: self.reconnect,
            backoff_max_s: self.backoff_max_s,
            max_outage_s: self.max_outage_s,
        };
        Ok(Box::new(
            Decode::new(input, cx.frames).options(self.decode_options()),
        ))
    }
}

impl RtspConfig {
    fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            threads: self.decoder_threads,
            nv12: self.nv12,
        }
    }
}
