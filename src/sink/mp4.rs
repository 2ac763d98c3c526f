//! `mp4`: H.264 in an MP4 file, showing the overlay (or the plain frame without composite).
//!
//! `[[sinks]] type = "mp4", path = "../out/demo.mp4", bitrate_kbps = 4000, preset = "veryfast"`
//!
//! Crash-safe: the file is written as fragmented MP4 (an index first, then fragments of a
//! quarter second of video), so a kill, a power cut or a full disk loses at most the last
//! fragment and the few frames inside the encoder; on end of stream the file is finalized
//! into an ordinary MP4 that players seek normally.

use super::video::{Container, Muxer, VideoFileConfig};

/// The MP4 container (`mp4mux`).
#[derive(Clone, Debug)]
pub struct Mp4;

impl Container for Mp4 {
    const MUXER: Muxer = Muxer {
        factory: "mp4mux",
        properties: &[
            ("fragment-duration", "250"),
            ("fragment-mode", "first-moov-then-finalise"),
        ],
    };
}

pub type Mp4Config = VideoFileConfig<Mp4>;
