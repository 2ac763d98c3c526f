//! `test`: GStreamer's `videotestsrc`, for tests and demos.
//!
//! `[source] type = "test", pattern = "ball", frames = 300`; on the command line
//! `--input test:ball`.

use serde::Deserialize;

use super::gst::{check_test_pattern, Decode, Input};
use super::synthetic::check_generated;
use crate::component::{BuildContext, CheckContext, Component, SourceComponent};
use crate::config::Problems;
use crate::runtime::{BoxError, Source};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TestConfig {
    /// A `videotestsrc` pattern name (`smpte`, `ball`, `snow`, ...).
    #[serde(default = "default_pattern")]
    pub pattern: String,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_fps")]
    pub fps: u32,
    /// Number of frames before end of stream; endless when absent.
    #[serde(default)]
    pub frames: Option<u64>,
    /// Pace frames in real time, like a camera.
    #[serde(default)]
    pub live: bool,
}

fn default_pattern() -> String {
    "smpte".into()
}
fn default_width() -> u32 {
    640
}
fn default_height() -> u32 {
    360
}
fn default_fps() -> u32 {
    30
}

impl Component for TestConfig {
    fn check(&mut self, _cx: &CheckContext<'_>, p: &mut Problems) {
        check_generated(p, self.width, self.height, self.fps);
        if self.frames == Some(0) {
            p.push("frames", "0 is out of range (expected at least 1)");
        }
        if let Err(message) = check_test_pattern(&self.pattern) {
            p.push("pattern", message);
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SourceComponent for TestConfig {
    fn from_input(input: &str) -> Option<Result<Self, String>> {
        let pattern = input.strip_prefix("test:")?;
        Some(Ok(TestConfig {
            pattern: if pattern.is_empty() {
                default_pattern()
            } else {
                pattern.to_owned()
            },
            width: default_width(),
            height: default_height(),
            fps: default_fps(),
            frames: None,
            live: false,
        }))
    }

    fn is_live(&self) -> bool {
        self.live
    }

    fn describe(&self) -> String {
        format!("test:{}", self.pattern)
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, BoxError> {
        let input = Input::Test {
            pattern: self.pattern.clone(),
            width: self.width,
            height: self.height,
            fps: self.fps,
            frames: self.frames,
            live: self.live,
        };
        Ok(Box::new(Decode::new(input, cx.frames)))
    }
}
