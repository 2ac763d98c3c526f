//! bench: how many frames per second a pipeline gives on this machine, where the time goes,
//! and how close the pipeline comes to what its model alone can do.
//!
//! `segstream bench pipelines/file_to_mp4.toml --frames 100 --warmup 10 --from-memory`
//!
//! The pipeline runs as usual (or on frames held in memory, so decoding is excluded); the
//! first `warmup` frames are processed but not measured. Then, in the same process, the
//! first infer stage's model runs alone in a plain loop on the same pre-processed input with
//! the same execution providers and threads. Efficiency = end-to-end FPS / model-only FPS.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use segstream::frame::{Frame, RgbImage, Upsampling};
use segstream::infer::ProviderConfig;
use segstream::infer::{
    infer_threads, provider_name, EngineOptions, InferConfig, InferError, Model, Segmenter,
};
use segstream::pipeline::{self, Pipeline, RunOptions};
use segstream::runtime::FullPolicy;
use segstream::runtime::{
    self, write_stage_table, BoxError, Control, Output, PipelineError, Source, Stage, StageRow,
    StageSpec,
};
use segstream::source::gst::rgb_to_nv12;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Model(#[from] InferError),
    #[error("{0} produced no frames to benchmark with")]
    NoFrames(String),
    #[error("{0} has no infer transform to compare models in")]
    NoInfer(String),
    #[error("cannot convert the frames in memory to NV12: {0}")]
    Nv12(String),
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub frames: u64,
    pub warmup: u64,
    /// Decode a few frames first and replay them from memory, so decoding is excluded.
    pub from_memory: bool,
    /// The frames in memory also carry NV12 planes (BT.709, limited range, converted once),
    /// for an infer stage with `pre_post = "graph"` to take.
    pub nv12: bool,
    /// Model-only passes.
    pub model_runs: usize,
    pub threads: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub gpu: String,
    /// Of avx2, avx512f, avx512_vnni, avx512_bf16, avx512_fp16, amx_int8 and amx_bf16:
    /// those this CPU has.
    pub cpu_features: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub execution_provider: String,
    pub precision: String,
    pub frame_size: [u32; 2],
    pub batch: usize,
    pub workers: usize,
    pub threads: usize,
    pub tiling: bool,
    /// The model's final Resize of its scores, when it was taken off the graph and the
    /// argmax does it (`fuse_resize`), e.g. `x4 align_corners`: the model alone runs
    /// without it too.
    pub resize_in_argmax: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelOnly {
    /// Frames per second of all the sessions together.
    pub fps: f64,
    /// Sessions timed at once: the infer stage's workers.
    pub sessions: usize,
    /// Runs per session.
    pub runs: usize,
    /// Median time of one run (with several sessions, while the others run too).
    pub median_ms: f64,
}

/// The model alone as the infer stage runs it: one session per worker, each with the
/// stage's threads, all timed at once (after two warm-up runs each, as the pipeline's
/// sessions were warm), so several workers' combined throughput is the baseline, not one
/// session's. FPS is sessions / median run time. Also the up-sampling the argmax does in
/// the model's place, when its final Resize came off.
fn model_alone(
    model: &Model,
    providers: &[ProviderConfig],
    threads: usize,
    engine: EngineOptions,
    sessions: usize,
    image: &RgbImage,
    runs: usize,
) -> Result<(ModelOnly, Option<Upsampling>), BenchError> {
    let mut segmenters = (0..sessions)
        .map(|_| {
            let mut s = Segmenter::new(model.clone(), providers, threads, engine)?;
            s.time_model(image, 2)?;
            Ok(s)
        })
        .collect::<Result<Vec<_>, InferError>>()?;
    let timed: Vec<Result<Vec<Duration>, InferError>> = std::thread::scope(|scope| {
        let running: Vec<_> = segmenters
            .iter_mut()
            .map(|s| scope.spawn(move || s.time_model(image, runs)))
            .collect();
        running
            .into_iter()
            .map(|h| h.join().expect("a model-alone thread panicked"))
            .collect()
    });
    let mut times = Vec::with_capacity(sessions * runs);
    for t in timed {
        times.extend(t?);
    }
    times.sort();
    let median = times[times.len() / 2];
    let alone = ModelOnly {
        fps: sessions as f64 / median.as_secs_f64().max(1e-9),
        sessions,
        runs,
        median_ms: ms(median),
    };
    Ok((alone, segmenters[0].upsampling()))
}

/// Everything `bench` reports; also its JSON form.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub segstream_version: String,
    pub pipeline: String,
    pub frames: u64,
    pub warmup: u64,
    pub from_memory: bool,
    pub machine: Machine,
    pub model: Option<ModelInfo>,
    pub fps: f64,
    pub latency: Option<Latency>,
    pub stages: Vec<StageRow>,
    /// The stage with the largest busy share per worker.
    pub bottleneck: String,
    pub model_only: Option<ModelOnly>,
    /// End-to-end FPS over model-only FPS.
    pub efficiency: Option<f64>,
    /// Accuracy against the source's ground truth over every frame (warm-up included),
    /// with `--eval`.
    pub accuracy: Option<serde_json::Value>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Replays frames held in memory as a fresh stream.
struct Replay {
    frames: Vec<Frame>,
    total: u64,
}

impl Source for Replay {
    fn run(&mut self, out: &mut Output) -> Result<(), BoxError> {
        for seq in 0..self.total {
            if out.stop_requested() {
                break;
            }
            let mut frame = self.frames[(seq % self.frames.len() as u64) as usize].clone();
            frame.seq = seq;
            frame.captured = Instant::now();
            out.send(frame)?;
        }
        Ok(())
    }
}

/// Keeps the frames it receives.
struct Keep(Arc<Mutex<Vec<Frame>>>);

impl Stage for Keep {
    fn process(&mut self, frame: Frame, _out: &mut Output) -> Result<(), BoxError> {
        self.0.lock().expect("not poisoned").push(frame);
        Ok(())
    }
}

/// Decodes up to `n` frames of the pipeline's source.
pub(super) fn decode_frames(pipeline: &Pipeline, n: u64) -> Result<Vec<Frame>, BenchError> {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let sink = StageSpec::single("keep", Box::new(Keep(kept.clone())), 4, FullPolicy::Block);
    let source = pipeline::sources(pipeline, Some(n), None)?;
    runtime::run(source, vec![], vec![sink], Arc::new(Control::default()))?;
    let frames = std::mem::take(&mut *kept.lock().expect("not poisoned"));
    if frames.is_empty() {
        let described = pipeline
            .sources
            .iter()
            .map(|s| s.config.describe())
            .collect::<Vec<_>>();
        return Err(BenchError::NoFrames(described.join(", ")));
    }
    Ok(frames)
}

/// The CPU features that decide which precision wins, as /proc/cpuinfo names them.
const CPU_FEATURES: [&str; 7] = [
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_int8",
    "amx_bf16",
];

pub(super) fn machine() -> Machine {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_owned())
    };
    let cpu = field("model name").unwrap_or_else(|| "unknown".into());
    let flags = field("flags").unwrap_or_default();
    let cpu_features = CPU_FEATURES
        .iter()
        .filter(|f| flags.split(' ').any(|g| g == **f))
        .map(|f| f.to_string())
        .collect();
    let gpu = if std::path::Path::new("/dev/nvidia0").exists() {
        "NVIDIA (see nvidia-smi)".into()
    } else {
        "none detected".into()
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Machine {
        cpu,
        cores,
        gpu,
        cpu_features,
    }
}

