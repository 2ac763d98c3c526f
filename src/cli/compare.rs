//! bench --providers/--precision: one table comparing execution providers and precisions on
//! the same pipeline, each variant run in the same process and interleaved.

use std::sync::Arc;

use serde::Serialize;

use segstream::infer::{
    provider_name, InferConfig, InputType, PrePost, ProviderConfig, TilingConfig,
};
use segstream::pipeline::{Part, Pipeline};
use segstream::refine::RefineConfig;

use super::bench::{
    bench, decode_frames, machine, write_preamble, BenchError, BenchOptions, BenchReport, Machine,
};

/// A precision to sweep: the model config as it is, or its variant beside it:
/// `NAME_fp16.toml` (float16 input) for `fp16`, `NAME_int8.toml` (a QDQ model) for `int8`,
/// `NAME.toml` for a variant's `fp32`; `bf16` runs the FP32 model under OpenVINO's BF16
/// inference precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    Fp32,
    Fp16,
    Bf16,
    Int8,
}

impl Precision {
    fn label(self) -> &'static str {
        match self {
            Precision::Fp32 => "float32",
            Precision::Fp16 => "float16",
            Precision::Bf16 => "bfloat16",
            Precision::Int8 => "int8",
        }
    }
}

/// An execution provider to sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderKind {
    Cpu,
    Cuda,
    Tensorrt,
    Openvino,
}

/// Where the work around the model runs, to sweep (`pre_post` and `overlap` of the infer
/// stage).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrePostKind {
    /// On the host, overlapped with the model where it can be.
    Host,
    /// On the host, one after the other with the model (`overlap = false`).
    Serial,
    /// In ONNX graphs on the session's execution provider.
    Graph,
    /// In graphs, the frames going in as NV12 planes (converted once from the frames in
    /// memory; needs `--from-memory`).
    GraphNv12,
}

impl PrePostKind {
    /// `pre_post` and `overlap`.
    fn setting(self) -> (PrePost, bool) {
        match self {
            PrePostKind::Host => (PrePost::Host, true),
            PrePostKind::Serial => (PrePost::Host, false),
            PrePostKind::Graph | PrePostKind::GraphNv12 => (PrePost::Graph, false),
        }
    }

    fn label(self) -> &'static str {
        match self {
            PrePostKind::Host => "pre/post host",
            PrePostKind::Serial => "pre/post serial",
            PrePostKind::Graph => "pre/post graph",
            PrePostKind::GraphNv12 => "pre/post graph, NV12",
        }
    }
}

/// What `bench --models/--providers/--precision` compares; an empty list keeps what the
/// pipeline file says.
#[derive(Clone, Debug, Default)]
pub struct Sweep {
    /// Model config names or paths, each in place of the first infer stage's model.
    pub models: Vec<String>,
    pub providers: Vec<ProviderKind>,
    pub precisions: Vec<Precision>,
    /// Also rows for the first model on the first provider with tiling, at half scale and
    /// with the CRF refine stage.
    pub ablations: bool,
    /// Where pre- and post-processing run (host, graph), each its own row.
    pub pre_post: Vec<PrePostKind>,
    /// Rounds over all rows, interleaved; each row reports its median round.
    pub rounds: usize,
}

/// One model, provider and precision of a comparison.
#[derive(Clone, Debug, Serialize)]
pub struct ComparisonRow {
    pub model: String,
    pub provider: String,
    pub precision: String,
    /// What differs from the pipeline file besides model, provider and precision
    /// (`tiling`, `scale 0.5`, `refine`), or `-`.
    pub setup: String,
    /// False when the combination could not run; `reason` says why.
    pub available: bool,
    pub reason: Option<String>,
    pub fps: Option<f64>,
    pub model_only_fps: Option<f64>,
    pub efficiency: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub bottleneck: Option<String>,
    /// With `--eval`: mean IoU against the source's truth, and its change (in points) from
    /// the same model's float32 CPU row.
    pub mean_iou: Option<f64>,
    pub mean_iou_change: Option<f64>,
    /// With `--eval`, for instance models: mask AP (COCO, IoU .50:.95) against the source's
    /// true instances, and its change in points from the model's float32 CPU row.
    pub mask_ap: Option<f64>,
    pub mask_ap_change: Option<f64>,
    /// No other row of the same task is at least as fast and as accurate, and better in
    /// one (with `--eval`; accuracy is mean IoU, or mask AP for instance models).
    pub pareto: Option<bool>,
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
    pub rounds: usize,
    pub machine: Machine,
    pub rows: Vec<ComparisonRow>,
}

