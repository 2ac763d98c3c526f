//! `run`'s progress: a bar with frames, FPS and ETA when stderr is a terminal, a plain status
//! line every few seconds otherwise (logs, services).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use segstream::runtime::{Control, StatusMark};

/// `3/10 files, ` when the run works through many files.
fn files(control: &Control) -> String {
    control
        .streams
        .progress()
        .map(|(done, all)| format!("{done}/{all} files, "))
        .unwrap_or_default()
}

pub struct StatusThread {
    done: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl StatusThread {
    /// Stops reporting (the run's own summary follows).
    pub fn finish(self) {
        self.done.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
    }
}

/// Reports every `interval_s` seconds until finished; `limit` is `--frames`.
pub fn spawn(control: Arc<Control>, interval_s: f64, limit: Option<u64>) -> StatusThread {
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let interval = Duration::from_secs_f64(interval_s.max(0.05));
    let handle = std::thread::spawn(move || {
        // Live streams have no end: a spinner with the count; files get a bar and an ETA.
        let style =
            |template: &str| ProgressStyle::with_template(template).expect("valid template");
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(style(
                "{spinner} [{elapsed_precise}] {pos} frames, {wide_msg}",
            ));
            bar
        });
        let mut has_length = false;
        let mut mark = StatusMark::default();
        let mut next = Instant::now() + interval;
        // The bar redraws often; its figures (drops, latency) refresh every interval.
        let tick = if bar.is_some() {
            Duration::from_millis(200).min(interval)
        } else {
            interval
        };
        let mut next_tick = Instant::now() + tick;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            let now = Instant::now();
            if now < next_tick {
                continue;
            }
            next_tick = now + tick;
            let Some(metrics) = control.metrics() else {
                continue;
            };
            let expected = match (control.expected_frames(), limit) {
                (Some(e), Some(l)) => Some(e.min(l)),
                (e, l) => e.or(l),
            };
            match &bar {
                Some(bar) => {
                    if let Some(total) = expected {
                        if !has_length {
                            has_length = true;
                            bar.set_style(style(
                                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} frames, \
                                 ETA {eta}, {wide_msg}",
                            ));
                        }
                        bar.set_length(total);
                    }
                    bar.set_position(metrics.frames_out());
                    if now >= next {
                        next = now + interval;
                        let details = metrics.status(&mut mark, expected).details();
                        bar.set_message(format!("{}{details}", files(&control)));
                    }
                }
                None => {
                    next = now + interval;
                    eprintln!("{}{}", files(&control), metrics.status(&mut mark, expected));
                }
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    });
    StatusThread { done, handle }
}
