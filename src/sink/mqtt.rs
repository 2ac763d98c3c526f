//! `mqtt`: each frame's JSONL line (the `jsonl` sink's fields, masks included) published to an
//! MQTT broker, for dashboards and other services.
//!
//! `[[sinks]] type = "mqtt", url = "mqtt://127.0.0.1:1883", topic = "segstream/{stream}"`
//!
//! Publishing never makes the pipeline wait for the broker: lines go into a bounded buffer
//! (`buffer` lines) that the client drains at QoS 1 (at least once), reconnecting with backoff
//! while the broker is away. A line that finds the buffer full is dropped and counted with
//! this sink's drops. At the end of the run the sink waits up to `drain_s` for the broker to
//! confirm what is buffered; the summary says how many lines were published, confirmed and
//! dropped.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde::Deserialize;

use super::broker::{check_buffering, topic, Delivery};
use super::jsonl::frame_line;
use crate::component::{BuildContext, CheckContext, Component, SinkComponent};
use crate::config::Problems;
use crate::frame::{Classes, Frame};
use crate::runtime::{BoxError, Output, QueueConfig, Stage, Summary};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://HOST[:PORT]` (port 1883 when absent).
    pub url: String,
    /// The topic of each line; `{stream}` is the frame's stream id, `{name}` its input's
    /// name (with many input files).
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Lines held while the broker is slow or away.
    #[serde(default = "default_buffer")]
    pub buffer: usize,
    /// How long the end of the run waits for the broker to confirm buffered lines.
    #[serde(default = "default_drain")]
    pub drain_s: f64,
    #[serde(default)]
    pub queue: QueueConfig,
}

fn default_topic() -> String {
    "segstream/{stream}".into()
}

fn default_buffer() -> usize {
    1000
}

fn default_drain() -> f64 {
    5.0
}

/// Where a broker URL points.
fn broker(url: &str) -> Result<(String, u16), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
    if parsed.scheme() != "mqtt" {
        return Err(format!("{url:?} is not an mqtt:// URL"));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("{url:?} names no host"))?;
    Ok((
        host.trim_matches(['[', ']']).to_owned(),
        parsed.port().unwrap_or(1883),
    ))
}

impl Component for MqttConfig {
    fn check(&mut self, _cx: &CheckContext<'_>, p: &mut Problems) {
        if let Err(e) = broker(&self.url) {
            p.push(
                "url",
                format!("{e} (expected mqtt://HOST[:PORT], such as mqtt://127.0.0.1:1883)"),
            );
        }
        if self.topic.is_empty() || self.topic.contains(['#', '+']) {
            p.push(
                "topic",
                format!(
                    "{:?} cannot be published to (expected a topic without wildcards, such as \
                     segstream/{{stream}})",
                    self.topic
                ),
            );
        }
        check_buffering(self.buffer, self.drain_s, p);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SinkComponent for MqttConfig {
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
        Ok(Box::new(MqttSink {
            settings: self.clone(),
            classes: cx.classes.clone(),
            state: None,
            delivery: Delivery::default(),
        }))
    }
}

/// Counters shared with the client's event loop thread.
#[derive(Default)]
struct Shared {
    confirmed: AtomicU64,
    stop: AtomicBool,
}

struct State {
    client: Client,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub struct MqttSink {
    settings: MqttConfig,
    classes: Arc<Classes>,
    state: Option<State>,
    delivery: Delivery,
}

impl Stage for MqttSink {
    fn start(&mut self) -> Result<(), BoxError> {
        let (host, port) = broker(&self.settings.url)?;
        let id = format!(
            "segstream-{}-{}",
            std::process::id(),
            self.settings.topic.len()
        );
        let mut options = MqttOptions::new(id, host, port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(64 << 20, 64 << 20);
        let (client, mut connection) = Client::new(options, self.settings.buffer);
        let shared = Arc::new(Shared::default());
        let events = shared.clone();
        let url = self.settings.url.clone();
        let thread = std::thread::Builder::new()
            .name("segstream-mqtt".into())
            .spawn(move || {
                let mut backoff = Duration::from_millis(200);
                let mut away = false;
                for event in connection.iter() {
                    if events.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match event {
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            events.confirmed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            backoff = Duration::from_millis(200);
                            if std::mem::take(&mut away) {
                                tracing::warn!(sink = "mqtt", url = %url, "Broker back.");
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if !std::mem::replace(&mut away, true) {
                                tracing::warn!(
                                    sink = "mqtt",
                                    url = %url,
                                    error = %e,
                                    "Broker unreachable; buffering and reconnecting."
                                );
                            }
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            })?;
        self.state = Some(State {
            client,
            shared,
            thread: Some(thread),
        });
        Ok(())
    }

    fn process(&mut self, frame: Frame, out: &mut Output) -> Result<(), BoxError> {
        let state = self.state.as_ref().expect("start() ran");
        let line = frame_line(&frame, &self.classes)?;
        let topic = topic(&self.settings.topic, frame.stream, out);
        match state
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, line)
        {
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
        let Some(mut state) = self.state.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs_f64(self.settings.drain_s);
        while state.shared.confirmed.load(Ordering::Relaxed) < self.delivery.published
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let confirmed = state.shared.confirmed.load(Ordering::Relaxed);
        self.delivery.confirmed = confirmed;
        self.delivery.warn_unconfirmed("mqtt", &self.settings.url);
        state.shared.stop.store(true, Ordering::Relaxed);
        let _ = state.client.try_disconnect();
        // The event loop ends on the disconnect; one stuck on a dead broker is left behind.
        if let Some(t) = state.thread.take() {
            if confirmed >= self.delivery.published {
                let _ = t.join();
            }
        }
        Ok(())
    }

    fn summary(&self) -> Option<Summary> {
        Some(self.delivery.summary("mqtt", &self.settings.url))
    }
}
