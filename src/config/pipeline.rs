//! Pipeline files (`pipelines/*.toml`): one source, transforms in order, one or more sinks.
//!
//! ```toml
//! [source]
//! type = "file"
//! path = "assets/sample.mp4"
//!
//! [[transforms]]
//! type = "infer"
//! model = "deeplabv3plus_mobilenet_v2"
//!
//! [[transforms]]
//! type = "composite"
//! alpha = 0.5
//!
//! [[sinks]]
//! type = "mp4"
//! path = "out/demo.mp4"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::refine::crf::{Appearance, CrfParams, Smooth};

use super::{read_toml, ConfigError, Model, Problems, Task};

#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "PipelineFile")]
pub struct PipelineConfig {
    /// Where frames come from (the first of `sources`).
    pub source: SourceConfig,
    /// Stages applied to every frame, in order.
    pub transforms: Vec<TransformConfig>,
    /// Where results go; every sink receives every frame.
    pub sinks: Vec<SinkConfig>,
    /// Every source; frames of source `i` carry stream id `i`.
    pub sources: Vec<SourceConfig>,
    /// Score the label maps against the source's ground truth as frames pass, and report
    /// mean IoU, pixel accuracy and Dice with the run's summary (`run --eval` sets it).
    pub eval: Option<EvalConfig>,
}

/// The file as written: one `[source]`, or several `[[sources]]` in one pipeline.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    /// Where frames come from.
    #[serde(default)]
    source: Option<SourceConfig>,
    /// Several sources at once (cameras, RTSP feeds): their frames share the stages, each
    /// stream gets its own outputs through `{stream}` in sink paths.
    #[serde(default)]
    sources: Vec<SourceConfig>,
    #[serde(default)]
    transforms: Vec<TransformConfig>,
    sinks: Vec<SinkConfig>,
    #[serde(default)]
    eval: Option<EvalConfig>,
}

impl TryFrom<PipelineFile> for PipelineConfig {
    type Error = String;

    fn try_from(f: PipelineFile) -> Result<Self, String> {
        let sources = match (f.source, f.sources) {
            (Some(one), many) if many.is_empty() => vec![one],
            (None, many) if !many.is_empty() => many,
            (Some(_), _) => {
                return Err("both [source] and [[sources]] are set (expected one of them)".into())
            }
            (None, _) => {
                return Err("no source (expected a [source] table or [[sources]] tables)".into())
            }
        };
        Ok(PipelineConfig {
            source: sources[0].clone(),
            transforms: f.transforms,
            sinks: f.sinks,
            sources,
            eval: f.eval,
        })
    }
}

/// Sink paths may contain this; each stream writes its own file or directory.
pub const STREAM_PLACEHOLDER: &str = "{stream}";

/// `path` with `{stream}` replaced by the stream id.
pub fn stream_path(path: &Path, stream: u32) -> PathBuf {
    PathBuf::from(
        path.to_string_lossy()
            .replace(STREAM_PLACEHOLDER, &stream.to_string()),
    )
}

impl PipelineConfig {
    /// Whether any source is live (then queues drop the oldest frames by default).
    pub fn is_live(&self) -> bool {
        self.sources.iter().any(SourceConfig::is_live)
    }
}

/// Accuracy measured inside a run, on sources that carry ground truth (`synthetic`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Ground-truth value of pixels not to count.
    #[serde(default = "default_eval_ignore")]
    pub ignore: u8,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            ignore: default_eval_ignore(),
        }
    }
}

fn default_eval_ignore() -> u8 {
    255
}