/// The model config of the asked precision: this one, or its variant beside it.
fn variant(
    model: &segstream::infer::Model,
    precision: Precision,
) -> Result<segstream::infer::Model, String> {
    let is = |m: &segstream::infer::Model| match precision {
        Precision::Fp32 | Precision::Bf16 => {
            m.config.input.dtype == InputType::Float32 && !m.is_quantized()
        }
        Precision::Fp16 => m.config.input.dtype == InputType::Float16,
        Precision::Int8 => m.is_quantized(),
    };
    if is(model) {
        return Ok(model.clone());
    }
    let path = &model.config_path;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = ["_fp16", "_int8"]
        .iter()
        .find_map(|suffix| stem.strip_suffix(suffix))
        .unwrap_or(&stem);
    let name = match precision {
        Precision::Fp16 => format!("{base}_fp16.toml"),
        Precision::Int8 => format!("{base}_int8.toml"),
        Precision::Fp32 | Precision::Bf16 => format!("{base}.toml"),
    };
    let candidate = path.with_file_name(&name);
    let what = match precision {
        Precision::Fp32 | Precision::Bf16 => "float32",
        Precision::Fp16 => "float16",
        Precision::Int8 => "int8",
    };
    if !candidate.is_file() {
        return Err(format!(
            "{} has no {what} variant (expected {})",
            path.display(),
            candidate.display()
        ));
    }
    let found = segstream::infer::Model::load(&candidate).map_err(|e| segstream::one_line(&e))?;
    if !is(&found) {
        return Err(format!(
            "{} is {} (expected a {what} model)",
            candidate.display(),
            found.precision(&[])
        ));
    }
    Ok(found)
}

/// The providers of a row (the same defaults as a pipeline file's `{ kind = "cuda" }`;
/// OpenVINO with the row's precision as its hint).
fn provider_config(kind: ProviderKind, precision: Option<Precision>) -> Vec<ProviderConfig> {
    let text = match kind {
        ProviderKind::Cpu => return Vec::new(),
        ProviderKind::Cuda => "kind = \"cuda\"".to_string(),
        ProviderKind::Tensorrt => "kind = \"tensorrt\"".to_string(),
        ProviderKind::Openvino => {
            let hint = match precision {
                Some(Precision::Bf16) => "BF16",
                Some(Precision::Fp16) => "FP16",
                Some(Precision::Int8) => "INT8",
                _ => "FP32",
            };
            format!("kind = \"openvino\"\nprecision = \"{hint}\"")
        }
    };
    vec![toml::from_str(&text).expect("a provider with defaults")]
}