/// Runs the benchmark.
pub fn bench(pipeline: &Pipeline, options: &BenchOptions) -> Result<BenchReport, BenchError> {
    let total = options.warmup + options.frames;
    // A folder of files is run whole: per-file start-up is part of what it measures.
    let many = pipeline.many().is_some();
    let run_options = RunOptions {
        frames: (!many).then_some(total),
        threads: options.threads,
        ..RunOptions::default()
    };
    let control = Arc::new(Control::with_warmup(options.warmup));
    let sample = decode_frames(
        pipeline,
        if options.from_memory {
            total.min(30)
        } else {
            1
        },
    )?;
    let report = if options.from_memory {
        let mut frames = sample.clone();
        if options.nv12 {
            for frame in frames.iter_mut().filter(|f| f.yuv.is_none()) {
                let planes = rgb_to_nv12(&frame.image).map_err(BenchError::Nv12)?;
                frame.yuv = Some(Arc::new(planes));
            }
        }
        let source = Box::new(Replay { frames, total });
        pipeline::run_with_source(pipeline, &run_options, source, control)?
    } else {
        pipeline::run(pipeline, &run_options, control)?
    };

    let stages = report.stage_rows();

    // The first infer stage: its model alone, same providers, threads and engine options.
    let wanted = pipeline.wanted();
    let infer = pipeline.find_transform::<InferConfig>().map(|(i, c)| {
        (
            c.model().clone(),
            c.providers.clone(),
            c.threads,
            c.workers,
            c.engine(wanted[i]),
        )
    });
    let workers_of = |name: &str| match (name, &infer) {
        ("infer", Some((.., workers, _))) => *workers as f64,
        _ => 1.0,
    };
    let bottleneck = stages
        .iter()
        .filter(|s| s.name != "decode" || !options.from_memory)
        .max_by(|a, b| (a.share / workers_of(&a.name)).total_cmp(&(b.share / workers_of(&b.name))))
        .map(|s| s.name.clone())
        .unwrap_or_default();

    let (mut model, mut model_only) = (None, None);
    if let Some((m, providers, threads, workers, stage)) = infer {
        let sharing = pipeline.sessions_sharing_cores().max(workers);
        let threads = infer_threads(threads, sharing, options.threads);
        // The model's session alone, fed on the host, as the stage's sessions hold it
        // (whole, or without its final Resize).
        let engine = EngineOptions {
            batch: stage.batch,
            tiling: stage.tiling,
            fuse_resize: stage.fuses_resize(&m),
            ..Default::default()
        };
        let image: &RgbImage = &sample[0].image;
        let (alone, upsampling) = model_alone(
            &m,
            &providers,
            threads,
            engine,
            workers.max(1),
            image,
            options.model_runs.max(1),
        )?;
        model = Some(ModelInfo {
            name: m.name.clone(),
            execution_provider: if providers.is_empty() {
                "CPU".into()
            } else {
                providers
                    .iter()
                    .map(provider_name)
                    .collect::<Vec<_>>()
                    .join(",")
            },
            precision: m.precision(&providers),
            frame_size: [image.width, image.height],
            batch: stage.batch,
            workers,
            threads,
            tiling: stage.tiling.is_some(),
            resize_in_argmax: upsampling.map(|u| u.to_string()),
        });
        model_only = Some(alone);
    }
    let fps = report.steady_fps.unwrap_or_else(|| report.fps());
    Ok(BenchReport {
        segstream_version: env!("CARGO_PKG_VERSION").into(),
        pipeline: pipeline.path.display().to_string(),
        frames: if many {
            report.frames_out.saturating_sub(options.warmup)
        } else {
            options.frames
        },
        warmup: options.warmup,
        from_memory: options.from_memory,
        machine: machine(),
        model,
        fps,
        latency: report.latency.map(|[p50, p95, p99]| Latency {
            p50_ms: ms(p50),
            p95_ms: ms(p95),
            p99_ms: ms(p99),
        }),
        stages,
        bottleneck,
        efficiency: model_only.as_ref().map(|m| fps / m.fps),
        model_only,
        accuracy: report.summary("accuracy").map(|s| s.value.clone()),
    })
}

