//! Sinks: where finished frames go. Every sink sees every frame. Each file is one `type`
//! of `[[sinks]]` with its settings; `video` is the encoder `mp4` and `display` share.

mod audio;
pub mod display;
pub mod jsonl;
pub mod mkv;
pub mod mp4;
pub mod mqtt;
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

use std::collections::BTreeMap;

use crate::frame::Frame;
use crate::runtime::{BoxError, Output, Stage};

/// One sink per stream, made on the stream's first frame: `out/cam{stream}.mp4` gives
/// `out/cam0.mp4`, `out/cam1.mp4`, ...
pub struct PerStream {
    make: Box<dyn FnMut(u32) -> Box<dyn Stage> + Send>,
    sinks: BTreeMap<u32, Box<dyn Stage>>,
}

impl PerStream {
    pub fn new(make: impl FnMut(u32) -> Box<dyn Stage> + Send + 'static) -> Self {
        PerStream {
            make: Box::new(make),
            sinks: BTreeMap::new(),
        }
    }
}

impl Stage for PerStream {
    fn process(&mut self, frame: Frame, out: &mut Output) -> Result<(), BoxError> {
        let sink = match self.sinks.entry(frame.stream) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let mut sink = (self.make)(frame.stream);
                sink.start()?;
                e.insert(sink)
            }
        };
        sink.process(frame, out)
    }

    /// Finalizes every stream's output, even when one of them fails.
    fn flush(&mut self, out: &mut Output) -> Result<(), BoxError> {
        let mut first = Ok(());
        for sink in self.sinks.values_mut() {
            let result = sink.flush(out);
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}
