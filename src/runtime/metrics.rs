//! Per-stage counters and latency histograms, shared by `run` and `bench`.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, from 1 µs to 1 hour, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Counters of one stage. Drops and queue depth describe the stage's input queue.
pub struct StageMetrics {
    pub name: String,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub dropped: AtomicU64,
    pub queue_peak: AtomicUsize,
    /// Frames in the input queue now.
    pub queue_depth: AtomicUsize,
    /// Times the source lost its stream and had to reconnect.
    pub outages: AtomicU64,
    /// Outages after which the stream came back.
    pub reconnects: AtomicU64,
    /// Drops by stream id (index); drops are rare enough for a lock.
    dropped_streams: Mutex<Vec<u64>>,
    /// Frames passed on without the stage's work (a time budget ran out), counted by it.
    pub skipped: AtomicU64,
    busy: Mutex<Histogram<u64>>,
    busy_total_us: AtomicU64,
}

impl StageMetrics {
    pub fn new(name: impl Into<String>) -> Self {
        StageMetrics {
            name: name.into(),
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            queue_peak: AtomicUsize::new(0),
            queue_depth: AtomicUsize::new(0),
            outages: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            dropped_streams: Mutex::new(Vec::new()),
            skipped: AtomicU64::new(0),
            busy: Mutex::new(histogram()),
            busy_total_us: AtomicU64::new(0),
        }
    }

    /// Counts one frame of `stream` dropped from this stage's input queue.
    pub fn record_drop(&self, stream: u32) {
        self.record_drops(stream, 1);
    }

    /// Counts `n` frames of `stream` dropped.
    pub fn record_drops(&self, stream: u32, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        if let Ok(mut by) = self.dropped_streams.lock() {
            let i = stream as usize;
            if by.len() <= i {
                by.resize(i + 1, 0);
            }
            by[i] += n;
        }
    }

    /// Drops by stream id, for the streams that had any.
    pub fn dropped_by_stream(&self) -> Vec<(u32, u64)> {
        self.dropped_streams
            .lock()
            .map(|by| {
                by.iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(i, n)| (i as u32, *n))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The busy-time histogram (microseconds), for exporting.
    pub fn busy_histogram(&self) -> Histogram<u64> {
        self.busy
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| histogram())
    }

    /// Records the time one frame kept the stage busy.
    pub fn record_busy(&self, d: Duration) {
        let us = (d.as_micros() as u64).max(1);
        self.busy_total_us.fetch_add(us, Ordering::Relaxed);
        if let Ok(mut h) = self.busy.lock() {
            h.saturating_record(us);
        }
    }

    pub fn snapshot(&self) -> StageSummary {
        let h = self
            .busy
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| histogram());
        StageSummary {
            name: self.name.clone(),
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queue_peak: self.queue_peak.load(Ordering::Relaxed),
            outages: self.outages.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            dropped_by_stream: self.dropped_by_stream(),
            skipped: self.skipped.load(Ordering::Relaxed),
            busy_total: Duration::from_micros(self.busy_total_us.load(Ordering::Relaxed)),
            busy_p50: Duration::from_micros(h.value_at_quantile(0.5)),
            busy_p95: Duration::from_micros(h.value_at_quantile(0.95)),
        }
    }
}

/// Capture-to-output latency, and the steady-state output rate, seen at the first sink.
pub struct LatencyMetrics {
    histogram: Mutex<Histogram<u64>>,
    /// Since the last status line; reset by [`LatencyMetrics::take_recent`].
    recent: Mutex<Histogram<u64>>,
    /// First and last output time and frames output between them.
    window: Mutex<Option<(std::time::Instant, std::time::Instant, u64)>>,
}

impl Default for LatencyMetrics {
    fn default() -> Self {
        LatencyMetrics {
            histogram: Mutex::new(histogram()),
            recent: Mutex::new(histogram()),
            window: Mutex::new(None),
        }
    }
}

impl LatencyMetrics {
    /// Records one frame that reached the output, captured `d` ago.
    pub fn record(&self, d: Duration) {
        let us = (d.as_micros() as u64).max(1);
        if let Ok(mut h) = self.histogram.lock() {
            h.saturating_record(us);
        }
        if let Ok(mut h) = self.recent.lock() {
            h.saturating_record(us);
        }
        if let Ok(mut w) = self.window.lock() {
            let now = std::time::Instant::now();
            *w = Some(match *w {
                None => (now, now, 1),
                Some((first, _, n)) => (first, now, n + 1),
            });
        }
    }

    /// (p50, p95, p99), or None when nothing was recorded.
    pub fn percentiles(&self) -> Option<[Duration; 3]> {
        let h = self.histogram.lock().ok()?;
        if h.is_empty() {
            return None;
        }
        Some([0.5, 0.95, 0.99].map(|q| Duration::from_micros(h.value_at_quantile(q))))
    }

    /// (p50, p95, p99) since the previous call, and the frames they cover; starts over.
    pub fn take_recent(&self) -> Option<([Duration; 3], u64)> {
        let mut h = self.recent.lock().ok()?;
        if h.is_empty() {
            return None;
        }
        let q = [0.5, 0.95, 0.99].map(|q| Duration::from_micros(h.value_at_quantile(q)));
        let n = h.len();
        h.reset();
        Some((q, n))
    }

    /// The whole run's latency histogram (microseconds), for exporting.
    pub fn histogram(&self) -> Histogram<u64> {
        self.histogram
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| histogram())
    }

    /// Frames per second between the first and the last recorded output.
    pub fn steady_fps(&self) -> Option<f64> {
        let (first, last, n) = (*self.window.lock().ok()?)?;
        let span = last.duration_since(first).as_secs_f64();
        (n > 1 && span > 0.0).then(|| (n - 1) as f64 / span)
    }
}

