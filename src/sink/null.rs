//! `null`: discards frames; for measuring the rest of the pipeline.
//!
//! `[[sinks]] type = "null"`

use std::path::Path;

use serde::Deserialize;

use crate::component::{BuildContext, CheckContext, Component, SinkComponent};
use crate::config::Problems;
use crate::frame::Frame;
use crate::runtime::{BoxError, Output, QueueConfig, Stage};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NullConfig {
    #[serde(default)]
    pub queue: QueueConfig,
}

impl Component for NullConfig {
    fn check(&mut self, _cx: &CheckContext<'_>, _p: &mut Problems) {}

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SinkComponent for NullConfig {
    fn queue(&self) -> QueueConfig {
        self.queue
    }

    fn build(
        &self,
        _cx: &BuildContext<'_>,
        _output: Option<&Path>,
    ) -> Result<Box<dyn Stage>, BoxError> {
        Ok(Box::new(NullSink))
    }
}

/// Discards frames.
pub struct NullSink;

impl Stage for NullSink {
    fn process(&mut self, _frame: Frame, _out: &mut Output) -> Result<(), BoxError> {
        Ok(())
    }
}
