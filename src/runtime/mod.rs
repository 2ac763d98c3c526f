//! Stages on their own threads, joined by bounded queues.
//!
//! The source runs until end of stream or a stop request and then drops its output; every
//! stage downstream finishes its queue, flushes and drops its own output in turn, so shutdown
//! cascades without flags. A fatal error anywhere aborts the pipeline: upstream stops at once,
//! downstream drains what it already has so outputs are finalized.

mod audio;
mod control;
mod edge;
mod metrics;
mod queue;
mod spawn;
mod stage;
mod status;
mod streams;
#[cfg(test)]
mod tests;

pub use audio::{AudioPacket, AudioTracks};
pub use control::{Control, PipelineError};
pub use edge::{OrderedStep, Output};
pub use metrics::{
    write_stage_table, LatencyMetrics, RunReport, StageMetrics, StageRow, StageSummary, Summary,
};
pub use queue::{FullPolicy, QueueConfig, QueueRole, MAX_CAPACITY};
pub use stage::{Aborted, BoxError, Merge, Source, Stage};
pub use status::{memory, RunMetrics, Status, StatusMark};
pub use streams::{Outcome, StreamLog, StreamRecord};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::frame::Frame;
use edge::{edge, EdgeTx};
use spawn::{spawn_named, spawn_stage, Handles};

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
            held: None,
        };
        // Every sink sees every frame: the first one stands for the pipeline's output.
        all_metrics.push(metrics);
        if let Err(e) = spawn_stage(
            spec,
            rx,
            out,
            (i == 0).then(|| latency.clone()),
            &mut handles,
        ) {
            return Err(abandon(e, downstream, handles, &control));
        }
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
            held: None,
        };
        transform_metrics.push(metrics);
        if let Err(e) = spawn_stage(spec, rx, out, None, &mut handles) {
            return Err(abandon(e, downstream, handles, &control));
        }
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
        held: None,
    };
    let mut source = source;
    let source_handle = spawn_named("decode", "segstream-decode".into(), move || {
        if let Err(e) = source.run(&mut out) {
            if !e.is::<Aborted>() {
                out.control.fail("decode", e);
            }
        }
        // Dropping `out` closes the first queue: end of stream flows downstream.
    });
    match source_handle {
        Ok(h) => handles.push(("decode".to_owned(), h)),
        Err(e) => return Err(abandon(e, Vec::new(), handles, &control)),
    }

    join(handles, &control);

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
            let mut s: Vec<Summary> = s.into_iter().map(|(_, s)| s).collect();
            let dropped = control.audio.dropped();
            if dropped > 0 {
                s.push(Summary {
                    key: "audio",
                    text: format!(
                        "audio: {dropped} packets dropped (a recording's muxer fell behind the \
                         live source)"
                    ),
                    value: serde_json::json!({ "dropped_packets": dropped }),
                });
            }
            s
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
    // The first `warmup` frames the stage sees are not measured (counted over every
    // stream, so a batch of short files warms up once, not once per file).
    let before = out.metrics.frames_in.fetch_add(n as u64, Ordering::Relaxed);
    let warmup = out.control.warmup;
    let measured: Vec<Instant> = frames
        .iter()
        .enumerate()
        .filter(|(i, _)| before + *i as u64 >= warmup)
        .map(|(_, f)| f.captured)
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

/// Joins every stage thread, keeping the first panic as the run's error.
fn join(handles: Handles, control: &Control) {
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
}

/// A thread could not be started: closes the queues of the stages already running (they see
/// end of stream and finish), waits for them and returns the error.
fn abandon(
    error: PipelineError,
    downstream: Vec<EdgeTx>,
    handles: Handles,
    control: &Control,
) -> PipelineError {
    control.request_stop();
    drop(downstream);
    join(handles, control);
    error
}
