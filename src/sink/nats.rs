//! `nats`: each frame's JSONL line (the `jsonl` sink's fields, masks included) published to a
//! NATS subject, for dashboards and other services.
//!
//! `[[sinks]] type = "nats", url = "nats://127.0.0.1:4222", subject = "segstream.{stream}"`
//!
//! Publishing never makes the pipeline wait for the broker: lines go into a bounded buffer
//! (`buffer` lines) that a client thread sends on, reconnecting with backoff while the broker
//! is away. A line that finds the buffer full is dropped and counted with this sink's drops.
//! A line counts as confirmed once a flush after it returned on the connection it went out
//! on (the server has processed it); lines sent on a connection that was then lost stay
//! unconfirmed, as they may be lost with it.
//! At the end of the run the sink waits up to `drain_s` for the rest; the summary says how
//! many lines were published, confirmed and dropped.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::mpsc;

use super::broker::{check_buffering, topic, Delivery};
use super::jsonl::frame_line;
use crate::component::{BuildContext, CheckContext, Component, SinkComponent};
use crate::config::Problems;
use crate::frame::{Classes, Frame};
use crate::runtime::{BoxError, Output, QueueConfig, Stage, Summary};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://HOST[:PORT]` (port 4222 when absent).
    pub url: String,
    /// The subject of each line; `{stream}` is the frame's stream id, `{name}` its input's
    /// name (with many input files).
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Lines held while the broker is slow or away.
    #[serde(default = "default_buffer")]
    pub buffer: usize,
    /// How long the end of the run waits for the broker to confirm buffered lines.
    #[serde(default = "default_drain")]
    pub drain_s: f64,
    #[serde(default)]
    pub queue: QueueConfig,
}

fn default_subject() -> String {
    "segstream.{stream}".into()
}

fn default_buffer() -> usize {
    1000
}

fn default_drain() -> f64 {
    5.0
}

