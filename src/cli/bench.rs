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

use segstream::frame::{Frame, RgbImage};
use segstream::infer::{
    infer_threads, provider_name, EngineOptions, InferConfig, InferError, Segmenter,
};
use segstream::infer::{ProviderConfig, Task};
use segstream::pipeline::{self, Part, Pipeline, RunOptions};
use segstream::runtime::FullPolicy;
use segstream::runtime::{
    self, write_stage_table, BoxError, Control, Output, PipelineError, Source, Stage, StageRow,
    StageSpec,
};

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
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub frames: u64,
    pub warmup: u64,
    /// Decode a few frames first and replay them from memory, so decoding is excluded.
    pub from_memory: bool,
    /// Model-only passes.
    pub model_runs: usize,
    pub threads: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub gpu: String,
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
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelOnly {
    pub fps: f64,
    pub runs: usize,
    pub median_ms: f64,
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
fn decode_frames(pipeline: &Pipeline, n: u64) -> Result<Vec<Frame>, BenchError> {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let sink = StageSpec::single("keep", Box::new(Keep(kept.clone())), 4, FullPolicy::Block);
    let source = pipeline::sources(pipeline, Some(n))?;
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

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let gpu = if std::path::Path::new("/dev/nvidia0").exists() {
        "NVIDIA (see nvidia-smi)".into()
    } else {
        "none detected".into()
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Machine { cpu, cores, gpu }
}

/// Runs the benchmark.
pub fn bench(pipeline: &Pipeline, options: &BenchOptions) -> Result<BenchReport, BenchError> {
    let total = options.warmup + options.frames;
    let run_options = RunOptions {
        frames: Some(total),
        threads: options.threads,
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
        let source = Box::new(Replay {
            frames: sample.clone(),
            total,
        });
        pipeline::run_with_source(pipeline, &run_options, source, control)?
    } else {
        pipeline::run(pipeline, &run_options, control)?
    };

    let stages = report.stage_rows();

    // The first infer stage: its model alone, same providers, threads and engine options.
    let infer = pipeline.find_transform::<InferConfig>().map(|(_, c)| {
        (
            c.model().clone(),
            c.providers.clone(),
            c.threads,
            c.workers,
            c.batch,
            c.tiling,
        )
    });
    let workers_of = |name: &str| match (name, &infer) {
        ("infer", Some((.., workers, _, _))) => *workers as f64,
        _ => 1.0,
    };
    let bottleneck = stages
        .iter()
        .filter(|s| s.name != "decode" || !options.from_memory)
        .max_by(|a, b| (a.share / workers_of(&a.name)).total_cmp(&(b.share / workers_of(&b.name))))
        .map(|s| s.name.clone())
        .unwrap_or_default();

    let (mut model, mut model_only) = (None, None);
    if let Some((m, providers, threads, workers, batch, tiling)) = infer {
        let threads = infer_threads(threads, workers, options.threads);
        let engine = EngineOptions {
            batch,
            tiling,
            ..Default::default()
        };
        let image: &RgbImage = &sample[0].image;
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
            precision: format!("{:?}", m.config.input.dtype).to_lowercase(),
            frame_size: [image.width, image.height],
            batch,
            workers,
            threads,
            tiling: tiling.is_some(),
        });
        let mut segmenter = Segmenter::new(m, &providers as &[ProviderConfig], threads, engine)?;
        // Warm up the session as the pipeline's was.
        segmenter.time_model(image, 2)?;
        let mut times = segmenter.time_model(image, options.model_runs.max(1))?;
        times.sort();
        let median = times[times.len() / 2];
        model_only = Some(ModelOnly {
            // One worker's session; with several workers the pipeline can exceed it.
            fps: 1.0 / median.as_secs_f64().max(1e-9),
            runs: times.len(),
            median_ms: ms(median),
        });
    }
    let fps = report.steady_fps.unwrap_or_else(|| report.fps());
    Ok(BenchReport {
        segstream_version: env!("CARGO_PKG_VERSION").into(),
        pipeline: pipeline.path.display().to_string(),
        frames: options.frames,
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
fn write_preamble(
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
        "machine: {} ({} cores), GPU: {}",
        machine.cpu, machine.cores, machine.gpu
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
                "\nmodel alone: {:.2} fps (median of {} runs, {:.1} ms); pipeline efficiency {:.3}",
                m.fps, m.runs, m.median_ms, e
            )?;
        }
        if let Some(a) = &self.accuracy {
            write!(f, "\n{a}")?;
        }
        Ok(())
    }
}

/// A precision to sweep: the model config as it is (`float32` or `float16` input), or its
/// variant beside it: `NAME_fp16.toml` for `fp16`, `NAME.toml` for a `NAME_fp16` config's
/// `fp32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    Fp32,
    Fp16,
}