/// Where frames come from.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// A video file, a still image, or a numbered image sequence (`frames/%05d.png`).
    File {
        path: PathBuf,
        /// First index of an image sequence.
        #[serde(default)]
        start_index: u32,
    },
    /// Any URI GStreamer can open (`file://`, `http://`, `rtsp://`, ...).
    Uri { uri: String },
    /// An RTSP stream.
    Rtsp {
        url: String,
        /// Jitter-buffer latency in milliseconds.
        #[serde(default = "default_rtsp_latency")]
        latency_ms: u32,
        /// Seconds without a frame after which the stream counts as lost (and, before the
        /// first frame, after which an unanswering server is an error).
        #[serde(default = "default_rtsp_timeout")]
        timeout_s: f64,
        /// Lower transport: `auto` (UDP, falling back to TCP), `tcp` or `udp`.
        #[serde(default)]
        transport: RtspTransport,
        /// Reconnect on its own when the stream drops or the server restarts.
        #[serde(default = "yes")]
        reconnect: bool,
        /// Longest wait between reconnection attempts, in seconds (the wait doubles from
        /// half a second up to this).
        #[serde(default = "default_backoff_max")]
        backoff_max_s: f64,
        /// Give up when one outage lasts longer than this many seconds; never when absent.
        #[serde(default)]
        max_outage_s: Option<f64>,
    },
    /// A V4L2 camera.
    Camera {
        #[serde(default = "default_camera")]
        device: PathBuf,
    },
    /// A synthetic driving scene (road, lanes, sidewalk, buildings, sky, trees, moving cars
    /// and pedestrians) with its exact label map in Cityscapes train ids, seeded and
    /// deterministic: ground truth without a data set.
    Synthetic {
        #[serde(default = "default_test_width")]
        width: u32,
        #[serde(default = "default_test_height")]
        height: u32,
        #[serde(default = "default_fps")]
        fps: u32,
        /// Number of frames before end of stream.
        #[serde(default = "default_synthetic_frames")]
        frames: u64,
        #[serde(default)]
        seed: u64,
    },
    /// GStreamer's `videotestsrc`, for tests and demos.
    Test {
        /// A `videotestsrc` pattern name (`smpte`, `ball`, `snow`, ...).
        #[serde(default = "default_pattern")]
        pattern: String,
        #[serde(default = "default_test_width")]
        width: u32,
        #[serde(default = "default_test_height")]
        height: u32,
        #[serde(default = "default_fps")]
        fps: u32,
        /// Number of frames before end of stream; endless when absent.
        #[serde(default)]
        frames: Option<u64>,
        /// Pace frames in real time, like a camera.
        #[serde(default)]
        live: bool,
    },
}

impl SourceConfig {
    /// Parses a command-line `--input`: an RTSP URL, a camera device, `test:PATTERN`, a URI,
    /// or a file path.
    pub fn from_input(input: &str) -> SourceConfig {
        if input.starts_with("rtsp://") || input.starts_with("rtsps://") {
            SourceConfig::Rtsp {
                url: input.to_owned(),
                latency_ms: default_rtsp_latency(),
                timeout_s: default_rtsp_timeout(),
                transport: RtspTransport::default(),
                reconnect: true,
                backoff_max_s: default_backoff_max(),
                max_outage_s: None,
            }
        } else if input.starts_with("/dev/video") {
            SourceConfig::Camera {
                device: input.into(),
            }
        } else if let Some(seed) = input.strip_prefix("synthetic:") {
            SourceConfig::Synthetic {
                width: default_test_width(),
                height: default_test_height(),
                fps: default_fps(),
                frames: default_synthetic_frames(),
                seed: seed.parse().unwrap_or(0),
            }
        } else if let Some(pattern) = input.strip_prefix("test:") {
            SourceConfig::Test {
                pattern: if pattern.is_empty() {
                    default_pattern()
                } else {
                    pattern.to_owned()
                },
                width: default_test_width(),
                height: default_test_height(),
                fps: default_fps(),
                frames: None,
                live: false,
            }
        } else if input.contains("://") {
            SourceConfig::Uri {
                uri: input.to_owned(),
            }
        } else {
            SourceConfig::File {
                path: input.into(),
                start_index: 0,
            }
        }
    }

    /// Live sources produce frames on their own clock and cannot wait for a slow pipeline.
    pub fn is_live(&self) -> bool {
        match self {
            SourceConfig::Rtsp { .. } | SourceConfig::Camera { .. } => true,
            SourceConfig::Uri { uri } => uri.starts_with("rtsp") || uri.starts_with("udp"),
            SourceConfig::Test { live, .. } => *live,
            SourceConfig::File { .. } | SourceConfig::Synthetic { .. } => false,
        }
    }

    /// A short human name of the input, used in messages.
    pub fn describe(&self) -> String {
        match self {
            SourceConfig::File { path, .. } => path.display().to_string(),
            SourceConfig::Uri { uri } => uri.clone(),
            SourceConfig::Rtsp { url, .. } => url.clone(),
            SourceConfig::Camera { device } => device.display().to_string(),
            SourceConfig::Test { pattern, .. } => format!("test:{pattern}"),
            SourceConfig::Synthetic { seed, .. } => format!("synthetic:{seed}"),
        }
    }
}

/// How RTSP media travels.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RtspTransport {
    /// UDP, falling back to TCP (interleaved) when UDP gets nothing.
    #[default]
    Auto,
    /// Interleaved in the RTSP connection: passes firewalls, no packet loss.
    Tcp,
    /// Unicast UDP: lowest latency, packets may be lost.
    Udp,
}

