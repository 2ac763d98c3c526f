//! Bounded queues between stages, with the full-queue policy set per edge.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};

use super::FullPolicy;
use super::{Aborted, Control, StageMetrics};
use crate::frame::{Frame, StreamEnd};

/// How often a blocked sender looks up from its wait to see whether the pipeline aborted.
const ABORT_POLL: Duration = Duration::from_millis(50);

/// The sending end of a stage's input queue.
#[derive(Clone)]
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
                            self.consumer.record_drop(old.stream);
                            tracing::trace!(
                                stage = %self.consumer.name,
                                stream = old.stream,
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
        let depth = self.tx.len();
        self.consumer.queue_peak.fetch_max(depth, Ordering::Relaxed);
        self.consumer.queue_depth.store(depth, Ordering::Relaxed);
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
    /// For one of several sources: the stream id stamped on every frame sent.
    pub(crate) stream: Option<u32>,
    /// Applied to every frame sent downstream, in output order (after a parallel stage's
    /// reordering): work that must see frames in sequence, such as tracking.
    pub(crate) ordered: Option<OrderedStep>,
    /// For a stream that ends during the run: the frame sent last, held back until the next
    /// one or the stream's end, so the last frame can say how the stream ended.
    pub(crate) held: Option<Option<Frame>>,
}

/// A stage's in-order step on its output frames; see [`super::StageSpec::ordered`].
pub type OrderedStep = Box<dyn FnMut(&mut Frame) + Send>;

impl Output {
    /// The same output for source `stream` of several: frames sent get that stream id.
    pub(crate) fn for_stream(&self, stream: u32) -> Output {
        Output {
            edges: self.edges.clone(),
            collect: None,
            metrics: self.metrics.clone(),
            control: self.control.clone(),
            stream: Some(stream),
            ordered: None,
            held: None,
        }
    }

    /// The output for one stream of several that begin and end during the run: each frame
    /// goes downstream when the next is sent, the last with [`Output::end_stream`].
    pub(crate) fn for_ending_stream(&self, stream: u32) -> Output {
        Output {
            held: Some(None),
            ..self.for_stream(stream)
        }
    }

    /// Sends the frame held back, marked with how its stream ended (`None`: the run is
    /// stopping and the stream did not end). False when the stream sent no frame.
    pub fn end_stream(&mut self, end: Option<StreamEnd>) -> Result<bool, Aborted> {
        let Some(Some(mut last)) = self.held.as_mut().map(Option::take) else {
            return Ok(false);
        };
        last.end = end;
        self.send_now(last)?;
        Ok(true)
    }

    /// The run's streams that begin and end while it runs.
    pub fn streams(&self) -> &crate::runtime::StreamLog {
        &self.control.streams
    }

    /// The audio live sources pass beside the frames.
    pub fn audio(&self) -> &crate::runtime::AudioTracks {
        &self.control.audio
    }

    /// Sends a frame downstream. Fails only when the pipeline is aborting; the stage should
    /// then return the error so its thread ends.
    pub fn send(&mut self, mut frame: Frame) -> Result<(), Aborted> {
        if let Some(stream) = self.stream {
            frame.stream = stream;
        }
        if let Some(held) = &mut self.held {
            return match held.replace(frame) {
                Some(previous) => self.send_now(previous),
                None => Ok(()),
            };
        }
        self.send_now(frame)
    }

    fn send_now(&mut self, mut frame: Frame) -> Result<(), Aborted> {
        if let Some(collected) = &mut self.collect {
            collected.push(frame);
            return Ok(());
        }
        if let Some(step) = &mut self.ordered {
            step(&mut frame);
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

    /// The source got its stream back after an outage.
    pub fn count_reconnect(&self) {
        self.metrics.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a frame of `stream` this stage dropped itself (a sink that cannot wait).
    pub fn count_drop(&self, stream: u32) {
        self.metrics.record_drop(stream);
    }

    /// Counts one loss of the source's stream (it reconnects on its own).
    pub fn count_outage(&self) {
        self.metrics.outages.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts frames the source lost before it could hand them over (a live stream's
    /// capture buffer overflowed, or the network lost them): the source's own drops.
    pub fn count_source_drops(&self, n: u64) {
        self.metrics.record_drops(self.stream(), n);
    }

    /// The stream id of the frames this output sends (0 for a single source).
    pub fn stream(&self) -> u32 {
        self.stream.unwrap_or(0)
    }

    /// Tells the status line how many frames to expect (a file's duration times its rate).
    pub fn set_expected_frames(&self, n: u64) {
        if self.held.is_some() {
            // One file of several: the batch counts the frames of all of them.
            return;
        }
        self.control.expected.store(n, Ordering::Relaxed);
    }

    /// Adds frames to what the run expects in all (a batch's files, as it learns them).
    pub fn add_expected_frames(&self, n: u64) {
        self.control.add_expected_frames(n);
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