#[derive(Clone, Debug)]
pub struct StageSummary {
    pub name: String,
    pub frames_in: u64,
    pub frames_out: u64,
    pub dropped: u64,
    pub queue_peak: usize,
    /// Times the source lost its stream (sources only).
    pub outages: u64,
    pub reconnects: u64,
    /// Drops by stream id, for the streams that had any.
    pub dropped_by_stream: Vec<(u32, u64)>,
    pub skipped: u64,
    pub busy_total: Duration,
    pub busy_p50: Duration,
    pub busy_p95: Duration,
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub stages: Vec<StageSummary>,
    pub wall: Duration,
    /// Frames that reached every sink.
    pub frames_out: u64,
    /// Capture-to-output latency (p50, p95, p99).
    pub latency: Option<[Duration; 3]>,
    /// Output rate after warm-up, between the first and last frame at the first sink.
    pub steady_fps: Option<f64>,
    /// The run ended because of a signal or a frame limit, not end of stream.
    pub interrupted: bool,
    /// What stages had to say at the end (accuracy, for one), in pipeline order.
    pub summaries: Vec<Summary>,
}

/// A stage's closing figures: a line for the summary and the same as JSON for reports.
#[derive(Clone, Debug)]
pub struct Summary {
    /// What the figures are (`accuracy`); a report's JSON field of that name holds `value`.
    pub key: &'static str,
    pub text: String,
    pub value: serde_json::Value,
}

impl RunReport {
    /// The figures a stage summarized under `key`, if one did.
    pub fn summary(&self, key: &str) -> Option<&Summary> {
        self.summaries.iter().find(|s| s.key == key)
    }
}

impl RunReport {
    pub fn fps(&self) -> f64 {
        self.frames_out as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One stage's figures as `run` and `bench` report them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StageRow {
    pub name: String,
    pub frames_in: u64,
    pub frames_out: u64,
    pub dropped: u64,
    pub busy_p50_ms: f64,
    pub busy_p95_ms: f64,
    /// Busy time over wall time (can exceed 1 with several workers).
    pub share: f64,
    pub queue_peak: usize,
    /// Frames passed on without the stage's work (a time budget ran out).
    pub skipped: u64,
}

impl RunReport {
    pub fn stage_rows(&self) -> Vec<StageRow> {
        let wall = self.wall.as_secs_f64().max(1e-9);
        self.stages
            .iter()
            .map(|s| StageRow {
                name: s.name.clone(),
                frames_in: s.frames_in,
                frames_out: s.frames_out,
                dropped: s.dropped,
                busy_p50_ms: ms(s.busy_p50),
                busy_p95_ms: ms(s.busy_p95),
                share: s.busy_total.as_secs_f64() / wall,
                queue_peak: s.queue_peak,
                skipped: s.skipped,
            })
            .collect()
    }
}

/// The per-stage table of `run`'s summary and `bench`'s report.
pub fn write_stage_table(f: &mut fmt::Formatter<'_>, rows: &[StageRow]) -> fmt::Result {
    writeln!(
        f,
        "{:<14} {:>8} {:>8} {:>8} {:>10} {:>10} {:>7} {:>6}",
        "stage", "in", "out", "dropped", "busy p50", "busy p95", "busy %", "queue"
    )?;
    for s in rows {
        writeln!(
            f,
            "{:<14} {:>8} {:>8} {:>8} {:>8.2}ms {:>8.2}ms {:>6.1}% {:>6}",
            s.name,
            s.frames_in,
            s.frames_out,
            s.dropped,
            s.busy_p50_ms,
            s.busy_p95_ms,
            100.0 * s.share,
            s.queue_peak
        )?;
    }
    for s in rows.iter().filter(|s| s.skipped > 0) {
        writeln!(
            f,
            "{}: {} of {} frames passed through unprocessed (time budget spent)",
            s.name, s.skipped, s.frames_in
        )?;
    }
    Ok(())
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wall = self.wall.as_secs_f64().max(1e-9);
        write_stage_table(f, &self.stage_rows())?;
        write!(
            f,
            "{} frames in {:.2} s: {:.1} fps",
            self.frames_out,
            wall,
            self.fps()
        )?;
        if let Some([p50, p95, p99]) = self.latency {
            write!(
                f,
                "; capture-to-output latency p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
                ms(p50),
                ms(p95),
                ms(p99)
            )?;
        }
        let outages: u64 = self.stages.iter().map(|s| s.outages).sum();
        let back: u64 = self.stages.iter().map(|s| s.reconnects).sum();
        if outages > 0 {
            write!(f, "; {outages} outage(s) of the source")?;
            match outages - back.min(outages) {
                0 => write!(f, ", each reconnected")?,
                down if back == 0 => write!(f, ", not reconnected ({down} still down at the end)")?,
                down => write!(f, ", {back} reconnected, {down} still down at the end")?,
            }
        }
        if self.interrupted {
            write!(f, " (stopped early)")?;
        }
        // Per-stream drops only say more than the table when there are several streams.
        for s in &self.stages {
            if s.dropped_by_stream.len() > 1
                || s.dropped_by_stream.first().is_some_and(|(id, _)| *id != 0)
            {
                let by: Vec<String> = s
                    .dropped_by_stream
                    .iter()
                    .map(|(id, n)| format!("stream {id}: {n}"))
                    .collect();
                write!(f, "\n{} dropped by stream: {}", s.name, by.join(", "))?;
            }
        }
        for s in &self.summaries {
            write!(f, "\n{}", s.text)?;
        }
        Ok(())
    }
}
