//! What a GStreamer-backed source opens.

use std::path::PathBuf;

/// What a GStreamer-backed source opens.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A video file, a still image, or a numbered image sequence (`frames/%05d.png`).
    File { path: PathBuf, start_index: u32 },
    /// Any URI GStreamer can open.
    Uri { uri: String },
    /// An RTSP stream, reconnected when it drops.
    Rtsp {
        url: String,
        latency_ms: u32,
        timeout_s: f64,
        transport: RtspTransport,
        reconnect: bool,
        backoff_max_s: f64,
        max_outage_s: Option<f64>,
    },
    /// A V4L2 camera.
    Camera { device: PathBuf },
    /// `videotestsrc`.
    Test {
        pattern: String,
        width: u32,
        height: u32,
        fps: u32,
        frames: Option<u64>,
        live: bool,
    },
}

impl Input {
    /// Live inputs produce frames on their own clock and cannot wait for a slow pipeline.
    pub fn is_live(&self) -> bool {
        match self {
            Input::Rtsp { .. } | Input::Camera { .. } => true,
            Input::Uri { uri } => uri.starts_with("rtsp") || uri.starts_with("udp"),
            Input::Test { live, .. } => *live,
            Input::File { .. } => false,
        }
    }

    /// A short human name of the input, used in messages.
    pub fn describe(&self) -> String {
        match self {
            Input::File { path, .. } => path.display().to_string(),
            Input::Uri { uri } => uri.clone(),
            Input::Rtsp { url, .. } => url.clone(),
            Input::Camera { device } => device.display().to_string(),
            Input::Test { pattern, .. } => format!("test:{pattern}"),
        }
    }
}

/// How RTSP media travels.
#[derive(Clone, Copy, Debug, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RtspTransport {
    /// UDP, falling back to TCP (interleaved) when UDP gets nothing.
    #[default]
    Auto,
    /// Interleaved in the RTSP connection: passes firewalls, no packet loss.
    Tcp,
    /// Unicast UDP: lowest latency, packets may be lost.
    Udp,
}
