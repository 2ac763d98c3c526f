//! The streams of a run that begin and end while it runs (the files of a batch, the messages
//! of a work queue): their names, their frames and how each ended. The source opens a stream
//! and says how its decoding ended; each per-stream output says when it finished that
//! stream's files. A stream is finished when both have spoken.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How a stream ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Decoded to its end, every output renamed into place.
    Complete,
    /// Decoding or an output failed: the reason. Its outputs were not kept.
    Failed(String),
}

/// One stream as the log knows it.
#[derive(Clone, Debug)]
pub struct StreamRecord {
    pub id: u32,
    /// What its outputs are named after (`{name}`).
    pub name: String,
    /// The input as the user gave it (a path or a URI).
    pub input: String,
    /// The file it reads, when it is one (video sinks copy its audio).
    pub path: Option<PathBuf>,
    /// Frames decoded.
    pub frames: u64,
    pub started: Instant,
    /// When the last of its outputs finished.
    pub finished: Option<Instant>,
    /// `None` while running or when the run stopped before it finished.
    pub outcome: Option<Outcome>,
    decoded: Option<Result<(), String>>,
    outputs_done: usize,
    failure: Option<String>,
}

impl StreamRecord {
    /// Seconds from opening the stream to its last output (or to now, while running).
    pub fn elapsed(&self) -> Duration {
        self.finished
            .unwrap_or_else(Instant::now)
            .duration_since(self.started)
    }
}

type Hook = Box<dyn Fn(&StreamRecord) + Send + Sync>;

#[derive(Default)]
struct Inner {
    streams: BTreeMap<u32, StreamRecord>,
    /// Per-stream outputs each stream must finish (file sinks with a placeholder).
    outputs: usize,
    /// Streams the run means to open, when known (for progress).
    planned: usize,
}

/// The run's streams; see the module documentation.
#[derive(Default)]
pub struct StreamLog {
    inner: Mutex<Inner>,
    /// Called once for each stream as it finishes (a work queue acknowledges it).
    on_finish: OnceLock<Hook>,
}

impl StreamLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each stream has `n` outputs to finish before it is done.
    pub fn set_outputs(&self, n: usize) {
        self.lock().outputs = n;
    }

    /// The run means to open `n` streams.
    pub fn set_planned(&self, n: usize) {
        self.lock().planned = n;
    }

    /// Calls `hook` for every stream as it finishes (set once).
    pub fn on_finish(&self, hook: impl Fn(&StreamRecord) + Send + Sync + 'static) {
        let _ = self.on_finish.set(Box::new(hook));
    }

    /// A stream begins.
    pub fn open(&self, id: u32, name: &str, input: &str, path: Option<PathBuf>) {
        self.lock().streams.insert(
            id,
            StreamRecord {
                id,
                name: name.to_owned(),
                input: input.to_owned(),
                path,
                frames: 0,
                started: Instant::now(),
                finished: None,
                outcome: None,
                decoded: None,
                outputs_done: 0,
                failure: None,
            },
        );
    }

    /// Its decoding ended after `frames` frames: to its end, or with an error.
    pub fn decoded(&self, id: u32, frames: u64, result: Result<(), String>) {
        self.update(id, |r| {
            r.frames = frames;
            r.decoded = Some(result);
        });
    }

    /// The run stopped while it was decoding, after `frames` frames: it stays unfinished.
    pub fn stopped(&self, id: u32, frames: u64) {
        if let Some(r) = self.lock().streams.get_mut(&id) {
            r.frames = frames;
        }
    }

    /// One of its outputs is in place, or failed and was removed.
    pub fn output_finished(&self, id: u32, result: Result<(), String>) {
        self.update(id, |r| {
            r.outputs_done += 1;
            if let Err(e) = result {
                r.failure.get_or_insert(e);
            }
        });
    }

    fn update(&self, id: u32, change: impl FnOnce(&mut StreamRecord)) {
        let finished = {
            let mut inner = self.lock();
            let outputs = inner.outputs;
            let Some(r) = inner.streams.get_mut(&id) else {
                return;
            };
            if r.outcome.is_some() {
                return;
            }
            change(r);
            let Some(decoded) = &r.decoded else {
                return;
            };
            // Outputs exist only for streams that sent frames.
            if r.frames > 0 && r.outputs_done < outputs {
                return;
            }
            r.outcome = Some(match (decoded, &r.failure) {
                (Err(e), _) | (Ok(()), Some(e)) => Outcome::Failed(e.clone()),
                (Ok(()), None) => Outcome::Complete,
            });
            r.finished = Some(Instant::now());
            r.clone()
        };
        if let Some(hook) = self.on_finish.get() {
            hook(&finished);
        }
    }

    /// The name of stream `id`, once opened.
    pub fn name(&self, id: u32) -> Option<String> {
        self.lock().streams.get(&id).map(|r| r.name.clone())
    }

    /// The file stream `id` reads, when it is one.
    pub fn path(&self, id: u32) -> Option<PathBuf> {
        self.lock().streams.get(&id).and_then(|r| r.path.clone())
    }

    /// Every stream opened so far, by id.
    pub fn records(&self) -> Vec<StreamRecord> {
        self.lock().streams.values().cloned().collect()
    }

    /// (finished, planned) when the run has a plan; for progress.
    pub fn progress(&self) -> Option<(usize, usize)> {
        let inner = self.lock();
        (inner.planned > 0).then(|| {
            let done = inner
                .streams
                .values()
                .filter(|r| r.outcome.is_some())
                .count();
            (done, inner.planned)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_finishes_when_decoding_and_every_output_have_finished() {
        let log = StreamLog::default();
        log.set_outputs(2);
        log.open(3, "a", "a.mp4", None);
        log.decoded(3, 10, Ok(()));
        log.output_finished(3, Ok(()));
        assert_eq!(log.records()[0].outcome, None);
        log.output_finished(3, Ok(()));
        assert_eq!(log.records()[0].outcome, Some(Outcome::Complete));
    }

    #[test]
    fn a_failed_output_or_decode_fails_the_stream() {
        let log = StreamLog::default();
        log.set_outputs(1);
        log.open(0, "a", "a.mp4", None);
        log.output_finished(0, Err("disk full".into()));
        log.decoded(0, 5, Ok(()));
        assert_eq!(
            log.records()[0].outcome,
            Some(Outcome::Failed("disk full".into()))
        );
        // A stream that failed before its first frame has no outputs to wait for.
        log.open(1, "b", "b.mp4", None);
        log.decoded(1, 0, Err("corrupt".into()));
        assert_eq!(
            log.records()[1].outcome,
            Some(Outcome::Failed("corrupt".into()))
        );
        assert_eq!(log.progress(), None);
    }
}