/// A stage between the source and the sinks.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformConfig {
    /// Runs a model on every frame and attaches its label map.
    Infer {
        /// A model config name (looked up in `configs/`) or a path to one.
        model: String,
        /// Execution providers in order of preference; CPU when empty. Every listed
        /// provider must be available: a missing one is an error, never a silent CPU run.
        #[serde(default)]
        providers: Vec<ProviderConfig>,
        /// ONNX Runtime intra-op threads per worker; 0 shares the cores among the workers.
        #[serde(default)]
        threads: usize,
        /// Parallel inference workers, each with its own session; results keep frame order.
        #[serde(default = "one")]
        workers: usize,
        /// Most images (frames, or tiles) per inference call. Frames are batched only when
        /// they are already queued, so batching adds no waiting.
        #[serde(default = "one")]
        batch: usize,
        /// Segment at native resolution in overlapping tiles instead of resizing the frame.
        #[serde(default)]
        tiling: Option<TilingConfig>,
        /// The stage's input queue.
        #[serde(default)]
        queue: QueueConfig,
    },
    /// Refines the labels with a fully connected CRF over the model's class scores, so they
    /// follow the image's edges (needs an infer transform before it, untiled, with a logits
    /// or probabilities model); with `masks`, also each instance's mask inside its box.
    Refine {
        /// Mean-field iterations.
        #[serde(default = "default_iterations")]
        iterations: usize,
        /// Smoothness kernel on position: `{ sxy, weight }`.
        #[serde(default)]
        smooth: Smooth,
        /// Appearance kernel on position and colour: `{ sxy, srgb, weight }`.
        #[serde(default)]
        appearance: Appearance,
        /// Run the CRF at 1/scale of the frame's resolution (1, 2 or 4) and up-sample the
        /// refined probabilities; kernel sizes stay in frame pixels.
        #[serde(default = "one_u32")]
        scale: u32,
        /// Frames refined in parallel; results keep frame order.
        #[serde(default = "one")]
        workers: usize,
        /// Threads each worker splits one frame's CRF over; 0 uses a pool of all cores shared
        /// by the workers.
        #[serde(default)]
        threads: usize,
        /// Most milliseconds spent refining one frame; past it the frame passes through
        /// unrefined, counted in the summary. No limit when absent.
        #[serde(default)]
        budget_ms: Option<u64>,
        /// Also refine every instance's mask with a two-label CRF (object, background) in
        /// its box; with only an instance infer before it, refine does just that.
        #[serde(default)]
        masks: bool,
        #[serde(default)]
        queue: QueueConfig,
    },
    /// Blends class colours over the frame.
    Composite {
        /// Opacity of the class colours, 0 (invisible) to 1 (opaque).
        #[serde(default = "default_alpha")]
        alpha: f32,
        #[serde(default)]
        queue: QueueConfig,
    },
    /// Holds every frame for `ms` milliseconds: stands in for a slow model, to see how a
    /// live pipeline drops frames and keeps latency bounded.
    Delay {
        /// Milliseconds per frame.
        ms: u64,
        #[serde(default)]
        queue: QueueConfig,
    },
}

impl TransformConfig {
    pub fn name(&self) -> &'static str {
        match self {
            TransformConfig::Infer { .. } => "infer",
            TransformConfig::Composite { .. } => "composite",
            TransformConfig::Delay { .. } => "delay",
            TransformConfig::Refine { .. } => "refine",
        }
    }

    pub fn queue(&self) -> &QueueConfig {
        match self {
            TransformConfig::Infer { queue, .. }
            | TransformConfig::Composite { queue, .. }
            | TransformConfig::Delay { queue, .. } => queue,
            TransformConfig::Refine { queue, .. } => queue,
        }
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
    pub merge: crate::instance::merge::MatchMetric,
    /// Instance models: detections of one class whose boxes match above this are merged.
    #[serde(default = "default_merge_threshold")]
    pub merge_threshold: f32,
}

/// An ONNX Runtime execution provider.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderConfig {
    Cpu,
    Cuda {
        #[serde(default)]
        device_id: i32,
        /// cuDNN convolution algorithm search: `exhaustive`, `heuristic` or `default`.
        #[serde(default = "default_conv_search")]
        conv_algo_search: String,
        /// Limit of the CUDA memory arena in MiB; unlimited when absent.
        #[serde(default)]
        memory_limit_mb: Option<usize>,
    },
    Tensorrt {
        #[serde(default)]
        device_id: i32,
        /// Build FP16 engines.
        #[serde(default)]
        fp16: bool,
        /// Directory where built engines are cached between runs.
        #[serde(default)]
        engine_cache_dir: Option<PathBuf>,
        /// Builder workspace in MiB.
        #[serde(default)]
        workspace_mb: Option<usize>,
    },
}

/// A stage's input queue.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Frames the queue holds.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// What a full queue does; by default `block` for files and `drop_oldest` for live sources.
    #[serde(default)]
    pub when_full: Option<FullPolicy>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: default_capacity(),
            when_full: None,
        }
    }
}

