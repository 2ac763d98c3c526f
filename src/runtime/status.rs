//! A running pipeline's figures while it runs: the periodic status line (and progress bar)
//! and the metrics endpoint read them from here.
//!
//! `let status = control.metrics().map(|m| m.status(&mut last));`

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{LatencyMetrics, StageMetrics};

/// Live counters of one run, published on its [`super::Control`] when the run starts.
pub struct RunMetrics {
    /// Every stage in pipeline order: the source, the transforms, the sinks.
    pub stages: Vec<Arc<StageMetrics>>,
    /// Capture-to-output latency at the first sink.
    pub latency: Arc<LatencyMetrics>,
    /// Index in `stages` of the first sink, whose input counts as the pipeline's output.
    pub(crate) output: usize,
    pub started: Instant,
}

/// Where the previous status was taken, for rates over the last interval.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatusMark {
    at: Option<Instant>,
    frames: u64,
}

/// One status reading.
#[derive(Clone, Debug)]
pub struct Status {
    pub elapsed: Duration,
    /// Frames that reached the output so far.
    pub frames: u64,
    /// Output rate since the previous reading.
    pub fps: f64,
    /// Drops per stage that had any.
    pub drops: Vec<(String, u64)>,
    /// Capture-to-output latency (p50, p95, p99) since the previous reading.
    pub latency: Option<[Duration; 3]>,
    /// Times the source lost its stream.
    pub outages: u64,
    /// Frames the source is expected to produce (files with a known duration).
    pub expected: Option<u64>,
    /// Resident memory of the process now, in bytes (Linux).
    pub rss: Option<u64>,
}

/// Resident memory of this process now and at its peak, in bytes, from /proc/self/status
/// (`VmRSS`, `VmHWM`); None where that file does not exist.
pub fn memory() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        let kib: u64 = line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl RunMetrics {
    /// Frames that reached the output so far.
    pub fn frames_out(&self) -> u64 {
        self.stages
            .get(self.output)
            .map(|m| m.frames_in.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Reads the counters; rates and latency cover the time since `mark`, which moves on.
    pub fn status(&self, mark: &mut StatusMark, expected: Option<u64>) -> Status {
        let now = Instant::now();
        let frames = self.frames_out();
        let since = mark.at.unwrap_or(self.started);
        let span = now.duration_since(since).as_secs_f64().max(1e-9);
        let fps = frames.saturating_sub(mark.frames) as f64 / span;
        *mark = StatusMark {
            at: Some(now),
            frames,
        };
        Status {
            elapsed: now.duration_since(self.started),
            frames,
            fps,
            drops: self
                .stages
                .iter()
                .map(|m| (m.name.clone(), m.dropped.load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            latency: self.latency.take_recent().map(|(q, _)| q),
            outages: self
                .stages
                .iter()
                .map(|m| m.outages.load(Ordering::Relaxed))
                .sum(),
            expected,
            rss: memory().map(|(now, _)| now),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Status {
    /// Everything after the frame count, for a progress bar's message.
    pub fn details(&self) -> String {
        let mut s = format!("{:.1} fps", self.fps);
        let dropped: u64 = self.drops.iter().map(|(_, n)| n).sum();
        if dropped > 0 {
            let by: Vec<String> = self
                .drops
                .iter()
                .map(|(stage, n)| format!("{stage} {n}"))
                .collect();
            s.push_str(&format!(", {dropped} dropped ({})", by.join(", ")));
        }
        if let Some([p50, p95, p99]) = self.latency {
            s.push_str(&format!(
                ", latency p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
                ms(p50),
                ms(p95),
                ms(p99)
            ));
        }
        if self.outages > 0 {
            s.push_str(&format!(", {} outage(s)", self.outages));
        }
        if let Some(rss) = self.rss {
            s.push_str(&format!(", memory {:.1} MiB", mib(rss)));
        }
        s
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "status: {}", self.frames)?;
        if let Some(total) = self.expected {
            write!(f, "/{total}")?;
        }
        write!(
            f,
            " frames in {:.1} s, {}",
            self.elapsed.as_secs_f64(),
            self.details()
        )
    }
}
