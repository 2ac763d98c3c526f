//! Sinks: where finished frames go. Every sink sees every frame.

mod jsonl;
mod png;
mod video;

pub use self::jsonl::JsonlSink;
pub use self::png::{write_png, write_png16, PngSink};
pub use self::video::{VideoSink, VideoSinkKind};

use crate::frame::Frame;
use crate::runtime::{BoxError, Output, Stage};

/// Discards frames; for measuring the rest of the pipeline.
pub struct NullSink;

impl Stage for NullSink {
    fn process(&mut self, _frame: Frame, _out: &mut Output) -> Result<(), BoxError> {
        Ok(())
    }
}
