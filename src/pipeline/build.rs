//! Turns a checked pipeline into running stages. Knows the component traits only.

use std::sync::Arc;

use std::collections::BTreeSet;

use super::{is_template, PerStream, Pipeline};
use crate::component::{BuildContext, SinkComponent};
use crate::frame::{Classes, Facets};
use crate::runtime::{
    self, BoxError, Control, PipelineError, QueueRole, RunReport, Source, Stage, StageSpec,
};

/// Per-run knobs from the command line.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Stop after this many frames.
    pub frames: Option<u64>,
    /// Overrides every infer stage's thread count.
    pub threads: Option<usize>,
    /// Of a source of many inputs, the stream ids to run (a shard, less what is done).
    pub chosen: Option<BTreeSet<u32>>,
    /// Streams end during the run although the pipeline's source is one stream (a worker
    /// feeds it files from a queue): outputs are written as for a source of many.
    pub ending_streams: bool,
}

fn build_failed(stage: &str, source: BoxError) -> PipelineError {
    PipelineError::Stage {
        stage: stage.to_owned(),
        source,
    }
}

/// The class names and colours of the pipeline's models.
fn classes(pipeline: &Pipeline) -> Arc<Classes> {
    let mut classes = Classes::default();
    for t in &pipeline.transforms {
        t.config.classes(&mut classes);
    }
    Arc::new(classes)
}

/// The pipeline's sources as one (several run side by side, frames of source `i` carrying
/// stream id `i`).
pub fn sources(
    pipeline: &Pipeline,
    frames: Option<u64>,
    chosen: Option<&BTreeSet<u32>>,
) -> Result<Box<dyn Source>, PipelineError> {
    let classes = Arc::new(Classes::default());
    let cx = BuildContext {
        live: pipeline.is_live(),
        threads: None,
        sharing: pipeline.sessions_sharing_cores(),
        frames,
        classes: &classes,
        wanted: Facets::NONE,
        input_file: None,
        chosen,
    };
    let mut built = Vec::new();
    for s in &pipeline.sources {
        built.push(s.config.build(&cx).map_err(|e| build_failed("decode", e))?);
    }
    Ok(if built.len() == 1 {
        built.pop().expect("one source")
    } else {
        Box::new(runtime::Merge(built))
    })
}

/// Builds and runs the pipeline to the end; `control` lets a signal handler stop it.
pub fn run(
    pipeline: &Pipeline,
    options: &RunOptions,
    control: Arc<Control>,
) -> Result<RunReport, PipelineError> {
    let source = sources(pipeline, options.frames, options.chosen.as_ref())?;
    run_with_source(pipeline, options, source, control)
}

/// Runs the pipeline's stages on frames from `source` instead of its own.
pub fn run_with_source(
    pipeline: &Pipeline,
    options: &RunOptions,
    source: Box<dyn Source>,
    control: Arc<Control>,
) -> Result<RunReport, PipelineError> {
    let live = pipeline.is_live();
    let classes = classes(pipeline);
    let wanted = pipeline.wanted();
    let input_file = single_input_file(pipeline);
    let sharing = pipeline.sessions_sharing_cores();
    let cx = |wanted: Facets| BuildContext {
        live,
        threads: options.threads,
        sharing,
        frames: options.frames,
        classes: &classes,
        wanted,
        input_file: input_file.clone(),
        chosen: None,
    };
    let ending = options.ending_streams || pipeline.many().is_some();
    if ending {
        control.streams.set_outputs(pipeline.per_stream_outputs());
    }

    let mut transforms = Vec::new();
    for (t, wanted) in pipeline.transforms.iter().zip(wanted) {
        let workers = t
            .config
            .build(&cx(wanted))
            .map_err(|e| build_failed(t.kind, e))?;
        let queue = t.config.queue();
        transforms.push(StageSpec {
            name: t.kind.to_owned(),
            workers: workers.stages,
            batch: workers.batch,
            capacity: queue.capacity(live, QueueRole::Transform),
            policy: queue.policy(live),
            ordered: workers.ordered,
        });
    }

    let mut sinks = Vec::new();
    for s in &pipeline.sinks {
        let config = s.config.clone();
        let stage: Box<dyn Stage> = match config.output().map(|p| p.to_owned()) {
            Some(path) if is_template(&path) => {
                let (live, classes, threads) = (live, classes.clone(), options.threads);
                let make = move |_stream: u32, output: &std::path::Path, input_file| {
                    let cx = BuildContext {
                        live,
                        threads,
                        sharing,
                        frames: None,
                        classes: &classes,
                        wanted: Facets::NONE,
                        input_file,
                        chosen: None,
                    };
                    per_stream(config.as_ref(), &cx, output)
                };
                Box::new(PerStream::new(path, ending, Box::new(make)))
            }
            output => config
                .build(&cx(Facets::NONE), output.as_deref())
                .map_err(|e| build_failed(s.kind, e))?,
        };
        let queue = s.config.queue();
        sinks.push(StageSpec::single(
            s.kind,
            stage,
            queue.capacity(live, QueueRole::Sink),
            queue.policy(live),
        ));
    }
    runtime::run(source, transforms, sinks, control)
}

/// The file a pipeline of one source reads, when it is one video file (not an image
/// sequence).
fn single_input_file(pipeline: &Pipeline) -> Option<std::path::PathBuf> {
    let [source] = &pipeline.sources[..] else {
        return None;
    };
    let [input] = &source.config.inputs()[..] else {
        return None;
    };
    (!input.to_string_lossy().contains('%') && input.is_file()).then(|| input.clone())
}

/// One stream's sink; a sink that cannot be built fails on that stream's first frame.
fn per_stream(
    config: &dyn SinkComponent,
    cx: &BuildContext<'_>,
    path: &std::path::Path,
) -> Box<dyn Stage> {
    match config.build(cx, Some(path)) {
        Ok(stage) => stage,
        Err(e) => Box::new(Failed(Some(e))),
    }
}

/// A stage that could not be built: its first frame reports why.
struct Failed(Option<BoxError>);

impl Stage for Failed {
    fn process(
        &mut self,
        _frame: crate::frame::Frame,
        _out: &mut runtime::Output,
    ) -> Result<(), BoxError> {
        Err(self.0.take().unwrap_or_else(|| "sink failed".into()))
    }
}
