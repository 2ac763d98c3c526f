//! `nats`: each frame's JSONL line (the `jsonl` sink's fields, masks included) published to a
//! NATS subject, for dashboards and other services.
//!
//! `[[sinks]] type = "nats", url = "nats://127.0.0.1:4222", subject = "segstream.{stream}"`
//!
//! Publishing never makes the pipeline wait for the broker: lines go into a bounded buffer
//! (`buffer` lines) that a client thread sends on, reconnecting with backoff while the broker
//! is away. A line that finds the buffer full is dropped and counted with this sink's drops.
//! A line counts as confirmed once the server has processed it: after each burst of lines
//! the client publishes a marker to its own inbox, and the marker's return on the same
//! connection proves the server routed every line before it (a server processes one
//! connection's messages in order). A flush proves less (the bytes reached the socket), so
//! it is not used. Lines sent on a connection that was then lost stay unconfirmed, as they
//! may be lost with it.
//! At the end of the run the sink waits up to `drain_s` for the rest; the summary says how
//! many lines were published, confirmed and dropped.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
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
    /// The client thread has sent everything it was given and heard back about it.
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

/// A burst of lines waiting for its marker to come back.
struct Burst {
    marker: u64,
    lines: u64,
    /// The connection (counted from 1) the burst's first line went out on.
    connection: u64,
}

/// Lines published since the last marker.
#[derive(Default)]
struct Open {
    lines: u64,
    connection: u64,
}

/// Sends lines as they come and, after each burst (the buffer ran empty, or 100 lines), a
/// marker to the client's own inbox; a marker that returns with no reconnect since its
/// burst began confirms the burst.
async fn send(
    client: async_nats::Client,
    mut lines: mpsc::Receiver<(String, Vec<u8>)>,
    shared: Arc<Shared>,
) {
    let statistics = client.statistics();
    let connects = || statistics.connects.load(Ordering::Relaxed);
    // The connection a line published now goes out on: the current one, or the next one
    // while the client is (re)connecting and holds what it is given.
    let connection = || {
        let now = connects();
        match client.connection_state() {
            async_nats::connection::State::Connected => now,
            _ => now + 1,
        }
    };
    let inbox = client.new_inbox();
    let mut markers = client.subscribe(inbox.clone()).await.ok();
    let mut pending: VecDeque<Burst> = VecDeque::new();
    let mut open = Open::default();
    let mut next_marker = 0u64;
    let mut receiving = true;
    loop {
        let close_burst = tokio::select! {
            line = lines.recv(), if receiving => match line {
                Some((subject, line)) => {
                    if open.lines == 0 {
                        open.connection = connection();
                    }
                    if client.publish(subject, line.into()).await.is_ok() {
                        open.lines += 1;
                    }
                    lines.is_empty() || open.lines >= 100
                }
                None => {
                    receiving = false;
                    true
                }
            },
            marker = next(&mut markers), if !pending.is_empty() => {
                let Some(marker) = marker else {
                    // The subscription ended with the client: nothing more can be confirmed.
                    markers = None;
                    pending.clear();
                    continue;
                };
                let Some(returned) = std::str::from_utf8(&marker.payload)
                    .ok()
                    .and_then(|m| m.parse::<u64>().ok())
                else {
                    continue;
                };
                // Bursts before this marker whose own markers never came back were sent
                // on a lost connection: they stay unconfirmed.
                while let Some(burst) = pending.pop_front() {
                    if burst.marker == returned {
                        if burst.connection == connects() {
                            shared.confirmed.fetch_add(burst.lines, Ordering::Relaxed);
                        }
                        break;
                    }
                    if burst.marker > returned {
                        pending.push_front(burst);
                        break;
                    }
                }
                false
            }
        };
        if close_burst && open.lines > 0 && markers.is_some() {
            let marker = next_marker;
            next_marker += 1;
            if client
                .publish(inbox.clone(), marker.to_string().into())
                .await
                .is_ok()
            {
                pending.push_back(Burst {
                    marker,
                    lines: open.lines,
                    connection: open.connection,
                });
            }
            open = Open::default();
        }
        if !receiving && pending.is_empty() {
            break;
        }
    }
    shared.done.store(true, Ordering::Relaxed);
}

/// The next message on `subscriber`, or `None` once it has ended (or there is none).
async fn next(subscriber: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match subscriber {
        Some(s) => s.next().await,
        None => None,
    }
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
        let options = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .client_capacity(64)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((200u64 << attempts.min(5)).min(5000))
            })
            .event_callback(move |event| {
                let url = url.clone();
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
