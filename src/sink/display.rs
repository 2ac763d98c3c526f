//! `display`: a window on the local display.
//!
//! `[[sinks]] type = "display"`

use std::path::Path;

use serde::Deserialize;

use super::video::{VideoSink, VideoSinkKind};
use crate::component::{BuildContext, CheckContext, Component, SinkComponent};
use crate::config::Problems;
use crate::runtime::{BoxError, QueueConfig, Stage};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayConfig {
    #[serde(default)]
    pub queue: QueueConfig,
}

impl Component for DisplayConfig {
    fn check(&mut self, _cx: &CheckContext<'_>, p: &mut Problems) {
        if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
            p.push(
                "",
                "no display available (DISPLAY and WAYLAND_DISPLAY are unset); use an mp4, \
                 png or null sink",
            );
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SinkComponent for DisplayConfig {
    fn queue(&self) -> QueueConfig {
        self.queue
    }

    fn build(
        &self,
        _cx: &BuildContext<'_>,
        _output: Option<&Path>,
    ) -> Result<Box<dyn Stage>, BoxError> {
        Ok(Box::new(VideoSink::new(VideoSinkKind::Display)))
    }
}
