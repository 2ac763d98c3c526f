//! Sinks: where finished frames go. Every sink sees every frame. Each file is one `type`
//! of `[[sinks]]` with its settings; `video` is the encoder `mp4` and `display` share.

mod audio;
mod broker;
pub mod coco;
pub mod display;
pub mod jsonl;
pub mod mkv;
pub mod mp4;
pub mod mqtt;
pub mod nats;
pub mod null;
pub mod png;
mod preset;
pub mod rtsp;
pub mod segments;
mod video;
pub mod whole;

pub use self::jsonl::JsonlSink;
pub use self::null::NullSink;
pub use self::png::{write_png, write_png16, PngContent, PngSink};
pub use self::preset::Preset;
pub use self::video::{VideoSink, VideoSinkKind};
