//! The `infer` transform's settings: which model, on which execution providers, with how
//! many workers, batches and tiles.
//!
//! `[[transforms]] type = "infer", model = "deeplabv3plus_mobilenet_v2"`

use std::sync::Arc;

use serde::Deserialize;

use super::model::{resolve_model, Model, OutputConfig, Task};
pub use super::session::ProviderConfig;
use super::session::{check_model, open_session};
use super::{EngineOptions, Infer};
use crate::component::{BuildContext, CheckContext, Component, TransformComponent, Workers};
use crate::config::Problems;
use crate::frame::{Classes, Facet, Facets, MatchMetric};
use crate::instance::track::Tracker;
use crate::runtime::{BoxError, QueueConfig};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferConfig {
    /// A model config name (looked up in `configs/`) or a path to one.
    pub model: String,
    /// Execution providers in order of preference; CPU when empty. Every listed
    /// provider must be available: a missing one is an error, never a silent CPU run.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// ONNX Runtime intra-op threads per worker; 0 shares the cores among the workers and
    /// every other infer session of the pipeline left at 0.
    #[serde(default)]
    pub threads: usize,
    /// Parallel inference workers, each with its own session; results keep frame order.
    #[serde(default = "one")]
    pub workers: usize,
    /// Most images (frames, or tiles) per inference call. Frames are batched only when
    /// they are already queued, so batching adds no waiting.
    #[serde(default = "one")]
    pub batch: usize,
    /// Segment at native resolution in overlapping tiles instead of resizing the frame.
    #[serde(default)]
    pub tiling: Option<TilingConfig>,
    /// Where the work around the model runs: `host` (segstream's own code on the stage's
    /// thread) or `graph` (ONNX graphs on the session's execution provider: `uint8` frames
    /// in, `uint8` labels out; whole frames; instance models get their input from the graph
    /// and decode their detections on the host).
    #[serde(default)]
    pub pre_post: PrePost,
    /// Prepare the next batch and finish the last one (argmax, up-sampling) while the model
    /// runs, on the stage's thread beside the model's (whole frames, `pre_post = "host"`,
    /// semantic models). With a lossless queue (files) the stage then takes up to
    /// `OVERLAP_BATCHES` batches of frames already queued at a time; a queue that drops the
    /// oldest frame (live) is taken from as without overlap, so a live stage still starts
    /// on the newest frame.
    #[serde(default = "yes")]
    pub overlap: bool,
    /// Take the model's final bilinear Resize of its class scores (DeepLabV3+'s x4) off its
    /// graph and up-sample in the argmax instead, interpolating only near class boundaries:
    /// the model then never writes, nor the argmax reads, the scores at the input's size,
    /// and a refine stage after it reads the 16 times smaller scores from before the Resize.
    /// The labels are the same but for float rounding at near-ties. Only where that holds
    /// (see `infer::resize`): host pre- and post-processing, whole frames, a padded input;
    /// elsewhere the model stays whole.
    #[serde(default = "yes")]
    pub fuse_resize: bool,
    /// Refuse a frame whose inference would need more memory than this, in MiB (by the
    /// model's `memory_per_megapixel_mib`). Default: three quarters of this machine's memory.
    #[serde(default)]
    pub max_frame_mib: Option<u64>,
    /// The stage's input queue.
    #[serde(default)]
    pub queue: QueueConfig,
    /// The model config, loaded by `check`.
    #[serde(skip)]
    pub loaded: Option<Model>,
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

/// Batches of frames one call of an overlapping infer stage takes, when they are queued.
pub const OVERLAP_BATCHES: usize = 4;

/// Where pre-processing (colour order, normalization, layout, padding or resizing) and
/// post-processing (up-sampling, argmax) run.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PrePost {
    /// On the host, in segstream (SIMD, rows in parallel).
    #[default]
    Host,
    /// In ONNX graphs chained to the model's session, on its execution provider.
    Graph,
}