/// An execution provider to sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderKind {
    Cpu,
    Cuda,
    Tensorrt,
}

/// What `bench --models/--providers/--precision` compares; an empty list keeps what the
/// pipeline file says.
#[derive(Clone, Debug, Default)]
pub struct Sweep {
    /// Model config names or paths, each in place of the first infer stage's model.
    pub models: Vec<String>,
    pub providers: Vec<ProviderKind>,
    pub precisions: Vec<Precision>,
}

/// One model, provider and precision of a comparison.
#[derive(Clone, Debug, Serialize)]
pub struct ComparisonRow {
    pub model: String,
    pub provider: String,
    pub precision: String,
    /// False when the combination could not run; `reason` says why.
    pub available: bool,
    pub reason: Option<String>,
    pub fps: Option<f64>,
    pub model_only_fps: Option<f64>,
    pub efficiency: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub bottleneck: Option<String>,
    /// The full bench report of this combination.
    pub report: Option<BenchReport>,
}

/// `bench --models ...`: one run per model, provider and precision, in one process.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub segstream_version: String,
    pub pipeline: String,
    pub frames: u64,
    pub warmup: u64,
    pub from_memory: bool,
    pub machine: Machine,
    pub rows: Vec<ComparisonRow>,
}

fn dtype_name(model: &segstream::infer::Model) -> String {
    format!("{:?}", model.config.input.dtype).to_lowercase()
}

/// The model config of the asked precision: this one, or its variant beside it.
fn variant(
    model: &segstream::infer::Model,
    precision: Precision,
) -> Result<segstream::infer::Model, String> {
    use segstream::infer::InputType;
    let want = match precision {
        Precision::Fp32 => InputType::Float32,
        Precision::Fp16 => InputType::Float16,
    };
    if model.config.input.dtype == want {
        return Ok(model.clone());
    }
    let path = &model.config_path;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match precision {
        Precision::Fp16 => format!("{stem}_fp16.toml"),
        Precision::Fp32 => format!("{}.toml", stem.strip_suffix("_fp16").unwrap_or(&stem)),
    };
    let candidate = path.with_file_name(&name);
    let what = match precision {
        Precision::Fp32 => "float32",
        Precision::Fp16 => "float16",
    };
    if !candidate.is_file() {
        return Err(format!(
            "{} has no {what} variant (expected {})",
            path.display(),
            candidate.display()
        ));
    }
    let found = segstream::infer::Model::load(&candidate).map_err(|e| segstream::one_line(&e))?;
    if found.config.input.dtype != want {
        return Err(format!(
            "{} is {} (expected {what} input)",
            candidate.display(),
            dtype_name(&found)
        ));
    }
    Ok(found)
}

fn provider_config(kind: ProviderKind) -> Vec<ProviderConfig> {
    let kind = match kind {
        ProviderKind::Cpu => return Vec::new(),
        ProviderKind::Cuda => "cuda",
        ProviderKind::Tensorrt => "tensorrt",
    };
    // The same defaults as a pipeline file's `{ kind = "cuda" }`.
    vec![toml::from_str(&format!("kind = \"{kind}\"")).expect("a provider with defaults")]
}

