//! Stages on their own threads, joined by bounded queues.
//!
//! The source runs until end of stream or a stop request and then drops its output; every
//! stage downstream finishes its queue, flushes and drops its own output in turn, so shutdown
//! cascades without flags. A fatal error anywhere aborts the pipeline: upstream stops at once,
//! downstream drains what it already has so outputs are finalized.

mod edge;
mod metrics;

pub use edge::Output;
pub use metrics::{LatencyMetrics, RunReport, StageMetrics, StageSummary};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::config::FullPolicy;
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

    /// Upstream has closed: emit anything buffered and finalize outputs.
    fn flush(&mut self, _out: &mut Output) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Produces frames.
pub trait Source: Send {
    /// Sends frames until end of stream, or until [`Output::stop_requested`].
    fn run(&mut self, out: &mut Output) -> Result<(), BoxError>;
}

/// State shared by every stage of one run.
#[derive(Default)]
pub struct Control {
    stop: AtomicBool,
    abort: AtomicBool,
    error: Mutex<Option<PipelineError>>,
}

impl Control {
    /// Asks the source to stop; the rest of the pipeline drains.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
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
    pub stage: Box<dyn Stage>,
    pub capacity: usize,
    pub policy: FullPolicy,
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
    for spec in sinks {
        let metrics = Arc::new(StageMetrics::new(format!("sink {}", spec.name)));
        let (tx, rx) = edge(spec.capacity, spec.policy, metrics.clone());
        downstream.push(tx);
        let out = Output {
            edges: Vec::new(),
            metrics: metrics.clone(),
            control: control.clone(),
        };
        handles.push(spawn_stage(spec, rx, out, Some(latency.clone())));
        all_metrics.push(metrics);
    }
    let mut transform_metrics = Vec::new();
    for spec in transforms.into_iter().rev() {
        let metrics = Arc::new(StageMetrics::new(spec.name.clone()));
        let (tx, rx) = edge(spec.capacity, spec.policy, metrics.clone());
        let edges = std::mem::replace(&mut downstream, vec![tx]);
        let out = Output {
            edges,
            metrics: metrics.clone(),
            control: control.clone(),
        };
        handles.push(spawn_stage(spec, rx, out, None));
        transform_metrics.push(metrics);
    }
    transform_metrics.reverse();
    all_metrics.splice(1..1, transform_metrics);

    let mut out = Output {
        edges: downstream,
        metrics: source_metrics,
        control: control.clone(),
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
        interrupted: control.stop_requested(),
    })
}

fn spawn_stage(
    spec: StageSpec,
    rx: Receiver<Frame>,
    mut out: Output,
    latency: Option<Arc<LatencyMetrics>>,
) -> (String, thread::JoinHandle<()>) {
    let StageSpec {
        name, mut stage, ..
    } = spec;
    let label = out.metrics.name.clone();
    let handle = thread::Builder::new()
        .name(format!("segstream-{name}"))
        .spawn(move || {
            let result = (|| -> Result<(), BoxError> {
                stage.start()?;
                for frame in rx.iter() {
                    out.metrics.frames_in.fetch_add(1, Ordering::Relaxed);
                    let captured = frame.captured;
                    let t = Instant::now();
                    stage.process(frame, &mut out)?;
                    out.metrics.record_busy(t.elapsed());
                    if let Some(latency) = &latency {
                        latency.record(captured.elapsed());
                    }
                }
                stage.flush(&mut out)
            })();
            if let Err(e) = result {
                if !e.is::<Aborted>() {
                    out.control.fail(&out.metrics.name, e);
                }
                // Keep draining so upstream senders never wait on a dead stage.
                drop(rx);
                // Still give the stage the chance to finalize what it already wrote.
                let _ = stage.flush(&mut out);
            }
        })
        .expect("spawn stage thread");
    (label, handle)
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
        StageSpec {
            name: name.into(),
            stage,
            capacity,
            policy,
        }
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
