//! State shared by every stage of one run: stop and abort flags, the first error, the run's
//! counters and the stages' closing figures.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::{AudioTracks, BoxError, RunMetrics, StreamLog, Summary};

/// State shared by every stage of one run.
#[derive(Default)]
pub struct Control {
    /// Frames with a smaller sequence number are warm-up: processed, not measured.
    pub(super) warmup: u64,
    pub(super) stop: AtomicBool,
    pub(super) abort: AtomicBool,
    pub(super) error: Mutex<Option<PipelineError>>,
    /// The running pipeline's counters, once it started.
    pub(super) metrics: OnceLock<Arc<RunMetrics>>,
    /// Frames the source expects to produce (0: unknown).
    pub(super) expected: AtomicU64,
    /// Stages' closing figures, as they finish.
    pub(super) summaries: Mutex<Vec<(String, Summary)>>,
    /// Streams that begin and end during the run (a batch's files).
    pub streams: StreamLog,
    /// Audio that live sources pass beside the frames, per stream.
    pub audio: AudioTracks,
}

impl Control {
    /// A control whose first `frames` frames are not measured (for benchmarks).
    pub fn with_warmup(frames: u64) -> Self {
        Control {
            warmup: frames,
            ..Control::default()
        }
    }

    /// Asks the source to stop; the rest of the pipeline drains.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The running pipeline's counters, for status lines and the metrics endpoint.
    pub fn metrics(&self) -> Option<Arc<RunMetrics>> {
        self.metrics.get().cloned()
    }

    /// Frames the source expects to produce, when it knows (files of known duration).
    pub fn expected_frames(&self) -> Option<u64> {
        Some(self.expected.load(Ordering::Relaxed)).filter(|n| *n > 0)
    }

    /// Adds to the frames the run expects (a batch adds each file's as it learns them).
    pub fn add_expected_frames(&self, n: u64) {
        self.expected.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn is_aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    pub(super) fn fail(&self, stage: &str, source: BoxError) {
        self.abort.store(true, Ordering::Relaxed);
        let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
        // The first error is the cause; later ones are usually its consequences.
        if slot.is_none() {
            *slot = Some(PipelineError::Stage {
                stage: stage.to_owned(),
                source,
            });
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{stage}: {source}")]
    Stage { stage: String, source: BoxError },
    #[error("{stage}: thread panicked: {message}")]
    Panic { stage: String, message: String },
    #[error("{stage}: cannot start a thread ({reason}); the machine has run out of threads or memory, so run fewer stages, sinks or workers")]
    Spawn { stage: String, reason: String },
}
