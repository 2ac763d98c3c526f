//! Turns a validated pipeline file into running stages.

use std::sync::Arc;

use crate::composite::Composite;
use crate::config::Task;
use crate::config::{
    stream_path, FullPolicy, Pipeline, QueueConfig, SinkConfig, SourceConfig, TransformConfig,
    STREAM_PLACEHOLDER,
};
use crate::decode::Decode;
use crate::delay::Delay;
use crate::eval::EvalSink;
use crate::infer::{EngineOptions, Infer};
use crate::instance::maps::Classes;
use crate::refine::{CrfParams, Refine, RefineOptions};
use crate::runtime::{self, Control, PipelineError, RunReport, StageSpec};
use crate::sink::{JsonlSink, NullSink, PerStream, PngSink, VideoSink, VideoSinkKind};
use crate::synthetic::Synthetic;

/// Per-run knobs from the command line.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Stop after this many frames.
    pub frames: Option<u64>,
    /// Overrides every infer stage's thread count.
    pub threads: Option<usize>,
}

fn spec(name: &str, stage: Box<dyn runtime::Stage>, queue: &QueueConfig, live: bool) -> StageSpec {
    let default = if live {
        FullPolicy::DropOldest
    } else {
        FullPolicy::Block
    };
    StageSpec::single(
        name,
        stage,
        queue.capacity,
        queue.when_full.unwrap_or(default),
    )
}