/// What a full queue does with a new frame.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Wait for room: lossless, applies back-pressure to the source.
    Block,
    /// Discard the oldest queued frame (counted): bounded latency for live sources.
    DropOldest,
}

/// Where results go.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// H.264 in an MP4 file, showing the overlay (or the plain frame without composite).
    Mp4 {
        path: PathBuf,
        /// Target bitrate in kbit/s.
        #[serde(default = "default_bitrate")]
        bitrate_kbps: u32,
        #[serde(default)]
        queue: QueueConfig,
    },
    /// One PNG per frame, named by sequence number.
    Png {
        dir: PathBuf,
        /// `labels` (8-bit, pixel = class index), `truth` (the source's true label map),
        /// `overlay` or `frame` (RGB), `instances` or `panoptic` (16-bit).
        #[serde(default)]
        what: PngContent,
        #[serde(default)]
        queue: QueueConfig,
    },
    /// One JSON object per frame and line: stream, sequence number, timestamp, frame size and
    /// each instance's class, score, box and mask (compressed COCO RLE at frame resolution).
    Jsonl {
        path: PathBuf,
        #[serde(default)]
        queue: QueueConfig,
    },
    /// Discards frames; for measuring.
    Null {
        #[serde(default)]
        queue: QueueConfig,
    },
    /// A window on the local display.
    Display {
        #[serde(default)]
        queue: QueueConfig,
    },
}

impl SinkConfig {
    pub fn name(&self) -> &'static str {
        match self {
            SinkConfig::Mp4 { .. } => "mp4",
            SinkConfig::Png { .. } => "png",
            SinkConfig::Jsonl { .. } => "jsonl",
            SinkConfig::Null { .. } => "null",
            SinkConfig::Display { .. } => "display",
        }
    }

    pub fn queue(&self) -> &QueueConfig {
        match self {
            SinkConfig::Mp4 { queue, .. }
            | SinkConfig::Png { queue, .. }
            | SinkConfig::Jsonl { queue, .. }
            | SinkConfig::Null { queue }
            | SinkConfig::Display { queue } => queue,
        }
    }

    /// The file or directory the sink writes, if any.
    pub fn output_path(&self) -> Option<&Path> {
        match self {
            SinkConfig::Mp4 { path, .. } => Some(path),
            SinkConfig::Png { dir, .. } => Some(dir),
            SinkConfig::Jsonl { path, .. } => Some(path),
            _ => None,
        }
    }

    fn set_output_path(&mut self, new: PathBuf) -> bool {
        match self {
            SinkConfig::Mp4 { path, .. } => *path = new,
            SinkConfig::Png { dir, .. } => *dir = new,
            SinkConfig::Jsonl { path, .. } => *path = new,
            _ => return false,
        }
        true
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PngContent {
    #[default]
    Labels,
    Truth,
    Overlay,
    Frame,
    /// 16-bit: 0 for background, else the instance's id (its index + 1 when untracked);
    /// where masks overlap, the higher score wins.
    Instances,
    /// 16-bit, Cityscapes-style: `class * 1000 + instance` for things, `class * 1000` for
    /// stuff, 65535 for void; classes are the semantic model's.
    Panoptic,
}

fn default_rtsp_latency() -> u32 {
    200
}
fn default_rtsp_timeout() -> f64 {
    10.0
}
fn default_backoff_max() -> f64 {
    5.0
}
fn yes() -> bool {
    true
}
fn default_camera() -> PathBuf {
    "/dev/video0".into()
}
fn default_pattern() -> String {
    "smpte".into()
}
fn default_test_width() -> u32 {
    640
}
fn default_test_height() -> u32 {
    360
}
fn default_fps() -> u32 {
    30
}
fn default_synthetic_frames() -> u64 {
    300
}
fn default_alpha() -> f32 {
    0.5
}
fn default_conv_search() -> String {
    "exhaustive".into()
}
fn one() -> usize {
    1
}
fn one_u32() -> u32 {
    1
}
fn default_iterations() -> usize {
    CrfParams::default().iterations
}
fn default_overlap() -> u32 {
    64
}
fn default_tile_scale() -> f32 {
    1.0
}
fn default_merge_metric() -> crate::instance::merge::MatchMetric {
    crate::instance::merge::MatchMetric::Ios
}
fn default_merge_threshold() -> f32 {
    0.5
}
fn default_blend() -> crate::tile::Blend {
    crate::tile::Blend::Linear
}
fn default_capacity() -> usize {
    4
}
fn default_bitrate() -> u32 {
    4000
}

/// Command-line overrides applied on top of a pipeline file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub input: Option<String>,
    pub output: Option<PathBuf>,
    /// Score against the source's ground truth (adds `[eval]` when the file has none).
    pub eval: bool,
}