/// Why this provider cannot run this precision (for an `instance` model or not), if it cannot.
fn unsupported(kind: ProviderKind, precision: Option<Precision>, instance: bool) -> Option<String> {
    let name = format!("{kind:?}").to_lowercase();
    match (kind, precision) {
        // Measured: OpenVINO's CPU plugin took 400 s to compile the trained slim Mask R-CNN
        // with the FP16 hint (FP32, BF16 and INT8: 1-3 s), so such a row would look hung.
        (ProviderKind::Openvino, Some(Precision::Fp16)) if instance => Some(
            "OpenVINO's CPU device takes minutes to compile torchvision's Mask R-CNN with the \
             FP16 hint (400 s for maskrcnn_mobilenet_v3_synthetic on AVX512-FP16; FP32, BF16 \
             and INT8 compile in seconds)"
                .to_string(),
        ),
        (ProviderKind::Openvino, _) => None,
        (_, Some(Precision::Bf16)) => Some(format!(
            "the {name} provider has no BF16 path for these models here; BF16 runs through \
             OpenVINO (--providers openvino)"
        )),
        (ProviderKind::Cuda | ProviderKind::Tensorrt, Some(Precision::Int8)) => Some(format!(
            "INT8 (QDQ) models run on the cpu and openvino providers; {name} would leave their \
             quantized operators to the CPU"
        )),
        _ => None,
    }
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

/// Mean IoU in a bench report's accuracy, if it was scored.
fn mean_iou(report: &BenchReport) -> Option<f64> {
    report.accuracy.as_ref()?["metrics"]["mean_iou"].as_f64()
}

/// Mask AP in a bench report's accuracy, if instances were scored.
fn mask_ap(report: &BenchReport) -> Option<f64> {
    report.accuracy.as_ref()?["instances"]["ap"].as_f64()
}

/// A row's accuracy: mean IoU (task 0), or mask AP (task 1) for a model without labels.
fn accuracy(row: &ComparisonRow) -> Option<(u8, f64)> {
    row.mean_iou.map(|m| (0, m)).or(row.mask_ap.map(|a| (1, a)))
}

/// One row to run: what it is called, and the pipeline it runs (or why it cannot).
struct Job {
    row: ComparisonRow,
    pipeline: Result<Pipeline, String>,
    /// The frames in memory also carry NV12 planes.
    nv12: bool,
}

fn empty_row(model: String, provider: String, precision: String, setup: &str) -> ComparisonRow {
    ComparisonRow {
        model,
        provider,
        precision,
        setup: setup.into(),
        available: false,
        reason: None,
        fps: None,
        model_only_fps: None,
        efficiency: None,
        latency_p50_ms: None,
        bottleneck: None,
        mean_iou: None,
        mean_iou_change: None,
        mask_ap: None,
        mask_ap_change: None,
        pareto: None,
        report: None,
    }
}

/// The pipeline with the first infer stage's model and providers replaced.
fn with_model(
    pipeline: &Pipeline,
    at: usize,
    infer: &InferConfig,
    model: segstream::infer::Model,
    providers: Vec<ProviderConfig>,
    tiling: Option<TilingConfig>,
) -> Pipeline {
    let mut p = pipeline.clone();
    p.transforms[at] = Part {
        kind: "infer",
        config: Arc::new(InferConfig {
            model: model.config_path.display().to_string(),
            providers,
            tiling,
            loaded: Some(model),
            ..infer.clone()
        }),
    };
    p
}

/// `pipeline` with its infer stage at `at` running pre- and post-processing `where_`,
/// overlapped with the model or not.
fn set_pre_post(pipeline: &mut Pipeline, at: usize, (where_, overlap): (PrePost, bool)) {
    let infer = pipeline.transforms[at]
        .config
        .as_any()
        .downcast_ref::<InferConfig>()
        .expect("the infer stage")
        .clone();
    pipeline.transforms[at].config = Arc::new(InferConfig {
        pre_post: where_,
        overlap,
        ..infer
    });
}

/// Rows for the first model on the first provider: tiled (2x2 tiles, 32 pixels overlap),
/// at half scale (one tile of the half-size frame) and followed by the CRF refine stage.
fn ablations(
    pipeline: &Pipeline,
    at: usize,
    infer: &InferConfig,
    model: &segstream::infer::Model,
    providers: &[ProviderConfig],
) -> Vec<(&'static str, Result<Pipeline, String>)> {
    let size = decode_frames(pipeline, 1)
        .map_err(|e| segstream::one_line(&e))
        .and_then(|f| {
            f.first()
                .map(|f| (f.image.width, f.image.height))
                .ok_or_else(|| "the source gave no frame".to_string())
        });
    let up16 = |v: u32| v.div_ceil(16) * 16;
    let tiled = |scale: f32, overlap: u32| -> Result<Pipeline, String> {
        let (w, h) = size.clone()?;
        let (tw, th) = if scale == 1.0 {
            (up16(w / 2 + overlap), up16(h / 2 + overlap))
        } else {
            (
                up16((w as f32 * scale).ceil() as u32),
                up16((h as f32 * scale).ceil() as u32),
            )
        };
        let tiling: TilingConfig = toml::from_str(&format!(
            "width = {tw}\nheight = {th}\noverlap = {overlap}\nscale = {scale}"
        ))
        .map_err(|e| e.to_string())?;
        model.tile_size(&tiling).map_err(|p| p.join("; "))?;
        Ok(with_model(
            pipeline,
            at,
            infer,
            model.clone(),
            providers.to_vec(),
            Some(tiling),
        ))
    };
    let refined = || -> Result<Pipeline, String> {
        if infer.tiling.is_some() {
            return Err("refine needs scores, which a tiled infer stage does not keep".into());
        }
        let mut p = with_model(pipeline, at, infer, model.clone(), providers.to_vec(), None);
        let refine: RefineConfig = toml::from_str("").map_err(|e| e.to_string())?;
        p.transforms.insert(
            at + 1,
            Part {
                kind: "refine",
                config: Arc::new(refine),
            },
        );
        Ok(p)
    };
    vec![
        ("tiling 2x2", tiled(1.0, 32)),
        ("scale 0.5", tiled(0.5, 0)),
        ("refine (CRF)", refined()),
    ]
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
    let kinds: Vec<Option<ProviderKind>> = if sweep.providers.is_empty() {
        vec![None]
    } else {
        sweep.providers.iter().map(|&k| Some(k)).collect()
    };
    let precisions: Vec<Option<Precision>> = if sweep.precisions.is_empty() {
        vec![None]
    } else {
        sweep.precisions.iter().map(|&p| Some(p)).collect()
    };

    let pre_posts: Vec<Option<PrePostKind>> = if sweep.pre_post.is_empty() {
        vec![None]
    } else {
        sweep.pre_post.iter().map(|&p| Some(p)).collect()
    };

    let mut jobs = Vec::new();
    for (i, model) in models.iter().enumerate() {
        for &kind in &kinds {
            for (&precision, &pre_post) in precisions
                .iter()
                .flat_map(|p| pre_posts.iter().map(move |q| (p, q)))
            {
                let providers = kind.map_or_else(
                    || infer.providers.clone(),
                    |k| provider_config(k, precision),
                );
                let row = empty_row(
                    match model {
                        Ok(m) => m.name.clone(),
                        Err(_) => sweep.models.get(i).cloned().unwrap_or_default(),
                    },
                    providers_label(&providers),
                    match (precision, model) {
                        (Some(p), _) => p.label().into(),
                        (None, Ok(m)) => m.precision(&infer.providers),
                        (None, Err(_)) => "-".into(),
                    },
                    pre_post.map_or("-", PrePostKind::label),
                );
                let instance = model.as_ref().is_ok_and(|m| m.is_instance());
                let providers = match kind.and_then(|k| unsupported(k, precision, instance)) {
                    Some(reason) => Err(reason),
                    None => Ok(providers),
                };
                let chosen = model.clone().and_then(|m| match precision {
                    Some(p) => variant(&m, p),
                    None => Ok(m),
                });
                let first = jobs.is_empty();
                let mut extra = Vec::new();
                let pipeline = chosen.and_then(|m| {
                    let providers = providers?;
                    let first = first && pre_post.is_none_or(|p| p == PrePostKind::Host);
                    if first && sweep.ablations {
                        for (setup, p) in ablations(pipeline, at, infer, &m, &providers) {
                            let mut r = row.clone();
                            r.setup = setup.into();
                            extra.push(Job {
                                row: r,
                                pipeline: p,
                                nv12: false,
                            });
                        }
                    }
                    let mut p = with_model(pipeline, at, infer, m, providers, infer.tiling);
                    if let Some(pre_post) = pre_post {
                        set_pre_post(&mut p, at, pre_post.setting());
                    }
                    Ok(p)
                });
                let nv12 = pre_post == Some(PrePostKind::GraphNv12);
                let pipeline = match pipeline {
                    Ok(_) if nv12 && !options.from_memory => Err("NV12 rows replay frames from \
                        memory (--from-memory); a file or rtsp source with nv12 = true takes \
                        NV12 into the graph row"
                        .to_string()),
                    p => p,
                };
                // The plain row, then its ablations.
                jobs.push(Job {
                    row,
                    pipeline,
                    nv12,
                });
                jobs.extend(extra);
            }
        }
    }

    // Every round runs every row once (A B C A B C ...), so a noisy stretch of the machine
    // hits all rows alike; a row keeps the report of its median-FPS round.
    let mut results: Vec<Result<Vec<BenchReport>, String>> = jobs
        .iter()
        .map(|j| {
            j.pipeline
                .as_ref()
                .map(|_| Vec::new())
                .map_err(Clone::clone)
        })
        .collect();
    for _ in 0..sweep.rounds.max(1) {
        for (job, result) in jobs.iter().zip(results.iter_mut()) {
            let (Ok(p), Ok(reports)) = (&job.pipeline, &mut *result) else {
                continue;
            };
            let options = BenchOptions {
                nv12: job.nv12,
                ..options.clone()
            };
            match bench(p, &options) {
                Ok(report) => reports.push(report),
                Err(e) => *result = Err(segstream::one_line(&e)),
            }
        }
    }
    let mut rows = Vec::new();
    for (Job { mut row, .. }, result) in jobs.into_iter().zip(results) {
        match result {
            Ok(mut reports) => {
                reports.sort_by(|a, b| a.fps.total_cmp(&b.fps));
                let report = reports.swap_remove(reports.len() / 2);
                row.available = true;
                row.fps = Some(report.fps);
                row.model_only_fps = report.model_only.as_ref().map(|m| m.fps);
                row.efficiency = report.efficiency;
                row.latency_p50_ms = report.latency.as_ref().map(|l| l.p50_ms);
                row.bottleneck = Some(report.bottleneck.clone());
                row.mean_iou = mean_iou(&report);
                row.mask_ap = mask_ap(&report);
                row.report = Some(report);
            }
            Err(reason) => row.reason = Some(reason),
        }
        rows.push(row);
    }
    score(&mut rows);
    Ok(Comparison {
        segstream_version: env!("CARGO_PKG_VERSION").into(),
        pipeline: pipeline.path.display().to_string(),
        frames: options.frames,
        warmup: options.warmup,
        from_memory: options.from_memory,
        rounds: sweep.rounds.max(1),
        machine: machine(),
        rows,
    })
}

/// Accuracy change from each model's float32 CPU row, and the Pareto front over FPS and
/// accuracy among rows of the same task.
fn score(rows: &mut [ComparisonRow]) {
    let baseline = |model: &str, rows: &[ComparisonRow]| {
        rows.iter()
            .find(|r| {
                r.model == model
                    && r.provider == "CPU"
                    && r.precision == "float32"
                    && (r.setup == "-" || r.setup == PrePostKind::Host.label())
            })
            .cloned()
    };
    let change = |got: Option<f64>, base: Option<f64>| Some((got? - base?) * 100.0);
    let changes: Vec<(Option<f64>, Option<f64>)> = rows
        .iter()
        .map(|r| {
            let base = baseline(&r.model, rows);
            (
                change(r.mean_iou, base.as_ref().and_then(|b| b.mean_iou)),
                change(r.mask_ap, base.as_ref().and_then(|b| b.mask_ap)),
            )
        })
        .collect();
    let points: Vec<Option<(f64, u8, f64)>> = rows
        .iter()
        .map(|r| {
            let (task, acc) = accuracy(r)?;
            Some((r.fps?, task, acc))
        })
        .collect();
    for (i, row) in rows.iter_mut().enumerate() {
        (row.mean_iou_change, row.mask_ap_change) = changes[i];
        row.pareto = points[i].map(|(fps, task, acc)| {
            !points.iter().enumerate().any(|(j, q)| {
                j != i
                    && q.is_some_and(|(f, t, a)| {
                        t == task && f >= fps && a >= acc && (f > fps || a > acc)
                    })
            })
        });
    }
}

impl Comparison {
    /// One CSV row per model, provider, precision and setup.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "model,provider,precision,setup,available,fps,model_only_fps,efficiency,\
             latency_p50_ms,mean_iou,mean_iou_change,mask_ap,mask_ap_change,pareto,bottleneck,\
             reason\n",
        );
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
        for r in &self.rows {
            let reason = r.reason.as_deref().unwrap_or("").replace('"', "'");
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},\"{}\"\n",
                r.model,
                r.provider,
                r.precision,
                r.setup,
                r.available,
                opt(r.fps),
                opt(r.model_only_fps),
                opt(r.efficiency),
                opt(r.latency_p50_ms),
                opt(r.mean_iou),
                opt(r.mean_iou_change),
                opt(r.mask_ap),
                opt(r.mask_ap_change),
                r.pareto.map_or(String::new(), |p| p.to_string()),
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
        let widest =
            |len: fn(&ComparisonRow) -> usize| self.rows.iter().map(len).max().unwrap_or(5).max(5);
        let (width, setup) = (widest(|r| r.model.len()), widest(|r| r.setup.len()));
        if self.rounds > 1 {
            writeln!(
                f,
                "{} interleaved rounds; each row shows its median-FPS round",
                self.rounds
            )?;
        }
        let scored = self.rows.iter().any(|r| accuracy(r).is_some());
        let masks = self.rows.iter().any(|r| r.mask_ap.is_some());
        write!(
            f,
            "{:<width$}  {:<9} {:<9} {:<setup$} {:>8} {:>10} {:>10} {:>12}",
            "model",
            "provider",
            "precision",
            "setup",
            "fps",
            "model fps",
            "efficiency",
            "latency p50"
        )?;
        if scored {
            write!(f, " {:>9}", "mean IoU")?;
            if masks {
                write!(f, " {:>8}", "mask AP")?;
            }
            write!(f, " {:>7} {:>6}", "change", "pareto")?;
        }
        writeln!(f, "  bottleneck")?;
        for r in &self.rows {
            write!(
                f,
                "{:<width$}  {:<9} {:<9} {:<setup$} ",
                r.model, r.provider, r.precision, r.setup
            )?;
            if r.available {
                let v = |x: Option<f64>, d: usize| x.map_or("-".into(), |x| format!("{x:.d$}"));
                write!(
                    f,
                    "{:>8} {:>10} {:>10} {:>9} ms",
                    v(r.fps, 2),
                    v(r.model_only_fps, 2),
                    v(r.efficiency, 3),
                    v(r.latency_p50_ms, 1),
                )?;
                if scored {
                    let pct =
                        |x: Option<f64>| x.map_or("-".into(), |x| format!("{:.2}%", x * 100.0));
                    write!(f, " {:>9}", pct(r.mean_iou))?;
                    if masks {
                        write!(f, " {:>8}", pct(r.mask_ap))?;
                    }
                    let change = if r.mean_iou.is_some() {
                        r.mean_iou_change
                    } else {
                        r.mask_ap_change
                    };
                    // No float32 CPU row of the same model (or no score): nothing to compare.
                    let change = change.map_or("-".into(), |c| format!("{c:+.2}"));
                    write!(
                        f,
                        " {:>7} {:>6}",
                        change,
                        match r.pareto {
                            Some(true) => "*",
                            _ => "",
                        }
                    )?;
                }
                writeln!(f, "  {}", r.bottleneck.as_deref().unwrap_or(""))?;
            } else {
                writeln!(
                    f,
                    "unavailable: {}",
                    r.reason.as_deref().unwrap_or("unknown")
                )?;
            }
        }
        if scored {
            writeln!(
                f,
                "change: mean IoU (mask AP for instance models) points from the model's \
                 float32 CPU row; pareto (*): no other row of the same task is both faster \
                 and more accurate"
            )?;
        }
        Ok(())
    }
}
