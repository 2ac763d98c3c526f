//! What the runtime runs: sources, which produce frames, and stages (transforms and sinks),
//! which handle them.

use std::thread;

use super::metrics::Summary;
use super::Output;
use crate::frame::Frame;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Returned by [`Output::send`] when the pipeline is aborting.
#[derive(Debug, thiserror::Error)]
#[error("pipeline aborted")]
pub struct Aborted;

/// A transform or a sink.
pub trait Stage: Send {
    /// Acquires heavy resources (model sessions, encoders); runs on the stage's own thread.
    fn start(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Handles one frame, sending zero or more frames downstream.
    fn process(&mut self, frame: Frame, out: &mut Output) -> Result<(), BoxError>;

    /// Handles frames that were already waiting together (up to the stage's `batch`);
    /// stages that gain from batching (inference) override this.
    fn process_batch(&mut self, frames: Vec<Frame>, out: &mut Output) -> Result<(), BoxError> {
        for frame in frames {
            self.process(frame, out)?;
        }
        Ok(())
    }

    /// Upstream has closed: emit anything buffered and finalize outputs.
    fn flush(&mut self, _out: &mut Output) -> Result<(), BoxError> {
        Ok(())
    }

    /// Closing figures for the run's summary, asked once after `flush`.
    fn summary(&self) -> Option<Summary> {
        None
    }
}

/// Produces frames.
pub trait Source: Send {
    /// Sends frames until end of stream, or until [`Output::stop_requested`].
    fn run(&mut self, out: &mut Output) -> Result<(), BoxError>;
}

/// Several sources at once, each on its own thread: frames of source `i` carry stream id
/// `i`. Ends when every source has ended; the first failure stops them all.
pub struct Merge(pub Vec<Box<dyn Source>>);

impl Source for Merge {
    fn run(&mut self, out: &mut Output) -> Result<(), BoxError> {
        let control = out.control.clone();
        let failed = thread::scope(|scope| {
            let handles: Vec<_> = self
                .0
                .iter_mut()
                .enumerate()
                .map(|(i, source)| {
                    let mut out = out.for_stream(i as u32);
                    let spawned = thread::Builder::new()
                        .name(format!("segstream-decode-{i}"))
                        .spawn_scoped(scope, move || {
                            let result = source.run(&mut out);
                            if let Err(e) = result {
                                if !e.is::<Aborted>() {
                                    // Fail now, so the other sources stop too.
                                    out.control.fail("decode", e);
                                }
                                return true;
                            }
                            false
                        });
                    if let Err(e) = &spawned {
                        // The sources already started see the abort and stop.
                        control.fail(
                            "decode",
                            Box::new(super::PipelineError::Spawn {
                                stage: format!("decode {i}"),
                                reason: e.to_string(),
                            }),
                        );
                    }
                    spawned
                })
                .collect();
            let mut failed = false;
            for h in handles {
                match h {
                    Ok(h) => match h.join() {
                        Ok(f) => failed |= f,
                        Err(panic) => std::panic::resume_unwind(panic),
                    },
                    Err(_) => failed = true,
                }
            }
            failed
        });
        if failed {
            return Err(Box::new(Aborted));
        }
        Ok(())
    }
}
