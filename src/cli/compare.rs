//! bench --providers/--precision: one table comparing execution providers and precisions on
//! the same pipeline, each variant run in the same process and interleaved.

use std::sync::Arc;

use serde::Serialize;

use segstream::infer::{provider_name, InferConfig, ProviderConfig, Task};
use segstream::pipeline::{Part, Pipeline};

use super::bench::{
    bench, machine, write_preamble, BenchError, BenchOptions, BenchReport, Machine,
};

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