fn is_template(path: &std::path::Path) -> bool {
    path.to_string_lossy().contains(STREAM_PLACEHOLDER)
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Builds and runs the pipeline to the end; `control` lets a signal handler stop it.
pub fn run(
    pipeline: &Pipeline,
    options: &RunOptions,
    control: Arc<Control>,
) -> Result<RunReport, PipelineError> {
    let sources = &pipeline.config.sources;
    let source = if sources.len() > 1 {
        Box::new(runtime::Merge(
            sources.iter().map(|s| source(s, options.frames)).collect(),
        ))
    } else {
        source(&pipeline.config.source, options.frames)
    };
    run_with_source(pipeline, options, source, control)
}

/// The source for a source config: GStreamer's decode, or the synthetic scene.
pub fn source(config: &SourceConfig, frames: Option<u64>) -> Box<dyn runtime::Source> {
    match *config {
        SourceConfig::Synthetic {
            width,
            height,
            fps,
            frames: n,
            seed,
        } => Box::new(Synthetic {
            width,
            height,
            fps,
            frames: frames.map_or(n, |f| f.min(n)),
            seed,
        }),
        _ => Box::new(Decode::new(config.clone(), frames)),
    }
}

/// The infer stage's thread count: unless set, the workers share the cores.
pub fn infer_threads(threads: usize, workers: usize, over: Option<usize>) -> usize {
    match over.unwrap_or(threads) {
        0 if workers > 1 => (cores() / workers).max(1),
        n => n,
    }
}

/// Runs the pipeline's stages on frames from `source` instead of its own.
pub fn run_with_source(
    pipeline: &Pipeline,
    options: &RunOptions,
    source: Box<dyn runtime::Source>,
    control: Arc<Control>,
) -> Result<RunReport, PipelineError> {
    let config = &pipeline.config;
    let live = config.is_live();

    // Class names of the semantic and instance models, for labels, JSONL and panoptic maps.
    let mut classes = Classes::default();
    for model in pipeline.models.iter().flatten() {
        let names = model.config.classes.names.clone();
        match model.config.task {
            Task::Semantic => classes.semantic = names,
            Task::Instance => classes.instance = names,
        }
    }
    let classes = Arc::new(classes);

    let mut transforms = Vec::new();
    let mut palette: Vec<[u8; 3]> = Vec::new();
    for (i, (t, model)) in config.transforms.iter().zip(&pipeline.models).enumerate() {
        // Infer keeps class scores only when a refine stage will read them.
        let refine_follows = config.transforms[i + 1..]
            .iter()
            .any(|t| matches!(t, TransformConfig::Refine { .. }));
        let spec = match t {
            TransformConfig::Infer {
                providers,
                threads,
                workers,
                batch,
                tiling,
                ..
            } => {
                let model = model
                    .clone()
                    .expect("validated pipelines have their models");
                if model.config.task == Task::Semantic {
                    palette = model.palette.clone();
                }
                let engine = EngineOptions {
                    batch: *batch,
                    tiling: *tiling,
                    scores: refine_follows,
                };
                let threads = infer_threads(*threads, *workers, options.threads);
                let mut spec = spec(t.name(), Box::new(NullSink), t.queue(), live);
                spec.workers = (0..*workers)
                    .map(|_| {
                        Box::new(Infer::new(
                            model.clone(),
                            providers.clone(),
                            threads,
                            engine,
                        )) as Box<dyn runtime::Stage>
                    })
                    .collect();
                spec.batch = *batch;
                spec
            }
            TransformConfig::Refine {
                iterations,
                smooth,
                appearance,
                scale,
                workers,
                threads,
                budget_ms,
                masks,
                ..
            } => {
                let params = CrfParams {
                    iterations: *iterations,
                    smooth: *smooth,
                    appearance: *appearance,
                };
                let options = RefineOptions {
                    params,
                    scale: *scale,
                    threads: *threads,
                    budget: budget_ms.map(std::time::Duration::from_millis),
                    masks: *masks,
                };
                let mut spec = spec(t.name(), Box::new(NullSink), t.queue(), live);
                spec.workers = (0..*workers)
                    .map(|_| Box::new(Refine::new(options)) as Box<dyn runtime::Stage>)
                    .collect();
                spec
            }
            TransformConfig::Composite { alpha, .. } => spec(
                t.name(),
                Box::new(Composite::new(*alpha, &palette).with_classes(classes.clone())),
                t.queue(),
                live,
            ),
            TransformConfig::Delay { ms, .. } => spec(
                t.name(),
                Box::new(Delay(std::time::Duration::from_millis(*ms))),
                t.queue(),
                live,
            ),
        };
        transforms.push(spec);
    }

    let mut sinks: Vec<StageSpec> = config
        .sinks
        .iter()
        .map(|s| {
            let stage: Box<dyn runtime::Stage> = match s {
                SinkConfig::Mp4 {
                    path, bitrate_kbps, ..
                } if is_template(path) => {
                    let (path, bitrate_kbps) = (path.clone(), *bitrate_kbps);
                    Box::new(PerStream::new(move |stream| {
                        Box::new(VideoSink::new(VideoSinkKind::Mp4 {
                            path: stream_path(&path, stream),
                            bitrate_kbps,
                        }))
                    }))
                }
                SinkConfig::Png { dir, what, .. } if is_template(dir) => {
                    let (dir, what, classes) = (dir.clone(), *what, classes.clone());
                    Box::new(PerStream::new(move |stream| {
                        Box::new(
                            PngSink::new(stream_path(&dir, stream), what).with_classes(&classes),
                        )
                    }))
                }
                SinkConfig::Jsonl { path, .. } if is_template(path) => {
                    let (path, classes) = (path.clone(), classes.clone());
                    Box::new(PerStream::new(move |stream| {
                        Box::new(JsonlSink::new(stream_path(&path, stream), classes.clone()))
                    }))
                }
                SinkConfig::Mp4 {
                    path, bitrate_kbps, ..
                } => Box::new(VideoSink::new(VideoSinkKind::Mp4 {
                    path: path.clone(),
                    bitrate_kbps: *bitrate_kbps,
                })),
                SinkConfig::Png { dir, what, .. } => {
                    Box::new(PngSink::new(dir.clone(), *what).with_classes(&classes))
                }
                SinkConfig::Jsonl { path, .. } => {
                    Box::new(JsonlSink::new(path.clone(), classes.clone()))
                }
                SinkConfig::Null { .. } => Box::new(NullSink),
                SinkConfig::Display { .. } => Box::new(VideoSink::new(VideoSinkKind::Display)),
            };
            spec(s.name(), stage, s.queue(), live)
        })
        .collect();

    // Scoring against the ground truth is one more sink, so it never slows the others.
    let eval = config.eval.as_ref().map(|e| {
        let count = classes.semantic.len().max(palette.len());
        let (sink, handle) = EvalSink::new(count, classes.semantic.clone(), e.ignore);
        sinks.push(spec("eval", Box::new(sink), &QueueConfig::default(), live));
        handle
    });
    let mut report = runtime::run(source, transforms, sinks, control)?;
    report.eval = eval.map(|h| h.result());
    Ok(report)
}