/// Three quarters of this machine's memory, in MiB (4096 where /proc/meminfo is missing).
fn default_max_frame_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(4096, |kib| kib / 1024 * 3 / 4)
}

/// The cores this machine runs at once.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Most threads a stage may ask for; counts above the machine's cores are capped to them.
pub const MAX_THREADS: usize = 256;

/// A thread count from a config: refused above [`MAX_THREADS`] (a typo), capped with a
/// warning above this machine's cores (a file written for a bigger machine still runs).
pub fn cap_threads(stage: &str, threads: usize, p: &mut Problems) -> usize {
    let cores = cores();
    if threads > MAX_THREADS {
        p.push(
            "threads",
            format!(
                "{threads} is out of range (expected 0 to {MAX_THREADS}; counts above this \
                 machine's {cores} cores are capped to {cores})"
            ),
        );
        return threads;
    }
    if threads > cores {
        tracing::warn!(
            "{stage} threads = {threads} is more than the {cores} cores this machine runs at \
             once: capped to {cores}."
        );
        return cores;
    }
    threads
}

/// The infer stage's thread count: unless set (`threads`, or `over` from `--threads`), its
/// sessions share the cores with every other session left unset in the pipeline
/// (`sharing` of them in all, its own workers included).
pub fn infer_threads(threads: usize, sharing: usize, over: Option<usize>) -> usize {
    match over.unwrap_or(threads) {
        0 if sharing > 1 => (cores() / sharing).max(1),
        n => n,
    }
}

impl InferConfig {
    /// The loaded model; `check` must have succeeded.
    pub fn model(&self) -> &Model {
        self.loaded
            .as_ref()
            .expect("checked pipelines have their models")
    }

    /// Whether the model is a semantic one whose whole-frame scores a later stage can read.
    fn keeps_scores(&self) -> bool {
        self.loaded.as_ref().is_some_and(|m| {
            m.config.task == Task::Semantic
                && self.tiling.is_none()
                && !matches!(m.config.output, OutputConfig::Labels { .. })
        })
    }

    fn is_instance(&self) -> bool {
        self.loaded.as_ref().is_some_and(Model::is_instance)
    }
}

impl Component for InferConfig {
    fn check(&mut self, cx: &CheckContext<'_>, p: &mut Problems) {
        self.threads = cap_threads("infer", self.threads, p);
        p.range("workers", self.workers, 1, 64);
        p.range("batch", self.batch, 1, 256);
        if let Some(m) = self.max_frame_mib {
            p.range("max_frame_mib", m, 16, 1 << 30);
        }
        if let Some(t) = &self.tiling {
            p.range("tiling.scale", t.scale, 0.05, 4.0);
            p.range("tiling.merge_threshold", t.merge_threshold, 0.0, 1.0);
        }
        for (j, provider) in self.providers.iter().enumerate() {
            if let ProviderConfig::Openvino {
                device, precision, ..
            } = provider
            {
                use super::session::{OPENVINO_DEVICES, OPENVINO_PRECISIONS};
                if !OPENVINO_DEVICES.contains(&device.as_str()) {
                    p.push(
                        format!("providers[{j}].device"),
                        format!("{device:?} is not one of {}", OPENVINO_DEVICES.join(", ")),
                    );
                }
                if !OPENVINO_PRECISIONS.contains(&precision.as_str()) {
                    p.push(
                        format!("providers[{j}].precision"),
                        format!(
                            "{precision:?} is not one of {}",
                            OPENVINO_PRECISIONS.join(", ")
                        ),
                    );
                }
            }
            if let ProviderConfig::Cuda {
                conv_algo_search, ..
            } = provider
            {
                if !["exhaustive", "heuristic", "default"].contains(&conv_algo_search.as_str()) {
                    p.push(
                        format!("providers[{j}].conv_algo_search"),
                        format!(
                            "{conv_algo_search:?} is not one of exhaustive, heuristic, default"
                        ),
                    );
                }
            }
        }
        match resolve_model(cx.pipeline, &self.model) {
            Ok(m) => {
                if let Some(t) = &self.tiling {
                    for problem in m.tile_size(t).err().unwrap_or_default() {
                        p.push("tiling", problem);
                    }
                }
                let int8 = self.providers.iter().position(|pc| {
                    matches!(pc, ProviderConfig::Openvino { precision, .. } if precision == "INT8")
                });
                if let Some(j) = int8 {
                    if m.onnx_path.is_file() && !m.is_quantized() {
                        p.push(
                            format!("providers[{j}].precision"),
                            format!(
                                "INT8 needs a quantized (QDQ) model, and {} has no \
                                 QuantizeLinear node (use the model's _int8 variant)",
                                m.onnx_path.display()
                            ),
                        );
                    }
                }
                if self.pre_post == PrePost::Graph && self.tiling.is_some() {
                    p.push(
                        "pre_post",
                        "\"graph\" works on whole frames, and tiling cuts and stitches them on \
                         the host (remove tiling or use \"host\")",
                    );
                }
                self.loaded = Some(m);
            }
            Err(problems) => {
                for problem in problems {
                    p.push("model", problem);
                }
            }
        }
    }

