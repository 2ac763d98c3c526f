//! `mp4`: H.264 in an MP4 file, showing the overlay (or the plain frame without composite).
//!
//! `[[sinks]] type = "mp4", path = "../out/demo.mp4", bitrate_kbps = 4000`

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::video::{VideoSink, VideoSinkKind};
use crate::component::{BuildContext, CheckContext, Component, SinkComponent};
use crate::config::Problems;
use crate::runtime::{BoxError, QueueConfig, Stage};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mp4Config {
    pub path: PathBuf,
    /// Target bitrate in kbit/s.
    #[serde(default = "default_bitrate")]
    pub bitrate_kbps: u32,
    #[serde(default)]
    pub queue: QueueConfig,
}

fn default_bitrate() -> u32 {
    4000
}

impl Component for Mp4Config {
    fn check(&mut self, cx: &CheckContext<'_>, p: &mut Problems) {
        self.path = cx.resolve(&self.path);
        p.range("bitrate_kbps", self.bitrate_kbps, 64, 200_000);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SinkComponent for Mp4Config {
    fn queue(&self) -> QueueConfig {
        self.queue
    }

    fn output(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn set_output(&mut self, path: PathBuf) -> bool {
        self.path = path;
        true
    }

    fn build(
        &self,
        _cx: &BuildContext<'_>,
        output: Option<&Path>,
    ) -> Result<Box<dyn Stage>, BoxError> {
        Ok(Box::new(VideoSink::new(VideoSinkKind::Mp4 {
            path: output.unwrap_or(&self.path).to_owned(),
            bitrate_kbps: self.bitrate_kbps,
        })))
    }
}
