//! The dense CRF against Krähenbühl's densecrf (pydensecrf2) on the same 1920x1080 frame,
//! 19 classes, 5 iterations, DeepLab's parameters: the reference timed in a Python
//! subprocess, segstream in-process on one thread, then with all cores and at 1/2 and 1/4
//! scale. Prints the ratio.
//!
//! `cargo bench --bench crf` (needs the Python environment of scripts/setup).
//! `CRF_BENCH_SIZE=960x540` changes the frame size; `CRF_BENCH_REFERENCE=0` skips densecrf.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use segstream::frame::Geometry;
use segstream::frame::{Alignment, ClassScores, RgbImage, ScoreKind, Upsampling};
use segstream::refine::{refine_frame, refine_labels_in, CrfParams, Workspace};

const CLASSES: usize = 19;

fn python() -> PathBuf {
    std::env::var_os("SEGSTREAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/segstream/venv/bin/python")
        })
}

fn script(args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python())
        .arg(root.join("tests/reference/densecrf.py"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (run scripts/setup)", python().display()));
    assert!(
        out.status.success(),
        "densecrf.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The frame and its class probabilities, as the reference script made them.
fn load(dir: &Path, w: u32, h: u32) -> (RgbImage, ClassScores) {
    let file = std::fs::File::open(dir.join("image.png")).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut data = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut data).unwrap();
    data.truncate(info.buffer_size());
    let image = RgbImage::new(w, h, data);
    let probs: Vec<f32> = std::fs::read(dir.join("probs.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let scores = ClassScores {
        kind: ScoreKind::Probabilities,
        classes: CLASSES,
        width: w,
        height: h,
        data: probs,
        geometry: Geometry {
            frame_width: w,
            frame_height: h,
            model_width: w,
            model_height: h,
            stretched: false,
        },
        upsampling: None,
    };
    (image, scores)
}

/// Every fourth sample of `s` (rows and columns, the last row clamped), as the scores before
/// a final x4 Resize with corners aligned over a model input padded to a multiple of 16.
fn quarter_resolution(s: &ClassScores) -> ClassScores {
    let (w, h) = (s.width as usize, s.height as usize);
    let (mw, mh) = (w.div_ceil(16) * 16, h.div_ceil(16) * 16);
    let (lw, lh) = (mw / 4, mh / 4);
    let mut data = Vec::with_capacity(s.classes * lw * lh);
    for plane in s.data.chunks_exact(w * h) {
        for y in 0..lh {
            let row = &plane[(4 * y).min(h - 1) * w..][..w];
            data.extend((0..lw).map(|x| row[(4 * x).min(w - 1)]));
        }
    }
    ClassScores {
        kind: s.kind,
        classes: s.classes,
        width: lw as u32,
        height: lh as u32,
        data,
        geometry: Geometry {
            model_width: mw as u32,
            model_height: mh as u32,
            ..s.geometry
        },
        upsampling: Some(Upsampling {
            factor: (4, 4),
            alignment: Alignment::Corners,
        }),
    }
}

/// CPU time of this process so far (user + system), from /proc (10 ms resolution).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    let ticks = f.iter().sum::<u64>();
    Duration::from_millis(ticks * 10)
}

/// Wall time of `f`, the median of an odd 3 to 15 runs (as many as take about a second,
/// so the quick 1/4-scale figures get more on a noisy machine) after one to warm up
/// (steady-state video reuses each thread's buffers from frame to frame).
fn warm_median(mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64().max(1e-3);
    let runs = ((1.0 / once) as usize).clamp(3, 15) | 1;
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(c: &mut Criterion) {
    let size = std::env::var("CRF_BENCH_SIZE").unwrap_or_else(|_| "1920x1080".into());
    let (w, h) = size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .expect("CRF_BENCH_SIZE is WIDTHxHEIGHT");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ws, hs, cs) = (w.to_string(), h.to_string(), CLASSES.to_string());
    script(&[
        "make",
        "--width",
        &ws,
        "--height",
        &hs,
        "--seed",
        "5",
        "--classes",
        &cs,
        "--dir",
        d,
    ]);
    let (image, scores) = load(dir.path(), w, h);
    let params = CrfParams::default();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let cores = rayon::current_num_threads();
    let run = |scale: u32| refine_frame(&image, &scores, &params, scale, &|| false).unwrap();

    // The headline ratio, on one thread each: wall time, and CPU time, which a busy
    // machine disturbs less.
    let reference = (std::env::var("CRF_BENCH_REFERENCE").as_deref() != Ok("0")).then(|| {
        let out = script(&["time", "--dir", d, "--classes", &cs, "--runs", "3"]);
        let field = |k: &str| -> Duration {
            let at = out
                .find(&format!("\"{k}\": "))
                .expect("times in the reference's output")
                + k.len()
                + 4;
            let secs: f64 = out[at..]
                .split(|c: char| c != '.' && c != 'e' && c != '-' && !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
            Duration::from_secs_f64(secs)
        };
        (field("seconds"), field("cpu_seconds"))
    });
    // Warm up once: steady-state video reuses each thread's buffers from frame to frame.
    one.install(|| run(1));
    let (walls, cpus): (Vec<Duration>, Vec<Duration>) = (0..3)
        .map(|_| {
            let (t, c) = (Instant::now(), cpu_time());
            one.install(|| run(1));
            (t.elapsed(), cpu_time().saturating_sub(c))
        })
        .unzip();
    let (ours_one, ours_cpu) = (median(walls), median(cpus));
    // Exact mean field (no pixel settles), and how many labels settling changed.
    let exact = CrfParams {
        settle: 1.0,
        ..params
    };
    let run_exact = |scale: u32| refine_frame(&image, &scores, &exact, scale, &|| false).unwrap();
    let ours_exact = warm_median(|| drop(one.install(|| run_exact(1))));
    let agree = |scale: u32| {
        let (a, b) = (run(scale).0, run_exact(scale).0);
        a.data.iter().zip(&b.data).filter(|(x, y)| x != y).count()
    };
    let (agree_all, agree_quarter) = (agree(1), agree(4));
    // The same on one thread as the refine stage runs it when no later stage reads the
    // frame's scores: labels only, no probability planes made.
    let mut ws = Workspace::default();
    let labels_only = || {
        drop(one.install(|| {
            refine_labels_in(&mut ws, &image, &scores, &params, 1, false, &|| false).unwrap()
        }))
    };
    let ours_labels = warm_median(labels_only);
    let timed = |scale: u32| warm_median(|| drop(run(scale)));
    let (all, half, quarter) = (timed(1), timed(2), timed(4));
    // At 1/4 scale from scores at a quarter of the resolution, as infer hands them on when
    // it took DeepLabV3+'s final x4 Resize off the model (`fuse_resize`): every fourth
    // sample of the same probabilities, read through that Resize (corners aligned).
    let low = quarter_resolution(&scores);
    let quarter_low =
        warm_median(|| drop(refine_frame(&image, &low, &params, 4, &|| false).unwrap()));
    let quarter_low_exact =
        warm_median(|| drop(refine_frame(&image, &low, &exact, 4, &|| false).unwrap()));
    // Throughput at 1/4 scale as a refine stage with `workers = cores, threads = 1` runs
    // it: one frame per core at a time, each on its own one-thread pool.
    let frames = 4;
    let pools: Vec<rayon::ThreadPool> = (0..cores)
        .map(|_| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap()
        })
        .collect();
    std::thread::scope(|s| {
        for p in &pools {
            s.spawn(|| p.install(|| run(4)));
        }
    });
    let t = Instant::now();
    std::thread::scope(|s| {
        for p in &pools {
            s.spawn(|| p.install(|| (0..frames).for_each(|_| drop(run(4)))));
        }
    });
    let quarter_each = t.elapsed() / (cores * frames) as u32;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "dense CRF, {w}x{h}, {CLASSES} classes, {} iterations:",
        params.iterations
    );
    if let Some((wall, cpu)) = reference {
        println!(
            "  densecrf (pydensecrf2), 1 thread:  {:>8.1} ms wall, {:>8.1} ms CPU",
            ms(wall),
            ms(cpu)
        );
    }
    println!(
        "  segstream, 1 thread:               {:>8.1} ms wall, {:>8.1} ms CPU",
        ms(ours_one),
        ms(ours_cpu)
    );
    if let Some((wall, cpu)) = reference {
        println!(
            "  speed-up on one thread:            {:>8.2}x wall, {:>7.2}x CPU",
            wall.as_secs_f64() / ours_one.as_secs_f64(),
            cpu.as_secs_f64() / ours_cpu.as_secs_f64().max(1e-9)
        );
    }
    println!(
        "  segstream, 1 thread, labels only (no later stage reads the scores): {:>6.1} ms",
        ms(ours_labels)
    );
    println!(
        "  segstream, 1 thread, exact (settle = 1): {:>8.1} ms wall{}",
        ms(ours_exact),
        reference.map_or(String::new(), |(wall, _)| format!(
            ", {:.2}x densecrf",
            wall.as_secs_f64() / ours_exact.as_secs_f64()
        ))
    );
    println!(
        "  labels other than exact mean field's (settle = {}): {agree_all} of {} pixels at \
         full scale, {agree_quarter} at 1/4 scale",
        params.settle,
        w * h
    );
    println!(
        "  segstream, {cores} threads:              {:>8.1} ms",
        all.as_secs_f64() * 1e3
    );
    println!(
        "  segstream, {cores} threads, 1/2 scale:   {:>8.1} ms",
        half.as_secs_f64() * 1e3
    );
    println!(
        "  segstream, {cores} threads, 1/4 scale:   {:>8.1} ms",
        quarter.as_secs_f64() * 1e3
    );
    println!(
        "  segstream, 1/4 scale, {cores} frames at once, 1 thread each: {:>6.1} ms per frame",
        quarter_each.as_secs_f64() * 1e3
    );
    println!(
        "  segstream, {cores} threads, 1/4 scale, from 1/4-resolution scores: {:>6.1} ms \
         (exact: {:.1} ms)",
        ms(quarter_low),
        ms(quarter_low_exact)
    );

    let mut g = c.benchmark_group(format!("crf {w}x{h}"));
    g.sample_size(10);
    g.bench_function("1 thread", |b| b.iter(|| one.install(|| run(1))));
    g.bench_function(format!("{cores} threads"), |b| b.iter(|| run(1)));
    g.bench_function(format!("{cores} threads, 1/2 scale"), |b| b.iter(|| run(2)));
    g.bench_function(format!("{cores} threads, 1/4 scale"), |b| b.iter(|| run(4)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
