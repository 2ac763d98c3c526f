//! `mkv`: H.264 in a Matroska file. Matroska writes its clusters as it goes (one about every
//! half second of video), so a file cut short by a crash or a full disk still plays up to its
//! last cluster.
//!
//! `[[sinks]] type = "mkv", path = "../out/demo.mkv", bitrate_kbps = 4000, preset = "veryfast"`

use super::video::{Container, Muxer, VideoFileConfig};

/// The Matroska container (`matroskamux`).
#[derive(Clone, Debug)]
pub struct Mkv;

impl Container for Mkv {
    const MUXER: Muxer = Muxer {
        factory: "matroskamux",
        properties: &[],
    };
}

pub type MkvConfig = VideoFileConfig<Mkv>;
