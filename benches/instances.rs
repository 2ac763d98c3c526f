//! Instance post-processing at 1920x1080, one core: pasting 100 raw 28x28 Mask R-CNN masks
//! into their boxes (torchvision-exact, computed only inside each box) and encoding them as
//! COCO RLE, against the same paste into frame-sized masks (what torchvision materializes).
//!
//! `cargo bench --bench instances` (no model is run).
//!
//! Each case is measured twice: in wall time (criterion's default) and in the thread's CPU
//! time (`CLOCK_THREAD_CPUTIME_ID`), which is the "one core" figure on a machine whose cores
//! are shared with other work (wall time then includes the time spent waiting for a core).

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use segstream::instance::paste::paste;
use segstream::instance::rle;

const W: u32 = 1920;
const H: u32 = 1080;
const N: usize = 100;

/// Seeded xorshift, so every run benches the same boxes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// 100 detections: boxes 16 to 480 pixels a side (log-uniform, as object sizes in street
/// scenes spread), some cut by the frame's edges, and blob-like 28x28 probabilities.
fn detections() -> Vec<([f32; 4], Vec<f32>)> {
    let mut rng = Rng(0x2545F4914F6CDD1D);
    (0..N)
        .map(|_| {
            let bw = 16.0 * 30f32.powf(rng.next());
            let bh = 16.0 * 30f32.powf(rng.next());
            let x = rng.next() * (W as f32 + bw) - bw * 0.8;
            let y = rng.next() * (H as f32 + bh) - bh * 0.8;
            let (cx, cy, r) = (
                8.0 + 12.0 * rng.next(),
                8.0 + 12.0 * rng.next(),
                6.0 + 6.0 * rng.next(),
            );
            let probs = (0..28 * 28)
                .map(|i| {
                    let (px, py) = ((i % 28) as f32, (i / 28) as f32);
                    (-((px - cx).powi(2) + (py - cy).powi(2)) / (r * r)).exp()
                })
                .collect();
            (
                [
                    x.max(0.0),
                    y.max(0.0),
                    (x + bw).min(W as f32),
                    (y + bh).min(H as f32),
                ],
                probs,
            )
        })
        .collect()
}

/// CPU time of the calling thread.
struct ThreadCpuTime;

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Milliseconds of CPU time, and elements per CPU second.
struct CpuFormatter;
impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v *= 1e-6);
        "ms (cpu)"
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match *t {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => n,
            Throughput::Bits(n) => n,
        } as f64;
        values.iter_mut().for_each(|v| *v = n * 1e9 / *v);
        "elem/cpu-s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn bench(c: &mut Criterion) {
    cases(c, "wall");
}

fn bench_cpu(c: &mut Criterion<ThreadCpuTime>) {
    cases(c, "thread cpu");
}

fn cases<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let dets = detections();
    let area: f64 = dets
        .iter()
        .map(|(b, _)| ((b[2] - b[0]) * (b[3] - b[1])) as f64)
        .sum::<f64>()
        / N as f64;
    eprintln!(
        "{N} boxes, mean box area {area:.0} px ({:.1}% of the frame)",
        100.0 * area / (W * H) as f64
    );
    let mut g = c.benchmark_group(format!("100 masks 1920x1080, {clock}"));
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(30);
    g.bench_function("paste (inside boxes)", |b| {
        b.iter(|| {
            dets.iter()
                .map(|(bbox, p)| paste(p, 28, *bbox, W, H).data.len())
                .sum::<usize>()
        })
    });
    g.bench_function("paste + COCO RLE", |b| {
        b.iter(|| {
            dets.iter()
                .map(|(bbox, p)| {
                    rle::encode(&paste(p, 28, *bbox, W, H), W, H)
                        .counts_string()
                        .len()
                })
                .sum::<usize>()
        })
    });
    let masks: Vec<_> = dets
        .iter()
        .map(|(bbox, p)| paste(p, 28, *bbox, W, H))
        .collect();
    g.bench_function("COCO RLE alone", |b| {
        b.iter(|| {
            masks
                .iter()
                .map(|m| rle::encode(m, W, H).counts_string().len())
                .sum::<usize>()
        })
    });
    // Baseline: the same masks materialized at frame size, as torchvision's paste does.
    g.bench_function("baseline: paste into frame-sized masks", |b| {
        b.iter(|| {
            dets.iter()
                .map(|(bbox, p)| {
                    let m = paste(p, 28, *bbox, W, H);
                    let mut full = vec![0u8; (W * H) as usize];
                    for (r, row) in m.data.chunks_exact(m.width.max(1) as usize).enumerate() {
                        let start = ((m.y as usize + r) * W as usize) + m.x as usize;
                        full[start..start + row.len()].copy_from_slice(row);
                    }
                    full.iter().map(|&v| v as usize).sum::<usize>()
                })
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench_cpu
}
criterion_main!(benches, cpu);