    fn gives(&self) -> Facets {
        match &self.loaded {
            Some(m) if m.is_instance() => Facet::Instances.into(),
            Some(_) if self.keeps_scores() => Facet::Labels | Facet::Scores,
            Some(_) => Facet::Labels.into(),
            // Later stages may rely on what this model would give even when it failed to
            // load; its own problem is reported already.
            None => Facet::Labels | Facet::Scores,
        }
    }

    fn withholds(&self, facet: Facet, consumer: &str, here: &str) -> Option<String> {
        let m = self.loaded.as_ref()?;
        if facet != Facet::Scores || m.is_instance() {
            return None;
        }
        if self.tiling.is_some() {
            return Some(format!(
                "{consumer} cannot follow a tiled infer ({here} has tiling, which keeps no \
                 whole-frame class scores)"
            ));
        }
        matches!(m.config.output, OutputConfig::Labels { .. }).then(|| {
            format!(
                "{consumer} needs class scores, but model {} outputs labels (expected output \
                 kind logits or probabilities)",
                m.name
            )
        })
    }

    fn classes(&self, classes: &mut Classes) {
        let Some(m) = &self.loaded else { return };
        let names = m.config.classes.names.clone();
        match m.config.task {
            Task::Semantic => {
                classes.semantic = names;
                classes.palette = m.palette.clone();
            }
            Task::Instance => classes.instance = names,
        }
    }