/// A pipeline file that parsed and passed validation, with its models loaded.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub path: PathBuf,
    pub config: PipelineConfig,
    /// The model of each `infer` transform, by transform index.
    pub models: Vec<Option<Model>>,
}

impl Pipeline {
    /// Reads a pipeline file, applies overrides and checks everything that can be checked
    /// without starting anything. All problems are reported together.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Pipeline, ConfigError> {
        let (pipeline, problems) = Self::load_with_problems(path, overrides)?;
        Problems(problems).into_result(path)?;
        Ok(pipeline)
    }

    /// Like `load`, but returns the problems beside whatever could be loaded; fails only
    /// when the file cannot be read or parsed.
    pub fn load_with_problems(
        path: &Path,
        overrides: &Overrides,
    ) -> Result<(Pipeline, Vec<String>), ConfigError> {
        let mut config: PipelineConfig = read_toml(path)?;
        let mut p = Problems::default();
        if let Some(input) = &overrides.input {
            config.source = SourceConfig::from_input(input);
            config.sources = vec![config.source.clone()];
        }
        if let Some(output) = &overrides.output {
            match config.sinks.iter_mut().find(|s| s.output_path().is_some()) {
                Some(sink) => {
                    sink.set_output_path(output.clone());
                }
                None => p.push(
                    "--output",
                    "the pipeline has no mp4 or png sink to redirect",
                ),
            }
        }
        if overrides.eval && config.eval.is_none() {
            config.eval = Some(EvalConfig::default());
        }
        let models = config.check(path, &mut p);
        Ok((
            Pipeline {
                path: path.to_owned(),
                config,
                models,
            },
            p.0,
        ))
    }
}

