//! Sinks: where finished frames go. Every sink sees every frame. Each file is one `type`
//! of `[[sinks]]` with its settings; `video` is the encoder `mp4` and `display` share.

mod audio;
pub mod display;
pub mod jsonl;
pub mod mkv;
pub mod mp4;
pub mod mqtt;
pub mod nats;
pub mod null;
pub mod png;
pub mod rtsp;
pub mod segments;
mod video;
pub mod whole;

pub use self::jsonl::JsonlSink;
pub use self::null::NullSink;
pub use self::png::{write_png, write_png16, PngContent, PngSink};
pub use self::video::{VideoSink, VideoSinkKind};

use crate::runtime::Output;

/// A broker topic or subject for a frame of `stream`: `{stream}` is its id, `{name}` its
/// input's name (with many input files), with characters brokers treat as wildcards or
/// separators of words replaced by `_`.
pub(crate) fn topic(template: &str, stream: u32, out: &Output) -> String {
    let id = stream.to_string();
    let name = out.streams().name(stream).unwrap_or_else(|| id.clone());
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_whitespace() || "+#*>".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    template.replace("{stream}", &id).replace("{name}", &name)
}