    fn probe(&self, p: &mut Problems) {
        let Some(model) = &self.loaded else { return };
        match open_session(model, &self.providers, 1) {
            Ok(session) => {
                for problem in check_model(&session, model) {
                    p.push(
                        "model",
                        format!(
                            "{} ({}): {problem}",
                            model.config_path.display(),
                            model.onnx_path.display()
                        ),
                    );
                }
            }
            Err(e) => p.push("model", crate::one_line(&e)),
        }
        if self.pre_post == PrePost::Graph && p.is_empty() {
            // The in-graph sessions are built as the stage would build them.
            let options = EngineOptions {
                pre_post: PrePost::Graph,
                ..Default::default()
            };
            if let Err(e) = super::Segmenter::new(model.clone(), &self.providers, 1, options) {
                p.push("pre_post", crate::one_line(&e));
            }
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl TransformComponent for InferConfig {
    fn queue(&self) -> QueueConfig {
        self.queue
    }

    fn sessions_sharing_cores(&self) -> usize {
        match self.threads {
            0 => self.workers,
            _ => 0,
        }
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Workers, BoxError> {
        let model = self.model().clone();
        let engine = self.engine(cx.wanted);
        let threads = infer_threads(self.threads, cx.sharing.max(self.workers), cx.threads);
        let stages = (0..self.workers)
            .map(|_| {
                Box::new(Infer::new(
                    model.clone(),
                    self.providers.clone(),
                    threads,
                    engine,
                )) as Box<dyn crate::runtime::Stage>
            })
            .collect();
        // Instance ids follow objects from frame to frame, so they are given in frame order.
        let ordered = self.is_instance().then(|| {
            let mut trackers: std::collections::HashMap<u32, Tracker> = Default::default();
            Box::new(move |frame: &mut crate::frame::Frame| {
                if let Some(instances) = &mut frame.instances {
                    let tracker = trackers.entry(frame.stream).or_default();
                    tracker.assign(Arc::make_mut(instances).as_mut_slice());
                }
            }) as crate::runtime::OrderedStep
        });
        // Overlapping needs several frames in one call; only frames already queued are
        // taken, so this adds no waiting. A queue that drops the oldest frame (live) keeps
        // them: a frame taken early could no longer give way to a newer one.
        let lossless = self.queue.policy(cx.live) == crate::runtime::FullPolicy::Block;
        let batch = if engine.overlap && lossless {
            self.batch.max(1) * OVERLAP_BATCHES
        } else {
            self.batch
        };
        Ok(Workers {
            stages,
            batch,
            ordered,
        })
    }
}

impl InferConfig {
    /// How the stage's segmenters run, when the stages after it want `wanted`.
    pub fn engine(&self, wanted: Facets) -> EngineOptions {
        EngineOptions {
            batch: self.batch,
            tiling: self.tiling,
            // Scores cost a copy per frame: kept only when a later stage reads them.
            scores: wanted.contains(Facet::Scores),
            max_frame_mib: Some(self.max_frame_mib.unwrap_or_else(default_max_frame_mib)),
            pre_post: self.pre_post,
            overlap: self.overlaps(),
            fuse_resize: self.fuse_resize,
        }
    }

    /// Whether the stage overlaps its host work with the model (see `overlap`).
    fn overlaps(&self) -> bool {
        self.overlap
            && self.pre_post == PrePost::Host
            && self.tiling.is_none()
            && !self.is_instance()
    }
}

/// Overlapping tiles of the model's input size, stitched with blending weights.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TilingConfig {
    /// Tile width; defaults to the model's fixed input width (`stretch` size policy).
    #[serde(default)]
    pub width: Option<u32>,
    /// Tile height; defaults to the model's fixed input height.
    #[serde(default)]
    pub height: Option<u32>,
    /// Least overlap between neighbouring tiles, in pixels of the scaled frame.
    #[serde(default = "default_overlap")]
    pub overlap: u32,
    /// The frame is resized by this factor before tiling (1 = native resolution).
    #[serde(default = "default_tile_scale")]
    pub scale: f32,
    /// Weight ramp across overlaps: `linear` or `gaussian`.
    #[serde(default = "default_blend")]
    pub blend: crate::tile::Blend,
    /// Instance models: also run the whole frame as one extra slice (large objects).
    #[serde(default)]
    pub full_frame: bool,
    /// Instance models: how detections from different slices are matched for merging,
    /// `ios` (intersection over the smaller box) or `iou`.
    #[serde(default = "default_merge_metric")]
    pub merge: MatchMetric,
    /// Instance models: detections of one class whose boxes match above this are merged.
    #[serde(default = "default_merge_threshold")]
    pub merge_threshold: f32,
}

fn default_overlap() -> u32 {
    64
}
fn default_tile_scale() -> f32 {
    1.0
}
fn default_merge_metric() -> MatchMetric {
    MatchMetric::Ios
}
fn default_merge_threshold() -> f32 {
    0.5
}
fn default_blend() -> crate::tile::Blend {
    crate::tile::Blend::Linear
}