impl BenchReport {
    /// One CSV row per stage, with the run's figures repeated on every row.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "pipeline,stage,frames_in,frames_out,dropped,busy_p50_ms,busy_p95_ms,share,queue_peak,\
             fps,model_only_fps,efficiency,bottleneck\n",
        );
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
        for s in &self.stages {
            out.push_str(&format!(
                "{},{},{},{},{},{:.3},{:.3},{:.4},{},{:.4},{},{},{}\n",
                self.pipeline,
                s.name,
                s.frames_in,
                s.frames_out,
                s.dropped,
                s.busy_p50_ms,
                s.busy_p95_ms,
                s.share,
                s.queue_peak,
                self.fps,
                opt(self.model_only.as_ref().map(|m| m.fps)),
                opt(self.efficiency),
                self.bottleneck
            ));
        }
        out
    }
}

/// The first two lines of a report: what ran, on how many frames, and on which machine.
pub(super) fn write_preamble(
    f: &mut std::fmt::Formatter<'_>,
    version: &str,
    run: &str,
    frames: u64,
    warmup: u64,
    from_memory: bool,
    machine: &Machine,
) -> std::fmt::Result {
    let memory = if from_memory {
        ", frames from memory (decode excluded)"
    } else {
        ""
    };
    writeln!(
        f,
        "segstream {version} {run} {frames} frames after {warmup} warm-up{memory}"
    )?;
    writeln!(
        f,
        "machine: {} ({} cores; {}), GPU: {}",
        machine.cpu,
        machine.cores,
        if machine.cpu_features.is_empty() {
            "no AVX2".to_string()
        } else {
            machine.cpu_features.join(" ")
        },
        machine.gpu
    )
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let run = format!("bench of {}:", self.pipeline);
        write_preamble(
            f,
            &self.segstream_version,
            &run,
            self.frames,
            self.warmup,
            self.from_memory,
            &self.machine,
        )?;
        if let Some(m) = &self.model {
            writeln!(
                f,
                "model: {} on {}, {}, frame {}x{}, batch {}, {} worker(s) x {} thread(s) (0 = ONNX Runtime default){}",
                m.name,
                m.execution_provider,
                m.precision,
                m.frame_size[0],
                m.frame_size[1],
                m.batch,
                m.workers,
                m.threads,
                if m.tiling { ", tiled" } else { "" }
            )?;
            if let Some(r) = &m.resize_in_argmax {
                writeln!(
                    f,
                    "  its final {r} Resize of the scores is done by the argmax (fuse_resize)"
                )?;
            }
        }
        write_stage_table(f, &self.stages)?;
        write!(f, "end-to-end: {:.2} fps", self.fps)?;
        if let Some(l) = &self.latency {
            write!(
                f,
                "; latency p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
                l.p50_ms, l.p95_ms, l.p99_ms
            )?;
        }
        write!(f, "\nbottleneck: {}", self.bottleneck)?;
        if let (Some(m), Some(e)) = (&self.model_only, self.efficiency) {
            write!(
                f,
                "\nmodel alone: {:.2} fps ({}median of {} runs, {:.1} ms); pipeline efficiency {:.3}",
                m.fps,
                match m.sessions {
                    1 => String::new(),
                    n => format!("{n} sessions at once, "),
                },
                m.runs,
                m.median_ms,
                e
            )?;
        }
        if let Some(a) = &self.accuracy {
            write!(f, "\n{a}")?;
        }
        Ok(())
    }
}