/// `HOST:PORT` of a `nats://` URL.
pub fn server(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
    if parsed.scheme() != "nats" {
        return Err(format!("{url:?} is not a nats:// URL"));
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{url:?} names no host"))?;
    Ok(format!("{host}:{}", parsed.port().unwrap_or(4222)))
}

impl Component for NatsConfig {
    fn check(&mut self, _cx: &CheckContext<'_>, p: &mut Problems) {
        if let Err(e) = server(&self.url) {
            p.push(
                "url",
                format!("{e} (expected nats://HOST[:PORT], such as nats://127.0.0.1:4222)"),
            );
        }
        let bad = self.subject.is_empty()
            || self.subject.contains(char::is_whitespace)
            || self
                .subject
                .split('.')
                .any(|t| t.is_empty() || t == "*" || t == ">");
        if bad {
            p.push(
                "subject",
                format!(
                    "{:?} cannot be published to (expected dot-separated tokens without \
                     wildcards or spaces, such as segstream.{{stream}})",
                    self.subject
                ),
            );
        }
        check_buffering(self.buffer, self.drain_s, p);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SinkComponent for NatsConfig {
    fn queue(&self) -> QueueConfig {
        self.queue
    }

    /// Each line names its stream.
    fn shared_by_streams(&self) -> bool {
        true
    }

    fn build(
        &self,
        cx: &BuildContext<'_>,
        _output: Option<&Path>,
    ) -> Result<Box<dyn Stage>, BoxError> {
        Ok(Box::new(NatsSink {
            settings: self.clone(),
            classes: cx.classes.clone(),
            state: None,
            delivery: Delivery::default(),
        }))
    }
}

/// Counters shared with the client thread.
#[derive(Default)]
struct Shared {
    confirmed: AtomicU64,
    /// Connections lost so far: a flush confirms only what was sent on its own connection.
    disconnects: AtomicU64,
    /// The client thread has sent and flushed everything it was given.
    done: AtomicBool,
}

struct State {
    lines: mpsc::Sender<(String, Vec<u8>)>,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Runtime,
}

pub struct NatsSink {
    settings: NatsConfig,
    classes: Arc<Classes>,
    state: Option<State>,
    delivery: Delivery,
}

/// Sends lines as they come, flushing after each burst: a flush that returns confirms every
/// line before it.
async fn send(
    client: async_nats::Client,
    mut lines: mpsc::Receiver<(String, Vec<u8>)>,
    shared: Arc<Shared>,
) {
    // Lines sent since the last flush, and the connection they went out on.
    let mut unflushed = 0u64;
    let mut connection = shared.disconnects.load(Ordering::Relaxed);
    let confirm = |unflushed: &mut u64, connection: u64| {
        // Lines sent on a connection that was lost before the flush may be lost with it:
        // they stay unconfirmed.
        if shared.disconnects.load(Ordering::Relaxed) == connection {
            shared.confirmed.fetch_add(*unflushed, Ordering::Relaxed);
        }
        *unflushed = 0;
    };
    while let Some((subject, line)) = lines.recv().await {
        if unflushed == 0 {
            connection = shared.disconnects.load(Ordering::Relaxed);
        }
        if client.publish(subject, line.into()).await.is_err() {
            continue;
        }
        unflushed += 1;
        if (lines.is_empty() || unflushed >= 100) && client.flush().await.is_ok() {
            confirm(&mut unflushed, connection);
        }
    }
    if unflushed > 0 && client.flush().await.is_ok() {
        confirm(&mut unflushed, connection);
    }
    shared.done.store(true, Ordering::Relaxed);
}

impl Stage for NatsSink {
    fn start(&mut self) -> Result<(), BoxError> {
        let address = server(&self.settings.url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("segstream-nats")
            .enable_all()
            .build()?;
        let url = self.settings.url.clone();
        let shared = Arc::new(Shared::default());
        let events = shared.clone();
        let options = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .client_capacity(64)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((200u64 << attempts.min(5)).min(5000))
            })
            .event_callback(move |event| {
                let url = url.clone();
                if matches!(event, async_nats::Event::Disconnected) {
                    events.disconnects.fetch_add(1, Ordering::Relaxed);
                }
                async move {
                    match event {
                        async_nats::Event::Disconnected => tracing::warn!(
                            sink = "nats",
                            url = %url,
                            "Broker unreachable; buffering and reconnecting."
                        ),
                        async_nats::Event::Connected => {
                            tracing::info!(sink = "nats", url = %url, "Broker connected.")
                        }
                        other => tracing::debug!(sink = "nats", url = %url, "{other}"),
                    }
                }
            });
        let client = runtime.block_on(options.connect(address.as_str()))?;
        let (lines, receiver) = mpsc::channel(self.settings.buffer);
        runtime.spawn(send(client, receiver, shared.clone()));
        self.state = Some(State {
            lines,
            shared,
            runtime,
        });
        Ok(())
    }

    fn process(&mut self, frame: Frame, out: &mut Output) -> Result<(), BoxError> {
        let state = self.state.as_ref().expect("start() ran");
        let line = frame_line(&frame, &self.classes)?;
        let subject = topic(&self.settings.subject, frame.stream, out);
        match state.lines.try_send((subject, line)) {
            Ok(()) => self.delivery.published += 1,
            Err(_) => {
                // The buffer is full: the broker is away or slower than the frames.
                self.delivery.dropped += 1;
                out.count_drop(frame.stream);
            }
        }
        Ok(())
    }

    fn flush(&mut self, _out: &mut Output) -> Result<(), BoxError> {
        let Some(state) = self.state.take() else {
            return Ok(());
        };
        // Closing the buffer lets the client thread finish once it has sent the rest.
        drop(state.lines);
        let deadline = Instant::now() + Duration::from_secs_f64(self.settings.drain_s);
        while !state.shared.done.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.delivery.confirmed = state.shared.confirmed.load(Ordering::Relaxed);
        self.delivery.warn_unconfirmed("nats", &self.settings.url);
        state.runtime.shutdown_timeout(Duration::from_secs(1));
        Ok(())
    }

    fn summary(&self) -> Option<Summary> {
        Some(self.delivery.summary("nats", &self.settings.url))
    }
}
