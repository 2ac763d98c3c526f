//! Stages on their own threads, joined by bounded queues.
//!
//! The source runs until end of stream or a stop request and then drops its output; every
//! stage downstream finishes its queue, flushes and drops its own output in turn, so shutdown
//! cascades without flags. A fatal error anywhere aborts the pipeline: upstream stops at once,
//! downstream drains what it already has so outputs are finalized.

mod edge;
mod metrics;
mod queue;
mod status;

pub use edge::{OrderedStep, Output};
pub use metrics::{
    write_stage_table, LatencyMetrics, RunReport, StageMetrics, StageRow, StageSummary, Summary,
};
pub use queue::{FullPolicy, QueueConfig, MAX_CAPACITY};
pub use status::{memory, RunMetrics, Status, StatusMark};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::frame::Frame;
use edge::{edge, EdgeTx};

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
        let failed = thread::scope(|scope| {
            let handles: Vec<_> = self
                .0
                .iter_mut()
                .enumerate()
                .map(|(i, source)| {
                    let mut out = out.for_stream(i as u32);
                    thread::Builder::new()
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
                        })
                        .expect("spawn source thread")
                })
                .collect();
            let mut failed = false;
            for h in handles {
                match h.join() {
                    Ok(f) => failed |= f,
                    Err(panic) => std::panic::resume_unwind(panic),
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

/// State shared by every stage of one run.
#[derive(Default)]
pub struct Control {
    /// Frames with a smaller sequence number are warm-up: processed, not measured.
    warmup: u64,
    stop: AtomicBool,
    abort: AtomicBool,
    error: Mutex<Option<PipelineError>>,
    /// The running pipeline's counters, once it started.
    metrics: OnceLock<Arc<RunMetrics>>,
    /// Frames the source expects to produce (0: unknown).
    expected: AtomicU64,
    /// Stages' closing figures, as they finish.
    summaries: Mutex<Vec<(String, Summary)>>,
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

    fn is_aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    fn fail(&self, stage: &str, source: BoxError) {
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
}

/// A stage with its name and the queue in front of it.
pub struct StageSpec {
    pub name: String,
    /// One instance per worker thread. With several, frames are processed in parallel and
    /// put back in arrival order before they go downstream.
    pub workers: Vec<Box<dyn Stage>>,
    /// Most frames handed to one `process_batch` call: only frames already queued are
    /// batched, so batching never waits for more input.
    pub batch: usize,
    pub capacity: usize,
    pub policy: FullPolicy,
    /// Run on every output frame in order, after the workers (tracking needs order).
    pub ordered: Option<OrderedStep>,
}

impl StageSpec {
    /// A single-worker, unbatched stage.
    pub fn single(name: &str, stage: Box<dyn Stage>, capacity: usize, policy: FullPolicy) -> Self {
        StageSpec {
            name: name.to_owned(),
            workers: vec![stage],
            batch: 1,
            capacity,
            policy,
            ordered: None,
        }
    }
}

/// Runs `source -> transforms... -> sinks` (every sink receives every frame) to the end.
pub fn run(
    source: Box<dyn Source>,
    transforms: Vec<StageSpec>,
    sinks: Vec<StageSpec>,
    control: Arc<Control>,
) -> Result<RunReport, PipelineError> {
    let started = Instant::now();
    let latency = Arc::new(LatencyMetrics::default());
    let source_metrics = Arc::new(StageMetrics::new("decode"));
    let mut all_metrics = vec![source_metrics.clone()];
    let mut handles = Vec::new();

    // Spawn from the sinks backwards so each stage knows the queues it feeds.
    let mut downstream: Vec<EdgeTx> = Vec::new();
    for (i, spec) in sinks.into_iter().enumerate() {
        let metrics = Arc::new(StageMetrics::new(format!("sink {}", spec.name)));
        let (tx, rx) = edge(spec.capacity, spec.policy, metrics.clone());
        downstream.push(tx);
        let out = Output {
            collect: None,
            edges: Vec::new(),
            metrics: metrics.clone(),
            control: control.clone(),
            stream: None,
            ordered: None,
        };
        // Every sink sees every frame: the first one stands for the pipeline's output.
        handles.push(spawn_stage(
            spec,
            rx,
            out,
            (i == 0).then(|| latency.clone()),
        ));
        all_metrics.push(metrics);
    }
    let mut transform_metrics = Vec::new();
    for spec in transforms.into_iter().rev() {
        let metrics = Arc::new(StageMetrics::new(spec.name.clone()));
        let (tx, rx) = edge(spec.capacity, spec.policy, metrics.clone());
        let edges = std::mem::replace(&mut downstream, vec![tx]);
        let out = Output {
            collect: None,
            edges,
            metrics: metrics.clone(),
            control: control.clone(),
            stream: None,
            ordered: None,
        };
        handles.push(spawn_stage(spec, rx, out, None));
        transform_metrics.push(metrics);
    }
    transform_metrics.reverse();
    let output = 1 + transform_metrics.len();
    all_metrics.splice(1..1, transform_metrics);
    let _ = control.metrics.set(Arc::new(RunMetrics {
        stages: all_metrics.clone(),
        latency: latency.clone(),
        output,
        started,
    }));

    let mut out = Output {
        collect: None,
        edges: downstream,
        metrics: source_metrics,
        control: control.clone(),
        stream: None,
        ordered: None,
    };
    let mut source = source;
    let source_handle = thread::Builder::new()
        .name("segstream-decode".into())
        .spawn(move || {
            if let Err(e) = source.run(&mut out) {
                if !e.is::<Aborted>() {
                    out.control.fail("decode", e);
                }
            }
            // Dropping `out` closes the first queue: end of stream flows downstream.
        })
        .expect("spawn source thread");
    handles.push(("decode".to_owned(), source_handle));

    for (name, handle) in handles {
        if let Err(panic) = handle.join() {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            let mut slot = control.error.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(PipelineError::Panic {
                stage: name,
                message,
            });
        }
    }

    if let Some(err) = control
        .error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        return Err(err);
    }
    let stages: Vec<StageSummary> = all_metrics.iter().map(|m| m.snapshot()).collect();
    let frames_out = stages.last().map(|s| s.frames_in).unwrap_or(0);
    Ok(RunReport {
        stages,
        wall: started.elapsed(),
        frames_out,
        latency: latency.percentiles(),
        steady_fps: latency.steady_fps(),
        interrupted: control.stop_requested(),
        summaries: {
            let mut s =
                std::mem::take(&mut *control.summaries.lock().unwrap_or_else(|e| e.into_inner()));
            s.sort_by(|a, b| a.0.cmp(&b.0));
            s.into_iter().map(|(_, s)| s).collect()
        },
    })
}

/// Takes the next frames from a stage's input: blocks for the first, then adds whatever is
/// already queued, up to `batch`.
fn take(rx: &Receiver<Frame>, batch: usize, metrics: &StageMetrics) -> Option<Vec<Frame>> {
    let first = rx.recv().ok()?;
    let mut frames = vec![first];
    while frames.len() < batch {
        match rx.try_recv() {
            Ok(f) => frames.push(f),
            Err(_) => break,
        }
    }
    metrics.queue_depth.store(rx.len(), Ordering::Relaxed);
    Some(frames)
}

/// Processes one batch, recording busy time per frame and, for sinks, latency.
fn process(
    stage: &mut dyn Stage,
    frames: Vec<Frame>,
    out: &mut Output,
    latency: &Option<Arc<LatencyMetrics>>,
) -> Result<(), BoxError> {
    let n = frames.len() as u32;
    out.metrics.frames_in.fetch_add(n as u64, Ordering::Relaxed);
    let warmup = out.control.warmup;
    let measured: Vec<Instant> = frames
        .iter()
        .filter(|f| f.seq >= warmup)
        .map(|f| f.captured)
        .collect();
    let t = Instant::now();
    stage.process_batch(frames, out)?;
    let busy = t.elapsed() / n.max(1);
    for c in measured {
        out.metrics.record_busy(busy);
        if let Some(latency) = latency {
            latency.record(c.elapsed());
        }
    }
    Ok(())
}

/// Reports a stage's failure (unless it only saw the abort) and still lets it finalize;
/// then keeps its closing figures.
fn finish(stage: &mut dyn Stage, result: Result<(), BoxError>, out: &mut Output) {
    if let Err(e) = result {
        if !e.is::<Aborted>() {
            out.control.fail(&out.metrics.name, e);
        }
        // Still give the stage the chance to finalize what it already wrote.
        let _ = stage.flush(out);
    }
    if let Some(summary) = stage.summary() {
        let mut all = out
            .control
            .summaries
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        all.push((out.metrics.name.clone(), summary));
    }
}

fn spawn_stage(
    spec: StageSpec,
    rx: Receiver<Frame>,
    out: Output,
    latency: Option<Arc<LatencyMetrics>>,
) -> (String, thread::JoinHandle<()>) {
    let label = out.metrics.name.clone();
    let StageSpec {
        name,
        mut workers,
        batch,
        ordered,
        ..
    } = spec;
    let mut out = out;
    out.ordered = ordered;
    let batch = batch.max(1);
    if workers.len() == 1 {
        let mut stage = workers.pop().expect("one worker");
        let handle = thread::Builder::new()
            .name(format!("segstream-{name}"))
            .spawn(move || {
                let result = (|| -> Result<(), BoxError> {
                    stage.start()?;
                    while let Some(frames) = take(&rx, batch, &out.metrics) {
                        process(stage.as_mut(), frames, &mut out, &latency)?;
                    }
                    stage.flush(&mut out)
                })();
                // Dropping the receiver lets upstream see a dead stage instead of waiting.
                drop(rx);
                finish(stage.as_mut(), result, &mut out);
            })
            .expect("spawn stage thread");
        return (label, handle);
    }
    (
        label,
        spawn_parallel(name, workers, batch, rx, out, latency),
    )
}

/// What a worker hands the reorderer: the frames produced for one input, by arrival ticket,
/// or what a worker's flush produced.
enum Done {
    Ticket(u64, Vec<Frame>),
    Flush(Vec<Frame>),
}

/// Several workers share one input queue; each frame gets an arrival ticket, and a reorder
/// thread sends results downstream in ticket order.
fn spawn_parallel(
    name: String,
    workers: Vec<Box<dyn Stage>>,
    batch: usize,
    rx: Receiver<Frame>,
    mut out: Output,
    latency: Option<Arc<LatencyMetrics>>,
) -> thread::JoinHandle<()> {
    let input = Arc::new(Mutex::new((rx, 0u64)));
    let (done_tx, done_rx) = crossbeam_channel::bounded::<Done>(workers.len() * batch * 2);
    let mut threads = Vec::new();
    for (i, mut stage) in workers.into_iter().enumerate() {
        let input = input.clone();
        let done_tx = done_tx.clone();
        let mut collect = Output {
            collect: Some(Vec::new()),
            edges: Vec::new(),
            metrics: out.metrics.clone(),
            control: out.control.clone(),
            stream: None,
            ordered: None,
        };
        let latency = latency.clone();
        let handle = thread::Builder::new()
            .name(format!("segstream-{name}-{i}"))
            .spawn(move || {
                let result = (|| -> Result<(), BoxError> {
                    stage.start()?;
                    loop {
                        // The lock is held while waiting, so tickets follow arrival order.
                        let taken = {
                            let mut guard = input.lock().unwrap_or_else(|e| e.into_inner());
                            let Some(frames) = take(&guard.0, batch, &collect.metrics) else {
                                break;
                            };
                            let first = guard.1;
                            guard.1 += frames.len() as u64;
                            (first, frames)
                        };
                        let (first, frames) = taken;
                        let keys: Vec<(u32, u64)> =
                            frames.iter().map(|f| (f.stream, f.seq)).collect();
                        process(stage.as_mut(), frames, &mut collect, &latency)?;
                        let mut produced = collect.collect.replace(Vec::new()).unwrap_or_default();
                        for (k, key) in keys.iter().enumerate() {
                            let last = k + 1 == keys.len();
                            // Outputs belong to the input with the same stream and sequence
                            // number; anything else goes with the batch's last input.
                            let mine: Vec<Frame> = if last {
                                std::mem::take(&mut produced)
                            } else {
                                let (m, rest) = produced
                                    .into_iter()
                                    .partition(|f| (f.stream, f.seq) == *key);
                                produced = rest;
                                m
                            };
                            if done_tx.send(Done::Ticket(first + k as u64, mine)).is_err() {
                                return Err(Box::new(Aborted));
                            }
                        }
                    }
                    stage.flush(&mut collect)?;
                    let flushed = collect.collect.replace(Vec::new()).unwrap_or_default();
                    let _ = done_tx.send(Done::Flush(flushed));
                    Ok(())
                })();
                finish(stage.as_mut(), result, &mut collect);
            })
            .expect("spawn worker thread");
        threads.push(handle);
    }
    drop(done_tx);
    thread::Builder::new()
        .name(format!("segstream-{name}-order"))
        .spawn(move || {
            let mut next = 0u64;
            let mut waiting = std::collections::BTreeMap::new();
            let mut flushed = Vec::new();
            // After an abort `send` fails; the rest is dropped, as everywhere downstream.
            let send_all = |frames: Vec<Frame>, out: &mut Output| {
                let _ = frames.into_iter().try_for_each(|f| out.send(f));
            };
            for done in done_rx.iter() {
                match done {
                    Done::Ticket(t, frames) => {
                        waiting.insert(t, frames);
                        while let Some(frames) = waiting.remove(&next) {
                            send_all(frames, &mut out);
                            next += 1;
                        }
                    }
                    Done::Flush(frames) => flushed.extend(frames),
                }
            }
            // A failed worker leaves gaps; send what there is, still in order.
            for (_, frames) in std::mem::take(&mut waiting) {
                send_all(frames, &mut out);
            }
            send_all(flushed, &mut out);
            for t in threads {
                if let Err(panic) = t.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        })
        .expect("spawn reorder thread")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::RgbImage;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    /// Emits `n` tiny frames as fast as it can.
    struct Counter(u64);

    impl Source for Counter {
        fn run(&mut self, out: &mut Output) -> Result<(), BoxError> {
            for seq in 0..self.0 {
                if out.stop_requested() {
                    break;
                }
                out.send(Frame::new(0, seq, RgbImage::new(1, 1, vec![0; 3])))?;
            }
            Ok(())
        }
    }

    /// Passes frames on after `delay`.
    struct Slow(Duration);

    impl Stage for Slow {
        fn process(&mut self, frame: Frame, out: &mut Output) -> Result<(), BoxError> {
            std::thread::sleep(self.0);
            out.send(frame)?;
            Ok(())
        }
    }

    /// Records the sequence numbers it sees; fails on `fail_at`.
    struct Collect {
        seen: Arc<Mutex<Vec<u64>>>,
        fail_at: Option<u64>,
        flushed: Arc<AtomicU64>,
    }

    impl Stage for Collect {
        fn process(&mut self, frame: Frame, _out: &mut Output) -> Result<(), BoxError> {
            if Some(frame.seq) == self.fail_at {
                return Err("disk full".into());
            }
            self.seen.lock().unwrap().push(frame.seq);
            Ok(())
        }

        fn flush(&mut self, _out: &mut Output) -> Result<(), BoxError> {
            self.flushed.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    fn spec(name: &str, stage: Box<dyn Stage>, capacity: usize, policy: FullPolicy) -> StageSpec {
        StageSpec::single(name, stage, capacity, policy)
    }

    fn collector(fail_at: Option<u64>) -> (Collect, Arc<Mutex<Vec<u64>>>, Arc<AtomicU64>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let flushed = Arc::new(AtomicU64::new(0));
        (
            Collect {
                seen: seen.clone(),
                fail_at,
                flushed: flushed.clone(),
            },
            seen,
            flushed,
        )
    }

    #[test]
    fn blocking_queues_lose_nothing_and_keep_order() {
        let (sink_a, seen_a, _) = collector(None);
        let (sink_b, seen_b, _) = collector(None);
        let report = run(
            Box::new(Counter(500)),
            vec![spec(
                "slow",
                Box::new(Slow(Duration::from_micros(50))),
                1,
                FullPolicy::Block,
            )],
            vec![
                spec("a", Box::new(sink_a), 1, FullPolicy::Block),
                spec("b", Box::new(sink_b), 3, FullPolicy::Block),
            ],
            Arc::new(Control::default()),
        )
        .unwrap();
        let expected: Vec<u64> = (0..500).collect();
        assert_eq!(*seen_a.lock().unwrap(), expected);
        assert_eq!(*seen_b.lock().unwrap(), expected);
        assert!(report.stages.iter().all(|s| s.dropped == 0));
        assert_eq!(report.frames_out, 500);
    }

    #[test]
    fn drop_oldest_counts_every_drop_and_keeps_order() {
        let (sink, seen, _) = collector(None);
        let report = run(
            Box::new(Counter(300)),
            vec![spec(
                "slow",
                Box::new(Slow(Duration::from_millis(1))),
                2,
                FullPolicy::DropOldest,
            )],
            vec![spec("sink", Box::new(sink), 2, FullPolicy::Block)],
            Arc::new(Control::default()),
        )
        .unwrap();
        let seen = seen.lock().unwrap();
        let dropped: u64 = report.stages.iter().map(|s| s.dropped).sum();
        assert!(
            dropped > 0,
            "a 1 ms stage behind an instant source must drop"
        );
        assert_eq!(
            seen.len() as u64 + dropped,
            300,
            "every frame is either delivered or counted"
        );
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "order is kept");
        // The newest frame always survives.
        assert_eq!(seen.last(), Some(&299));
    }

    /// Sleeps a pseudo-random time per frame, so parallel workers finish out of order.
    struct Jitter;

    impl Stage for Jitter {
        fn process(&mut self, frame: Frame, out: &mut Output) -> Result<(), BoxError> {
            std::thread::sleep(Duration::from_micros((frame.seq * 7919 % 13) * 100));
            out.send(frame)?;
            Ok(())
        }
    }

    #[test]
    fn parallel_workers_keep_arrival_order() {
        for batch in [1, 3] {
            let (sink, seen, _) = collector(None);
            let report = run(
                Box::new(Counter(200)),
                vec![StageSpec {
                    name: "jitter".into(),
                    workers: (0..3).map(|_| Box::new(Jitter) as Box<dyn Stage>).collect(),
                    batch,
                    capacity: 4,
                    policy: FullPolicy::Block,
                    ordered: None,
                }],
                vec![spec("sink", Box::new(sink), 4, FullPolicy::Block)],
                Arc::new(Control::default()),
            )
            .unwrap();
            assert_eq!(
                *seen.lock().unwrap(),
                (0..200).collect::<Vec<_>>(),
                "batch {batch}"
            );
            assert_eq!(report.stages[1].frames_in, 200);
            assert_eq!(report.stages[1].frames_out, 200);
        }
    }

    #[test]
    fn first_error_stops_the_pipeline_and_names_the_stage() {
        let (sink, seen, flushed) = collector(Some(10));
        let err = run(
            Box::new(Counter(1_000_000)),
            vec![],
            vec![spec("writer", Box::new(sink), 2, FullPolicy::Block)],
            Arc::new(Control::default()),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "sink writer: disk full");
        assert_eq!(*seen.lock().unwrap(), (0..10).collect::<Vec<_>>());
        assert_eq!(
            flushed.load(Ordering::Relaxed),
            1,
            "the failing sink still finalizes"
        );
    }

    #[test]
    fn stop_request_drains_and_flushes() {
        let (sink, seen, flushed) = collector(None);
        let control = Arc::new(Control::default());
        let stopper = control.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            stopper.request_stop();
        });
        let report = run(
            Box::new(Counter(u64::MAX)),
            vec![spec(
                "slow",
                Box::new(Slow(Duration::from_micros(100))),
                4,
                FullPolicy::Block,
            )],
            vec![spec("sink", Box::new(sink), 4, FullPolicy::Block)],
            control,
        )
        .unwrap();
        assert!(report.interrupted);
        let seen = seen.lock().unwrap();
        // Everything the source emitted was processed, in order.
        assert_eq!(seen.len() as u64, report.stages[0].frames_out);
        assert!(seen.iter().enumerate().all(|(i, s)| i as u64 == *s));
        assert_eq!(flushed.load(Ordering::Relaxed), 1);
    }
}
