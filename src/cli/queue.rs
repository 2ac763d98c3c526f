//! `worker` and `enqueue`: a fleet that takes files from a NATS JetStream work queue.
//!
//! `segstream enqueue --queue nats://HOST:4222/SUBJECT clips/` publishes one message per file
//! (its absolute path) on a work-queue stream. `segstream worker PIPELINE --queue ...` takes
//! one message at a time, runs the file through the pipeline (the same per-file outputs,
//! `.partial` then renamed, as `run` over a folder) and acknowledges the message only once
//! every output is in place. A worker that dies mid-file never acknowledges: JetStream hands
//! the message to another worker after the ack wait. Long files keep their messages with
//! progress acknowledgements; a file that fails is terminated (not redelivered) and listed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream, AckKind};
use futures_util::StreamExt;
use segstream::pipeline::Pipeline;
use segstream::runtime::{Outcome, StreamRecord};
use segstream::source::batch::{Feed, Item};

/// Where the queue is: `nats://HOST[:PORT]/SUBJECT`.
#[derive(Clone, Debug)]
pub struct QueueUrl {
    pub server: String,
    pub subject: String,
}

impl QueueUrl {
    pub fn parse(text: &str) -> Result<QueueUrl, String> {
        let bad = |why: &str| {
            format!(
                "--queue {text}: {why} (expected nats://HOST[:PORT]/SUBJECT, such as \
                 nats://127.0.0.1:4222/segstream.files)"
            )
        };
        let (base, subject) = text
            .strip_prefix("nats://")
            .and_then(|rest| rest.split_once('/'))
            .map(|(host, subject)| (format!("nats://{host}"), subject.to_owned()))
            .ok_or_else(|| bad("not a nats:// URL with a subject"))?;
        let server = segstream::sink::nats::server(&base).map_err(|e| bad(&e))?;
        if subject.is_empty() || subject.contains(['*', '>', ' ', '/']) {
            return Err(bad("the subject must be a plain subject without wildcards"));
        }
        Ok(QueueUrl { server, subject })
    }
}

/// The queue's settings shared by `worker` and `enqueue`.
pub struct QueueOptions {
    pub url: QueueUrl,
    /// The JetStream stream holding the subject (created as a work queue when missing).
    pub stream: String,
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("segstream-queue")
        .enable_all()
        .build()
}

async fn connect(options: &QueueOptions) -> Result<(jetstream::Context, stream::Stream), String> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(options.url.server.as_str())
        .await
        .map_err(|e| format!("cannot reach NATS at {}: {e}", options.url.server))?;
    let js = jetstream::new(client);
    let stream = js
        .get_or_create_stream(stream::Config {
            name: options.stream.clone(),
            subjects: vec![options.url.subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            format!(
                "cannot open the JetStream stream {} for {} (is JetStream enabled, nats-server \
                 -js?): {e}",
                options.stream, options.url.subject
            )
        })?;
    Ok((js, stream))
}

/// Publishes every file `inputs` names, waiting for JetStream to store each.
pub fn enqueue(options: &QueueOptions, inputs: &[PathBuf]) -> Result<usize, String> {
    let mut lines = Vec::new();
    for input in inputs {
        if segstream::source::batch::is_many(input) {
            for item in segstream::source::batch::expand(input)? {
                lines.push(item.input.describe());
            }
        } else if input.is_file() {
            lines.push(input.display().to_string());
        } else {
            return Err(format!("input {} does not exist", input.display()));
        }
    }
    // Workers may run elsewhere: absolute paths on the shared volume.
    let lines: Vec<String> = lines
        .into_iter()
        .map(|l| {
            std::path::absolute(&l)
                .map(|p| p.display().to_string())
                .unwrap_or(l)
        })
        .collect();
    let rt = runtime().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (js, _) = connect(options).await?;
        for line in &lines {
            js.publish(options.url.subject.clone(), line.clone().into())
                .await
                .map_err(|e| format!("cannot publish {line}: {e}"))?
                .await
                .map_err(|e| format!("JetStream did not store {line}: {e}"))?;
        }
        Ok(lines.len())
    })
}

/// The worker's settings.
pub struct WorkerOptions {
    pub queue: QueueOptions,
    /// The durable consumer every worker of the fleet shares.
    pub consumer: String,
    /// How long a message waits for its acknowledgement before JetStream hands it to another
    /// worker.
    pub ack_wait: Duration,
    /// Deliveries of one message before JetStream gives up on it.
    pub max_deliveries: i64,
    /// End after the queue has been empty this long (`None`: wait for work forever).
    pub idle_exit: Option<Duration>,
}