impl PipelineConfig {
    fn check(&self, path: &Path, p: &mut Problems) -> Vec<Option<Model>> {
        if self.sources.len() == 1 {
            check_source(p, &self.source);
        }
        for (i, source) in self
            .sources
            .iter()
            .enumerate()
            .filter(|_| self.sources.len() > 1)
        {
            let mut q = Problems::default();
            check_source(&mut q, source);
            for problem in q.0 {
                p.0.push(problem.replacen("source.", &format!("sources[{i}]."), 1));
            }
        }

        let mut models = Vec::new();
        let mut has_labels = false;
        let mut has_infer = false;
        // The last infer transform: its index and whether it tiles.
        let mut last_infer: Option<(usize, bool)> = None;
        let mut instance_infer = false;
        for (i, t) in self.transforms.iter().enumerate() {
            let field = format!("transforms[{i}]");
            check_queue(p, &field, t.queue());
            match t {
                TransformConfig::Infer {
                    model,
                    providers,
                    threads,
                    workers,
                    batch,
                    tiling,
                    ..
                } => {
                    p.range(format!("{field}.threads"), *threads, 0, 1024);
                    p.range(format!("{field}.workers"), *workers, 1, 64);
                    p.range(format!("{field}.batch"), *batch, 1, 256);
                    if let Some(t) = tiling {
                        p.range(format!("{field}.tiling.scale"), t.scale, 0.05, 4.0);
                        p.range(
                            format!("{field}.tiling.merge_threshold"),
                            t.merge_threshold,
                            0.0,
                            1.0,
                        );
                    }
                    for (j, provider) in providers.iter().enumerate() {
                        if let ProviderConfig::Cuda {
                            conv_algo_search, ..
                        } = provider
                        {
                            if !["exhaustive", "heuristic", "default"]
                                .contains(&conv_algo_search.as_str())
                            {
                                p.push(
                                    format!("{field}.providers[{j}].conv_algo_search"),
                                    format!(
                                        "{conv_algo_search:?} is not one of exhaustive, \
                                         heuristic, default"
                                    ),
                                );
                            }
                        }
                    }
                    match resolve_model(path, model) {
                        Ok(m) => {
                            if let Some(t) = tiling {
                                for problem in m.tile_size(t).err().unwrap_or_default() {
                                    p.push(format!("{field}.tiling"), problem);
                                }
                            }
                            // Instance models set `instances` and leave `labels` alone.
                            if m.config.task == Task::Semantic {
                                has_labels = true;
                                last_infer = Some((i, tiling.is_some()));
                            } else {
                                instance_infer = true;
                            }
                            has_infer = true;
                            models.push(Some(m));
                        }
                        Err(problems) => {
                            // Later stages may rely on labels even when this model failed
                            // to load.
                            has_labels = true;
                            has_infer = true;
                            last_infer = Some((i, tiling.is_some()));
                            for problem in problems {
                                p.push(format!("{field}.model"), problem);
                            }
                            models.push(None);
                        }
                    }
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
                    p.range(format!("{field}.iterations"), *iterations, 1, 100);
                    p.range(format!("{field}.smooth.sxy"), smooth.sxy, 0.1, 1000.0);
                    p.range(format!("{field}.smooth.weight"), smooth.weight, 0.0, 1000.0);
                    p.range(
                        format!("{field}.appearance.sxy"),
                        appearance.sxy,
                        0.1,
                        1000.0,
                    );
                    p.range(
                        format!("{field}.appearance.srgb"),
                        appearance.srgb,
                        0.1,
                        1000.0,
                    );
                    p.range(
                        format!("{field}.appearance.weight"),
                        appearance.weight,
                        0.0,
                        1000.0,
                    );
                    if ![1, 2, 4].contains(scale) {
                        p.push(
                            format!("{field}.scale"),
                            format!("{scale} is not one of 1, 2, 4"),
                        );
                    }
                    p.range(format!("{field}.workers"), *workers, 1, 64);
                    p.range(format!("{field}.threads"), *threads, 0, 1024);
                    if let Some(b) = budget_ms {
                        p.range(format!("{field}.budget_ms"), *b, 1, 600_000);
                    }
                    if *masks && !instance_infer {
                        p.push(
                            format!("{field}.masks"),
                            "refining masks needs an instance infer transform before it",
                        );
                    }
                    match last_infer {
                        // Masks alone need no class scores.
                        None if *masks && instance_infer => {}
                        None => p.push(&field, "refine needs an infer transform before it"),
                        Some((j, true)) => p.push(
                            &field,
                            format!(
                                "refine cannot follow a tiled infer (transforms[{j}] has \
                                 tiling, which keeps no whole-frame class scores)"
                            ),
                        ),
                        Some((j, false)) => {
                            if let Some(Some(m)) = models.get(j) {
                                let m: &Model = m;
                                if matches!(m.config.output, super::OutputConfig::Labels { .. }) {
                                    p.push(
                                        &field,
                                        format!(
                                            "refine needs class scores, but model {} outputs \
                                             labels (expected output kind logits or \
                                             probabilities)",
                                            m.name
                                        ),
                                    );
                                }
                            }
                        }
                    }
                    models.push(None);
                }
                TransformConfig::Composite { alpha, .. } => {
                    p.range(format!("{field}.alpha"), *alpha, 0.0, 1.0);
                    if !has_infer {
                        p.push(&field, "composite needs an infer transform before it");
                    }
                    models.push(None);
                }
                TransformConfig::Delay { ms, .. } => {
                    p.range(format!("{field}.ms"), *ms, 0, 60_000);
                    models.push(None);
                }
            }
        }

        let task = |t: Task| models.iter().flatten().any(|m: &Model| m.config.task == t);
        let (has_semantic, has_instances) = (task(Task::Semantic), task(Task::Instance));
        if self.sinks.is_empty() {
            p.push(
                "sinks",
                "at least one sink is required (mp4, png, jsonl, null or display)",
            );
        }
        let mut outputs: Vec<&Path> = Vec::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let field = format!("sinks[{i}]");
            check_queue(p, &field, s.queue());
            match s {
                SinkConfig::Mp4 { bitrate_kbps, .. } => {
                    p.range(format!("{field}.bitrate_kbps"), *bitrate_kbps, 64, 200_000)
                }
                SinkConfig::Png {
                    what: PngContent::Labels,
                    ..
                } if !has_labels => p.push(&field, "png label maps need an infer transform"),
                SinkConfig::Png {
                    what: PngContent::Instances,
                    ..
                } if !has_instances => p.push(
                    &field,
                    "png instance maps need an infer transform with an instance model",
                ),
                SinkConfig::Png {
                    what: PngContent::Panoptic,
                    ..
                } if !(has_instances && has_semantic) => p.push(
                    &field,
                    "png panoptic maps need a semantic and an instance infer transform",
                ),
                SinkConfig::Display { .. }
                    if std::env::var_os("DISPLAY").is_none()
                        && std::env::var_os("WAYLAND_DISPLAY").is_none() =>
                {
                    p.push(
                        &field,
                        "no display available (DISPLAY and WAYLAND_DISPLAY are unset); \
                         use an mp4, png or null sink",
                    );
                }
                _ => {}
            }
            if let Some(out) = s.output_path() {
                // One JSONL file can hold every stream: each line names its stream.
                let shared = matches!(s, SinkConfig::Jsonl { .. });
                if self.sources.len() > 1
                    && !shared
                    && !out.to_string_lossy().contains(STREAM_PLACEHOLDER)
                {
                    p.push(
                        &field,
                        format!(
                            "{} would be written by all {} sources (expected {STREAM_PLACEHOLDER} \
                             in the path, e.g. out/cam{STREAM_PLACEHOLDER}.mp4)",
                            out.display(),
                            self.sources.len()
                        ),
                    );
                }
                if outputs.contains(&out) {
                    p.push(
                        &field,
                        format!("{} is written by another sink too", out.display()),
                    );
                }
                outputs.push(out);
            }
        }
        if self.eval.is_some() {
            if !has_labels {
                p.push("eval", "eval needs a semantic infer transform to score");
            }
            if !matches!(self.source, SourceConfig::Synthetic { .. }) {
                p.push(
                    "eval",
                    format!(
                        "source {} carries no ground truth (expected type = \"synthetic\")",
                        self.source.describe()
                    ),
                );
            }
        }
        models
    }
}