fn providers_label(providers: &[ProviderConfig]) -> String {
    if providers.is_empty() {
        "CPU".into()
    } else {
        providers
            .iter()
            .map(provider_name)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Benchmarks every combination of the sweep; a combination that cannot run (a provider
/// ONNX Runtime cannot register, a missing variant) becomes an unavailable row.
pub fn compare(
    pipeline: &Pipeline,
    options: &BenchOptions,
    sweep: &Sweep,
) -> Result<Comparison, BenchError> {
    let Some((at, infer)) = pipeline.find_transform::<InferConfig>() else {
        return Err(BenchError::NoInfer(pipeline.path.display().to_string()));
    };
    let own_providers = &infer.providers;
    let own_model = infer.model().clone();
    let models: Vec<Result<segstream::infer::Model, String>> = if sweep.models.is_empty() {
        vec![Ok(own_model)]
    } else {
        sweep
            .models
            .iter()
            .map(|m| {
                segstream::infer::resolve_model(&pipeline.path, m)
                    .map_err(|problems| format!("{m}: {}", problems.join("; ")))
            })
            .collect()
    };
    let providers: Vec<Vec<ProviderConfig>> = if sweep.providers.is_empty() {
        vec![own_providers.clone()]
    } else {
        sweep
            .providers
            .iter()
            .map(|&k| provider_config(k))
            .collect()
    };
    let precisions: Vec<Option<Precision>> = if sweep.precisions.is_empty() {
        vec![None]
    } else {
        sweep.precisions.iter().map(|&p| Some(p)).collect()
    };

    let mut rows = Vec::new();
    for (i, model) in models.iter().enumerate() {
        for providers in &providers {
            for &precision in &precisions {
                let label = |m: &Result<segstream::infer::Model, String>| match m {
                    Ok(m) => m.name.clone(),
                    Err(_) => sweep.models.get(i).cloned().unwrap_or_default(),
                };
                let mut row = ComparisonRow {
                    model: label(model),
                    provider: providers_label(providers),
                    precision: match (precision, model) {
                        (Some(Precision::Fp16), _) => "float16".into(),
                        (Some(Precision::Fp32), _) => "float32".into(),
                        (None, Ok(m)) => dtype_name(m),
                        (None, Err(_)) => "-".into(),
                    },
                    available: false,
                    reason: None,
                    fps: None,
                    model_only_fps: None,
                    efficiency: None,
                    latency_p50_ms: None,
                    bottleneck: None,
                    report: None,
                };
                let chosen = model.clone().and_then(|m| match precision {
                    Some(p) => variant(&m, p),
                    None => Ok(m),
                });
                let model = match chosen {
                    Ok(m) if m.config.task != Task::Semantic => Err(format!(
                        "{} is not a semantic segmentation model",
                        m.config_path.display()
                    )),
                    other => other,
                };
                let model = match model {
                    Ok(m) => m,
                    Err(reason) => {
                        row.reason = Some(reason);
                        rows.push(row);
                        continue;
                    }
                };
                let mut variant_pipeline = pipeline.clone();
                variant_pipeline.transforms[at] = Part {
                    kind: "infer",
                    config: Arc::new(InferConfig {
                        model: model.config_path.display().to_string(),
                        providers: providers.clone(),
                        loaded: Some(model),
                        ..infer.clone()
                    }),
                };
                match bench(&variant_pipeline, options) {
                    Ok(report) => {
                        row.available = true;
                        row.fps = Some(report.fps);
                        row.model_only_fps = report.model_only.as_ref().map(|m| m.fps);
                        row.efficiency = report.efficiency;
                        row.latency_p50_ms = report.latency.as_ref().map(|l| l.p50_ms);
                        row.bottleneck = Some(report.bottleneck.clone());
                        row.report = Some(report);
                    }
                    Err(e) => row.reason = Some(segstream::one_line(&e)),
                }
                rows.push(row);
            }
        }
    }
    Ok(Comparison {
        segstream_version: env!("CARGO_PKG_VERSION").into(),
        pipeline: pipeline.path.display().to_string(),
        frames: options.frames,
        warmup: options.warmup,
        from_memory: options.from_memory,
        machine: machine(),
        rows,
    })
}

impl Comparison {
    /// One CSV row per model, provider and precision.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "model,provider,precision,available,fps,model_only_fps,efficiency,latency_p50_ms,\
             bottleneck,reason\n",
        );
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
        for r in &self.rows {
            let reason = r.reason.as_deref().unwrap_or("").replace('"', "'");
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},\"{}\"\n",
                r.model,
                r.provider,
                r.precision,
                r.available,
                opt(r.fps),
                opt(r.model_only_fps),
                opt(r.efficiency),
                opt(r.latency_p50_ms),
                r.bottleneck.as_deref().unwrap_or(""),
                reason
            ));
        }
        out
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let run = format!("FPS per model, {} on", self.pipeline);
        write_preamble(
            f,
            &self.segstream_version,
            &run,
            self.frames,
            self.warmup,
            self.from_memory,
            &self.machine,
        )?;
        let width = self
            .rows
            .iter()
            .map(|r| r.model.len())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(
            f,
            "{:<width$}  {:<9} {:<9} {:>8} {:>10} {:>10} {:>12}  bottleneck",
            "model", "provider", "precision", "fps", "model fps", "efficiency", "latency p50"
        )?;
        for r in &self.rows {
            write!(
                f,
                "{:<width$}  {:<9} {:<9} ",
                r.model, r.provider, r.precision
            )?;
            if r.available {
                let v = |x: Option<f64>, d: usize| x.map_or("-".into(), |x| format!("{x:.d$}"));
                writeln!(
                    f,
                    "{:>8} {:>10} {:>10} {:>9} ms  {}",
                    v(r.fps, 2),
                    v(r.model_only_fps, 2),
                    v(r.efficiency, 3),
                    v(r.latency_p50_ms, 1),
                    r.bottleneck.as_deref().unwrap_or("")
                )?;
            } else {
                writeln!(
                    f,
                    "unavailable: {}",
                    r.reason.as_deref().unwrap_or("unknown")
                )?;
            }
        }
        Ok(())
    }
}