/// Messages whose files are in flight, by stream id.
type InFlight = Arc<Mutex<HashMap<u32, jetstream::Message>>>;

/// Hands out one queued file at a time.
struct QueueFeed {
    rt: tokio::runtime::Handle,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    in_flight: InFlight,
    pipeline: Arc<Pipeline>,
    next_id: u32,
    idle_exit: Option<Duration>,
}

impl Feed for QueueFeed {
    fn next(&mut self, stopping: &dyn Fn() -> bool) -> Option<Item> {
        // The queue is idle for as long as this worker has waited for work.
        let waiting_since = Instant::now();
        loop {
            if stopping() {
                return None;
            }
            if let Some(limit) = self.idle_exit.filter(|d| waiting_since.elapsed() >= *d) {
                eprintln!(
                    "worker: the queue has been empty for {:.1} s; done",
                    limit.as_secs_f64()
                );
                return None;
            }
            let fetched = self.rt.block_on(async {
                let mut batch = self
                    .consumer
                    .fetch()
                    .max_messages(1)
                    .expires(Duration::from_millis(500))
                    .messages()
                    .await
                    .ok()?;
                batch.next().await?.ok()
            });
            let Some(message) = fetched else {
                continue;
            };
            let line = String::from_utf8_lossy(&message.payload).trim().to_owned();
            let delivery = message.info().map(|i| i.delivered).unwrap_or(1);
            let id = self.next_id;
            self.next_id += 1;
            let item = Item::from_line(id, &line, Path::new(""));
            let outputs = self.pipeline.outputs_of(id, Some(&item.name));
            if !outputs.is_empty() && outputs.iter().all(|o| o.exists()) {
                // Done before (a worker died after its rename, before its ack).
                eprintln!("worker: {line}: outputs already complete; acknowledged");
                let _ = self.rt.block_on(message.double_ack());
                continue;
            }
            eprintln!("worker: {line} (delivery {delivery})");
            self.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, message);
            return Some(item);
        }
    }
}

/// What a worker did.
pub struct WorkerReport {
    pub records: Vec<StreamRecord>,
}

/// Runs files from the queue through `pipeline` until stopped (or idle for `idle_exit`).
pub fn work(
    pipeline: Pipeline,
    options: &WorkerOptions,
    run: &segstream::pipeline::RunOptions,
    control: Arc<segstream::runtime::Control>,
    files_in_flight: usize,
) -> Result<WorkerReport, String> {
    let rt = runtime().map_err(|e| e.to_string())?;
    let consumer = rt.block_on(async {
        let (_, stream) = connect(&options.queue).await?;
        stream
            .get_or_create_consumer(
                &options.consumer,
                pull::Config {
                    durable_name: Some(options.consumer.clone()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: options.ack_wait,
                    max_deliver: options.max_deliveries,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("cannot open the consumer {}: {e}", options.consumer))
    })?;
    let in_flight: InFlight = Arc::default();

    // Acknowledge each file once its outputs are in place; a failed file is not retried.
    let (hook_flight, handle) = (in_flight.clone(), rt.handle().clone());
    control.streams.on_finish(move |record| {
        let message = hook_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&record.id);
        let Some(message) = message else { return };
        let result = match &record.outcome {
            Some(Outcome::Complete) => handle.block_on(message.double_ack()),
            _ => handle.block_on(message.ack_with(AckKind::Term)),
        };
        if let Err(e) = result {
            tracing::warn!(input = %record.input, "Cannot acknowledge the message: {e}.");
        }
    });

    // Keep long files' messages: progress well within the ack wait.
    let progress_flight = in_flight.clone();
    let period = options.ack_wait / 3;
    rt.spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let messages: Vec<jetstream::Message> = progress_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            for m in messages {
                let _ = m.ack_with(AckKind::Progress).await;
            }
        }
    });

    let pipeline = Arc::new(pipeline);
    let feed = QueueFeed {
        rt: rt.handle().clone(),
        consumer,
        in_flight: in_flight.clone(),
        pipeline: pipeline.clone(),
        next_id: 0,
        idle_exit: options.idle_exit,
    };
    let source = segstream::source::batch::Batch::new(
        Box::new(feed),
        files_in_flight,
        run.frames,
        Vec::new(),
    );
    let result =
        segstream::pipeline::run_with_source(&pipeline, run, Box::new(source), control.clone());
    // Files the run stopped in the middle of go back to the queue at once.
    let left: Vec<jetstream::Message> = in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .map(|(_, m)| m)
        .collect();
    for m in left {
        let _ = rt.block_on(m.ack_with(AckKind::Nak(None)));
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    result.map_err(|e| segstream::one_line(&e))?;
    Ok(WorkerReport {
        records: control.streams.records(),
    })
}