/// Checks one source; problems name fields as `source.<field>`.
fn check_source(p: &mut Problems, source: &SourceConfig) {
    match source {
        SourceConfig::File { path, .. } => {
            let s = path.to_string_lossy();
            // An image sequence pattern names files that exist only with the index filled in.
            if !s.contains('%') && !path.exists() {
                p.push(
                    "source.path",
                    format!("input {} does not exist", path.display()),
                );
            }
        }
        SourceConfig::Uri { uri } => {
            if !uri.contains("://") {
                p.push(
                    "source.uri",
                    format!("{uri:?} is not a URI (expected scheme://...)"),
                );
            }
        }
        SourceConfig::Rtsp {
            url,
            timeout_s,
            latency_ms,
            backoff_max_s,
            max_outage_s,
            ..
        } => {
            if !url.starts_with("rtsp://") && !url.starts_with("rtsps://") {
                p.push(
                    "source.url",
                    format!("{url:?} is not an RTSP URL (expected rtsp://...)"),
                );
            }
            p.range("source.timeout_s", *timeout_s, 0.1, 3600.0);
            p.range("source.latency_ms", *latency_ms, 0, 60000);
            p.range("source.backoff_max_s", *backoff_max_s, 0.1, 3600.0);
            if let Some(m) = max_outage_s {
                p.range("source.max_outage_s", *m, 0.1, 1e9);
            }
        }
        SourceConfig::Camera { .. } => {}
        SourceConfig::Synthetic {
            width,
            height,
            fps,
            frames,
            ..
        }
        | SourceConfig::Test {
            width,
            height,
            fps,
            frames: Some(frames),
            ..
        } => {
            check_generated(p, *width, *height, *fps);
            if *frames == 0 {
                p.push("source.frames", "0 is out of range (expected at least 1)");
            }
        }
        SourceConfig::Test {
            width,
            height,
            fps,
            frames: None,
            ..
        } => {
            check_generated(p, *width, *height, *fps);
        }
    }
}

/// Frame size and rate of the generated sources (`test`, `synthetic`).
fn check_generated(p: &mut Problems, width: u32, height: u32, fps: u32) {
    p.range("source.width", width, 16, 8192);
    p.range("source.height", height, 16, 8192);
    p.range("source.fps", fps, 1, 1000);
}

fn check_queue(p: &mut Problems, field: &str, queue: &QueueConfig) {
    p.range(format!("{field}.queue.capacity"), queue.capacity, 1, 4096);
}

