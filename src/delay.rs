//! delay: holds every frame for a fixed time, standing in for a slow model.
//!
//! `[[transforms]] type = "delay", ms = 120`
//!
//! Useful to see what a live pipeline does when a stage is slower than the source (frames
//! are dropped, latency stays bounded) before the real model is ready, and in tests.

use std::time::Duration;

use crate::frame::Frame;
use crate::runtime::{BoxError, Output, Stage};

pub struct Delay(pub Duration);

impl Stage for Delay {
    fn process(&mut self, frame: Frame, out: &mut Output) -> Result<(), BoxError> {
        std::thread::sleep(self.0);
        out.send(frame)?;
        Ok(())
    }
}
