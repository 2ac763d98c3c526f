//! delay: holds every frame for a fixed time, standing in for a slow model.
//!
//! `[[transforms]] type = "delay", ms = 120`
//!
//! Useful to see what a live pipeline does when a stage is slower than the source (frames
//! are dropped, latency stays bounded) before the real model is ready, and in tests.

use std::time::Duration;

use serde::Deserialize;

use crate::component::{BuildContext, CheckContext, Component, TransformComponent, Workers};
use crate::config::Problems;
use crate::frame::Frame;
use crate::runtime::{BoxError, Output, QueueConfig, Stage};

/// Holds every frame for `ms` milliseconds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayConfig {
    /// Milliseconds per frame.
    pub ms: u64,
    #[serde(default)]
    pub queue: QueueConfig,
}

impl Component for DelayConfig {
    fn check(&mut self, _cx: &CheckContext<'_>, p: &mut Problems) {
        p.range("ms", self.ms, 0, 60_000);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl TransformComponent for DelayConfig {
    fn queue(&self) -> QueueConfig {
        self.queue
    }

    fn build(&self, _cx: &BuildContext<'_>) -> Result<Workers, BoxError> {
        Ok(Workers::one(Box::new(Delay(Duration::from_millis(
            self.ms,
        )))))
    }
}

pub struct Delay(pub Duration);

impl Stage for Delay {
    fn process(&mut self, frame: Frame, out: &mut Output) -> Result<(), BoxError> {
        std::thread::sleep(self.0);
        out.send(frame)?;
        Ok(())
    }
}