/// Finds a model config by name or path and loads it. Names are looked up in `configs/` next
/// to the pipeline directory, then in `./configs`, then in `$SEGSTREAM_CONFIGS`. On failure,
/// returns every problem found.
pub fn resolve_model(pipeline: &Path, model: &str) -> Result<Model, Vec<String>> {
    let as_path = Path::new(model);
    let mut candidates: Vec<PathBuf> = Vec::new();
    if model.ends_with(".toml") || model.contains('/') {
        candidates.push(as_path.to_owned());
        if let Some(dir) = pipeline.parent() {
            candidates.push(dir.join(as_path));
        }
    } else {
        let file = format!("{model}.toml");
        if let Some(dir) = pipeline.parent() {
            candidates.push(dir.join("..").join("configs").join(&file));
        }
        candidates.push(Path::new("configs").join(&file));
        if let Some(dir) = std::env::var_os("SEGSTREAM_CONFIGS") {
            candidates.push(Path::new(&dir).join(&file));
        }
    }
    let candidates: Vec<PathBuf> = candidates.iter().map(|c| super::normalize(c)).collect();
    match candidates.iter().find(|c| c.is_file()) {
        Some(found) => Model::load(found).map_err(|e| e.problems()),
        None => Err(vec![format!(
            "model {model:?} not found (looked for {})",
            candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PipelineConfig, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn defaults_fill_in() {
        let c = parse("[source]\ntype = \"test\"\n[[sinks]]\ntype = \"null\"\n").unwrap();
        assert_eq!(
            c.source,
            SourceConfig::Test {
                pattern: "smpte".into(),
                width: 640,
                height: 360,
                fps: 30,
                frames: None,
                live: false
            }
        );
        assert_eq!(
            *c.sinks[0].queue(),
            QueueConfig {
                capacity: 4,
                when_full: None
            }
        );
    }

    #[test]
    fn unknown_keys_are_rejected_everywhere() {
        for text in [
            "[source]\ntype = \"test\"\nwidht = 3\n[[sinks]]\ntype = \"null\"\n",
            "[source]\ntype = \"test\"\n[[sinks]]\ntype = \"null\"\nqueue = { capacty = 3 }\n",
            "[source]\ntype = \"test\"\n[[transforms]]\ntype = \"composite\"\nalhpa = 1\n[[sinks]]\ntype = \"null\"\n",
            "[source]\ntype = \"test\"\n[[sinks]]\ntype = \"null\"\n[extra]\n",
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains("unknown field"), "{text}: {err}");
        }
    }

    #[test]
    fn input_overrides_pick_the_source_kind() {
        assert!(matches!(
            SourceConfig::from_input("rtsp://h/s"),
            SourceConfig::Rtsp { .. }
        ));
        assert!(matches!(
            SourceConfig::from_input("/dev/video2"),
            SourceConfig::Camera { .. }
        ));
        assert!(matches!(
            SourceConfig::from_input("test:ball"),
            SourceConfig::Test { .. }
        ));
        assert!(matches!(
            SourceConfig::from_input("http://h/a.mp4"),
            SourceConfig::Uri { .. }
        ));
        assert!(matches!(
            SourceConfig::from_input("a.mp4"),
            SourceConfig::File { .. }
        ));
        assert!(SourceConfig::from_input("rtsp://h/s").is_live());
        assert!(!SourceConfig::from_input("a.mp4").is_live());
    }

    #[test]
    fn one_source_or_several() {
        let one = parse("[source]\ntype = \"test\"\n[[sinks]]\ntype = \"null\"\n").unwrap();
        assert_eq!(one.sources, vec![one.source.clone()]);
        let two = parse(
            "[[sources]]\ntype = \"test\"\n[[sources]]\ntype = \"rtsp\"\nurl = \"rtsp://h/s\"\n\
             [[sinks]]\ntype = \"null\"\n",
        )
        .unwrap();
        assert_eq!(two.sources.len(), 2);
        assert_eq!(two.source, two.sources[0]);
        assert!(two.is_live(), "one live source makes the pipeline live");
        let both =
            "[source]\ntype = \"test\"\n[[sources]]\ntype = \"test\"\n[[sinks]]\ntype = \"null\"\n";
        assert!(parse(both)
            .unwrap_err()
            .contains("both [source] and [[sources]]"));
        let none = parse("[[sinks]]\ntype = \"null\"\n").unwrap_err();
        assert!(none.contains("no source"), "{none}");
    }

    #[test]
    fn several_sources_need_stream_placeholders_in_outputs() {
        let dir = std::env::temp_dir().join(format!("segstream-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.toml");
        std::fs::write(
            &path,
            "[[sources]]\ntype = \"test\"\n[[sources]]\ntype = \"test\"\nfps = 0\n\
             [[sinks]]\ntype = \"mp4\"\npath = \"a.mp4\"\n\
             [[sinks]]\ntype = \"mp4\"\npath = \"b{stream}.mp4\"\n",
        )
        .unwrap();
        let problems = Pipeline::load(&path, &Overrides::default())
            .unwrap_err()
            .problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems.iter().any(|p| p.contains("sources[1].fps")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("sinks[0]") && p.contains("{stream}")),
            "{problems:?}"
        );
        assert_eq!(
            stream_path(Path::new("out/cam{stream}.mp4"), 3),
            Path::new("out/cam3.mp4")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_problem_is_reported() {
        let dir = std::env::temp_dir().join(format!("segstream-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.toml");
        std::fs::write(
            &path,
            "[source]\ntype = \"test\"\nwidth = 3\nfps = 0\n\
             [[transforms]]\ntype = \"composite\"\nalpha = 2\n\
             [[sinks]]\ntype = \"mp4\"\npath = \"a.mp4\"\n[[sinks]]\ntype = \"mp4\"\npath = \"a.mp4\"\n",
        )
        .unwrap();
        let err = Pipeline::load(&path, &Overrides::default()).unwrap_err();
        let problems = err.problems();
        for expect in [
            "source.width",
            "source.fps",
            "transforms[0].alpha",
            "needs an infer",
            "written by another sink",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(expect)),
                "{expect} missing from {problems:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
