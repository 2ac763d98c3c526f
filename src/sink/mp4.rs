//! `mp4`: H.264 in an MP4 file, showing the overlay (or the plain frame without composite).
//!
//! `[[sinks]] type = "mp4", path = "../out/demo.mp4", bitrate_kbps = 4000`

use super::video::{Container, Muxer, VideoFileConfig};

/// The MP4 container (`mp4mux`).
#[derive(Clone, Debug)]
pub struct Mp4;

impl Container for Mp4 {
    const MUXER: Muxer = Muxer {
        factory: "mp4mux",
        properties: &[],
    };
}

pub type Mp4Config = VideoFileConfig<Mp4>;
