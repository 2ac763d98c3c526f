//! The runtime on small stages: order, back-pressure, drops, failures and shutdown.

use super::*;
use crate::frame::RgbImage;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
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
    StageSpec::single(name, stage, capacity, policy)
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

/// Sleeps a pseudo-random time per frame, so parallel workers finish out of order.
struct Jitter;

impl Stage for Jitter {
    fn process(&mut self, frame: Frame, out: &mut Output) -> Result<(), BoxError> {
        std::thread::sleep(Duration::from_micros((frame.seq * 7919 % 13) * 100));
        out.send(frame)?;
        Ok(())
    }
}

#[test]
fn parallel_workers_keep_arrival_order() {
    for batch in [1, 3] {
        let (sink, seen, _) = collector(None);
        let report = run(
            Box::new(Counter(200)),
            vec![StageSpec {
                name: "jitter".into(),
                workers: (0..3).map(|_| Box::new(Jitter) as Box<dyn Stage>).collect(),
                batch,
                capacity: 4,
                policy: FullPolicy::Block,
                ordered: None,
            }],
            vec![spec("sink", Box::new(sink), 4, FullPolicy::Block)],
            Arc::new(Control::default()),
        )
        .unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            (0..200).collect::<Vec<_>>(),
            "batch {batch}"
        );
        assert_eq!(report.stages[1].frames_in, 200);
        assert_eq!(report.stages[1].frames_out, 200);
    }
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
