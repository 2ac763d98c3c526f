//! Bounded queues between stages, with the full-queue policy set per edge.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};

use super::{Aborted, Control, StageMetrics};
use crate::config::FullPolicy;
use crate::frame::Frame;

/// How often a blocked sender looks up from its wait to see whether the pipeline aborted.
const ABORT_POLL: Duration = Duration::from_millis(50);

/// The sending end of a stage's input queue.
pub(crate) struct EdgeTx {
    tx: Sender<Frame>,
    /// For `DropOldest`: a receiver used to discard the oldest queued frame.
    drain: Option<Receiver<Frame>>,
    /// The receiving stage's metrics: drops and queue depth are counted there.
    consumer: Arc<StageMetrics>,
}

/// Creates a queue with the given capacity and policy.
pub(crate) fn edge(
    capacity: usize,
    policy: FullPolicy,
    consumer: Arc<StageMetrics>,
) -> (EdgeTx, Receiver<Frame>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let drain = (policy == FullPolicy::DropOldest).then(|| rx.clone());
    (
        EdgeTx {
            tx,
            drain,
            consumer,
        },
        rx,
    )
}

impl EdgeTx {
    fn send(&self, mut frame: Frame, control: &Control) -> Result<(), Aborted> {
        match &self.drain {
            None => loop {
                match self.tx.send_timeout(frame, ABORT_POLL) {
                    Ok(()) => break,
                    Err(SendTimeoutError::Timeout(f)) => {
                        if control.is_aborted() {
                            return Err(Aborted);
                        }
                        frame = f;
                    }
                    Err(SendTimeoutError::Disconnected(_)) => return Err(Aborted),
                }
            },
            Some(drain) => loop {
                match self.tx.try_send(frame) {
                    Ok(()) => break,
                    Err(TrySendError::Full(f)) => {
                        if let Ok(old) = drain.try_recv() {
                            self.consumer.dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::trace!(
                                stage = %self.consumer.name,
                                seq = old.seq,
                                "Frame dropped: queue full."
                            );
                        }
                        frame = f;
                    }
                    Err(TrySendError::Disconnected(_)) => return Err(Aborted),
                }
            },
        }
        self.consumer
            .queue_peak
            .fetch_max(self.tx.len(), Ordering::Relaxed);
        Ok(())
    }
}

/// Where a stage puts its results: every downstream edge gets every frame (fan-out shares
/// pixels through `Arc`s, it does not copy them).
pub struct Output {
    pub(crate) edges: Vec<EdgeTx>,
    /// For parallel workers: frames are collected here and put in order by the runtime.
    pub(crate) collect: Option<Vec<Frame>>,
    pub(crate) metrics: Arc<StageMetrics>,
    pub(crate) control: Arc<Control>,
}

impl Output {
    /// Sends a frame downstream. Fails only when the pipeline is aborting; the stage should
    /// then return the error so its thread ends.
    pub fn send(&mut self, frame: Frame) -> Result<(), Aborted> {
        if let Some(collected) = &mut self.collect {
            collected.push(frame);
            return Ok(());
        }
        self.metrics.frames_out.fetch_add(1, Ordering::Relaxed);
        let Some((last, rest)) = self.edges.split_last() else {
            return Ok(());
        };
        for edge in rest {
            edge.send(frame.clone(), &self.control)?;
        }
        last.send(frame, &self.control)
    }

    /// Counts a frame the stage passed on without doing its work (shown in the summary).
    pub fn count_skipped(&self) {
        self.metrics.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the user asked the pipeline to stop (Ctrl-C, SIGTERM, frame limit).
    pub fn stop_requested(&self) -> bool {
        self.control.stop.load(Ordering::Relaxed) || self.control.is_aborted()
    }
}
