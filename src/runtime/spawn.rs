//! Stage threads: one per single-worker stage; several workers with a reorder thread for
//! parallel stages. A thread that cannot be created is an error, never a panic.

use std::sync::{Arc, Mutex};
use std::thread;

use crossbeam_channel::Receiver;

use super::{
    finish, process, take, Aborted, BoxError, LatencyMetrics, Output, PipelineError, Stage,
    StageSpec,
};
use crate::frame::Frame;

/// Threads started so far, by stage name, for `run` to join.
pub(super) type Handles = Vec<(String, thread::JoinHandle<()>)>;

/// Starts a named thread, or says which stage could not get one.
pub(super) fn spawn_named(
    stage: &str,
    thread_name: String,
    body: impl FnOnce() + Send + 'static,
) -> Result<thread::JoinHandle<()>, PipelineError> {
    thread::Builder::new()
        .name(thread_name)
        .spawn(body)
        .map_err(|e| PipelineError::Spawn {
            stage: stage.to_owned(),
            reason: e.to_string(),
        })
}

/// Starts the threads of one stage, adding them to `handles`.
pub(super) fn spawn_stage(
    spec: StageSpec,
    rx: Receiver<Frame>,
    out: Output,
    latency: Option<Arc<LatencyMetrics>>,
    handles: &mut Handles,
) -> Result<(), PipelineError> {
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
        let handle = spawn_named(&label, format!("segstream-{name}"), move || {
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
        })?;
        handles.push((label, handle));
        return Ok(());
    }
    spawn_parallel(name, workers, batch, rx, out, latency, handles)
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
    handles: &mut Handles,
) -> Result<(), PipelineError> {
    let label = out.metrics.name.clone();
    let input = Arc::new(Mutex::new((rx, 0u64)));
    let (done_tx, done_rx) = crossbeam_channel::bounded::<Done>(workers.len() * batch * 2);
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
            held: None,
        };
        let latency = latency.clone();
        let handle = spawn_named(&label, format!("segstream-{name}-{i}"), move || {
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
                    let keys: Vec<(u32, u64)> = frames.iter().map(|f| (f.stream, f.seq)).collect();
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
        })?;
        handles.push((format!("{label} worker {i}"), handle));
    }
    drop(done_tx);
    let handle = spawn_named(&label, format!("segstream-{name}-order"), move || {
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
    })?;
    handles.push((label, handle));
    Ok(())
}
