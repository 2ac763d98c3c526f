//! The Prometheus metrics endpoint: `segstream run PIPELINE --metrics 127.0.0.1:9464`, then
//! `curl 127.0.0.1:9464/metrics`.
//!
//! Frames in and out, drops (by stage and stream), queue depth, outages of the source, and
//! histograms of each stage's busy time and of capture-to-output latency, read from the
//! running pipeline's counters on every scrape.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use segstream::runtime::{Control, StageMetrics};

#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {address}: {message} (expected a free local address such as 127.0.0.1:9464)")]
pub struct ExporterError {
    address: String,
    message: String,
}

/// Upper bounds of the histogram buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// Reads the run's counters at scrape time.
struct RunCollector(Arc<Control>);

impl std::fmt::Debug for RunCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunCollector")
    }
}

/// Sum (s), count and per-bucket counts of a microsecond histogram.
fn buckets(h: &Histogram<u64>) -> (f64, u64, Vec<(f64, u64)>) {
    let mut counts = vec![0u64; BUCKETS.len() + 1];
    let mut sum = 0.0;
    for v in h.iter_recorded() {
        let s = v.value_iterated_to() as f64 * 1e-6;
        sum += s * v.count_at_value() as f64;
        let i = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        counts[i] += v.count_at_value();
    }
    let mut out: Vec<(f64, u64)> = BUCKETS
        .iter()
        .copied()
        .zip(counts.iter().copied())
        .collect();
    out.push((f64::INFINITY, counts[BUCKETS.len()]));
    (sum, h.len(), out)
}

impl Collector for RunCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(run) = self.0.metrics() else {
            return Ok(());
        };
        let stages = &run.stages;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        type Get = fn(&StageMetrics) -> &std::sync::atomic::AtomicU64;
        let counters: [(&str, &str, Get); 2] = [
            (
                "segstream_frames_in",
                "Frames a stage took from its input queue.",
                |m| &m.frames_in,
            ),
            (
                "segstream_frames_out",
                "Frames a stage sent downstream.",
                |m| &m.frames_out,
            ),
        ];
        for (name, help, get) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for m in stages {
                let labels = [("stage", m.name.as_str())];
                ConstCounter::new(load(get(m))).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "segstream_dropped",
            "Frames dropped from a stage's full input queue (live sources), by stream.",
            None,
            MetricType::Counter,
        )?;
        for m in stages {
            for (stream, n) in m.dropped_by_stream() {
                let stream = stream.to_string();
                let labels = [("stage", m.name.as_str()), ("stream", stream.as_str())];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "segstream_queue_depth",
            "Frames waiting in a stage's input queue.",
            None,
            MetricType::Gauge,
        )?;
        for m in stages.iter().skip(1) {
            let labels = [("stage", m.name.as_str())];
            let depth = m.queue_depth.load(Ordering::Relaxed) as i64;
            ConstGauge::new(depth).encode(family.encode_family(&labels)?)?;
        }
        let outages: u64 = stages.iter().map(|m| load(&m.outages)).sum();
        ConstCounter::new(outages).encode(encoder.encode_descriptor(
            "segstream_outages",
            "Times the source lost its stream and reconnected.",
            None,
            MetricType::Counter,
        )?)?;
        let mut family = encoder.encode_descriptor(
            "segstream_stage_busy",
            "Time a stage spent on one frame.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for m in stages.iter().skip(1) {
            let labels = [("stage", m.name.as_str())];
            let (sum, count, b) = buckets(&m.busy_histogram());
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &b, None)?;
        }
        let (sum, count, b) = buckets(&run.latency.histogram());
        encoder
            .encode_descriptor(
                "segstream_latency",
                "Capture-to-output latency of frames at the first sink.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(sum, count, &b, None)?;
        Ok(())
    }
}

/// Most connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;

/// How long a client may take to send its request, and a connection may stay open: idle or
/// slow clients are cut off instead of holding the endpoint.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// The endpoint: a small async server on one thread of its own (connections cost no thread,
/// so idle ones cannot starve scrapes); stops when dropped.
pub struct Exporter {
    runtime: Option<tokio::runtime::Runtime>,
}

/// The reply to one request.
fn respond(
    registry: &Registry,
    request: &hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    let reply = |status: u16, kind: &str, text: String| {
        hyper::Response::builder()
            .status(status)
            .header("Content-Type", kind)
            .body(http_body_util::Full::new(hyper::body::Bytes::from(text)))
            .expect("a valid response")
    };
    if request.uri().path() != "/metrics" {
        return reply(404, "text/plain", "segstream: metrics at /metrics\n".into());
    }
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => reply(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        ),
        Err(_) => reply(500, "text/plain", "encoding failed\n".into()),
    }
}

impl Exporter {
    /// Serves `GET /metrics` on `address` until dropped.
    pub fn serve(address: &str, control: Arc<Control>) -> Result<Exporter, ExporterError> {
        let failed = |message: String| ExporterError {
            address: address.to_owned(),
            message,
        };
        let listener = std::net::TcpListener::bind(address).map_err(|e| failed(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| failed(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("segstream-metrics")
            .enable_all()
            .build()
            .map_err(|e| failed(e.to_string()))?;
        let mut registry = Registry::default();
        registry.register_collector(Box::new(RunCollector(control)));
        let registry = Arc::new(registry);
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|e| failed(e.to_string()))?
        };
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        runtime.spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let registry = registry.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let response = respond(&registry, &request);
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(REQUEST_TIMEOUT)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
                    drop(permit);
                });
            }
        });
        Ok(Exporter {
            runtime: Some(runtime),
        })
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_millis(200));
        }
    }
}
