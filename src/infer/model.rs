//! Model configs (`configs/<name>.toml`): everything the runtime needs to feed an ONNX model
//! and read its answer. A user with their own trained export writes one of these.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::TilingConfig;
use crate::config::{normalize, read_text, ConfigError, Document, Problems};

/// What a model predicts.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// One class per pixel (DeepLabV3+ and friends).
    Semantic,
    /// Boxes, classes, scores and a mask per object (Mask R-CNN).
    Instance,
}

/// A model config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Free text shown in logs and reports.
    #[serde(default)]
    pub description: Option<String>,
    /// What the model predicts.
    pub task: Task,
    /// Path to the ONNX file, relative to this config file.
    pub onnx: PathBuf,
    /// How frames become the model's input tensor.
    pub input: InputConfig,
    /// Which output to read and what it holds.
    pub output: OutputConfig,
    /// Class names and display colours.
    pub classes: ClassesConfig,
    /// Memory inference takes per megapixel of model input (MiB), for the infer stage's
    /// `max_frame_mib`. Measured as the growth of peak memory between 1920x1080 and
    /// 3840x2160 stills: DeepLabV3+ MobileNetV2 311, ResNet-50 355.
    #[serde(default = "default_memory_per_megapixel")]
    pub memory_per_megapixel_mib: f64,
}

fn default_memory_per_megapixel() -> f64 {
    400.0
}

/// Memory layout of the input tensor.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum Layout {
    /// `[batch, channels, height, width]`.
    NCHW,
    /// `[batch, height, width, channels]`.
    NHWC,
    /// `[channels, height, width]`, no batch axis (torchvision's detection exports).
    CHW,
}

impl Layout {
    pub fn rank(self) -> usize {
        match self {
            Layout::NCHW | Layout::NHWC => 4,
            Layout::CHW => 3,
        }
    }

    /// Index of the (channel, height, width) axes.
    pub fn axes(self) -> (usize, usize, usize) {
        match self {
            Layout::NCHW => (1, 2, 3),
            Layout::NHWC => (3, 1, 2),
            Layout::CHW => (0, 1, 2),
        }
    }
}

/// Channel order the model was trained with.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum ColorOrder {
    RGB,
    BGR,
}

/// Element type of the input tensor.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    Float32,
    /// Half-precision input (and, usually, output) tensors.
    Float16,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Name of the model's image input.
    pub name: String,
    /// Tensor layout.
    pub layout: Layout,
    /// Channel order.
    #[serde(default = "default_color")]
    pub color: ColorOrder,
    /// Element type.
    #[serde(default = "default_dtype")]
    pub dtype: InputType,
    /// Pixel values (0..255) are divided by this first: 255 for models trained on 0..1, 1 for 0..255.
    #[serde(default = "default_scale")]
    pub scale: f32,
    /// Per-channel mean subtracted after scaling, in the model's channel order.
    #[serde(default = "zeros")]
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after the mean, in the model's channel order.
    #[serde(default = "ones")]
    pub std: [f32; 3],
    /// How frame sizes are mapped to sizes the model accepts.
    pub size: SizePolicy,
}

/// How a frame is brought to a size the model accepts.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum SizePolicy {
    /// Keep the frame's resolution; pad right and bottom up to a multiple of `multiple_of`
    /// (padding is zero after normalization, i.e. the mean colour). Outputs are cropped back.
    Pad {
        /// Height and width must be divisible by this (16 for the smp DeepLabV3+ exports).
        #[serde(default = "one")]
        multiple_of: u32,
    },
    /// Resize the whole frame to `width` x `height` (bilinear); outputs are resized back.
    Stretch { width: u32, height: u32 },
}

impl SizePolicy {
    /// The model input size (width, height) for a frame of the given size.
    pub fn model_size(self, width: u32, height: u32) -> (u32, u32) {
        match self {
            SizePolicy::Pad { multiple_of: m } => (width.div_ceil(m) * m, height.div_ceil(m) * m),
            SizePolicy::Stretch { width, height } => (width, height),
        }
    }
}

/// Which output to read, and what it holds.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputConfig {
    /// `[N, classes, h, w]` float scores; `h, w` may be smaller than the input (up-sampled
    /// bilinearly before the argmax).
    Logits { name: String },
    /// Like `logits`, after a softmax.
    Probabilities { name: String },
    /// `[N, h, w]` or `[N, 1, h, w]` class indices (int64 or int32), already argmaxed.
    Labels { name: String },
    /// Mask R-CNN style detections.
    Detections {
        boxes: String,
        labels: String,
        scores: String,
        masks: String,
        /// `pasted`: masks `[N,1,H,W]` at input size; `raw`: `[N,1|C,28,28]` to paste into boxes.
        masks_format: MasksFormat,
        #[serde(default = "default_score_threshold")]
        score_threshold: f32,
        #[serde(default = "default_max_detections")]
        max_detections: u32,
        /// Keep only detections of these classes (by name); all classes when absent.
        #[serde(default)]
        classes: Option<Vec<String>>,
    },
}

impl OutputConfig {
    /// Names of every output the config reads.
    pub fn names(&self) -> Vec<&str> {
        match self {
            OutputConfig::Logits { name }
            | OutputConfig::Probabilities { name }
            | OutputConfig::Labels { name } => vec![name],
            OutputConfig::Detections {
                boxes,
                labels,
                scores,
                masks,
                ..
            } => {
                vec![boxes, labels, scores, masks]
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MasksFormat {
    Pasted,
    Raw,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassesConfig {
    /// Class names, by class index.
    pub names: Vec<String>,
    /// RGB colour per class; when absent, distinct colours are generated.
    #[serde(default)]
    pub palette: Option<Vec<[u8; 3]>>,
}

fn default_color() -> ColorOrder {
    ColorOrder::RGB
}
fn default_dtype() -> InputType {
    InputType::Float32
}
fn default_scale() -> f32 {
    255.0
}
fn zeros() -> [f32; 3] {
    [0.0; 3]
}
fn ones() -> [f32; 3] {
    [1.0; 3]
}
fn one() -> u32 {
    1
}
fn default_score_threshold() -> f32 {
    0.5
}
fn default_max_detections() -> u32 {
    100
}

/// A model config that was read and checked, with paths resolved.
#[derive(Clone, Debug)]
pub struct Model {
    /// The config's file stem, e.g. `deeplabv3plus_mobilenet_v2`.
    pub name: String,
    pub config_path: PathBuf,
    /// The ONNX file, resolved against the config's directory.
    pub onnx_path: PathBuf,
    pub config: ModelConfig,
    /// One colour per class.
    pub palette: Vec<[u8; 3]>,
    /// Whether the ONNX file holds QuantizeLinear nodes, read once when first asked.
    quantized: std::sync::OnceLock<bool>,
}

impl Model {
    /// Reads a model config and checks it on its own (the ONNX file must exist; whether it
    /// agrees with the config is checked when a session is created).
    pub fn load(path: &Path) -> Result<Model, ConfigError> {
        let config: ModelConfig = crate::config::read_toml(path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let onnx_path = normalize(&dir.join(&config.onnx));
        let mut p = Problems::default();
        config.check(&mut p);
        if !onnx_path.is_file() {
            p.push(
                "onnx",
                format!(
                    "model file {} does not exist (export it with scripts/setup, or point \
                     `onnx` at your own export)",
                    onnx_path.display()
                ),
            );
        }
        if let Ok(text) = read_text(path) {
            if let Ok(doc) = Document::parse(&text) {
                p.locate(&doc);
            }
        }
        p.into_result(path)?;
        let palette = match &config.classes.palette {
            Some(p) => p.clone(),
            None => generated_palette(config.classes.names.len()),
        };
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Model {
            name,
            config_path: path.to_owned(),
            onnx_path,
            config,
            palette,
            quantized: std::sync::OnceLock::new(),
        })
    }

    /// True for instance-segmentation models (detections), false for semantic ones.
    pub fn is_instance(&self) -> bool {
        self.config.task == Task::Instance
    }

    pub fn num_classes(&self) -> usize {
        self.config.classes.names.len()
    }

    /// Which class indices an instance model keeps (`output.classes`), by class index;
    /// `None` keeps every class.
    pub fn class_filter(&self) -> Option<Vec<bool>> {
        let OutputConfig::Detections {
            classes: Some(keep),
            ..
        } = &self.config.output
        else {
            return None;
        };
        Some(
            self.config
                .classes
                .names
                .iter()
                .map(|n| keep.contains(n))
                .collect(),
        )
    }

    /// Whether the ONNX file holds QuantizeLinear nodes (an INT8 QDQ model); operator names
    /// are plain bytes in the protobuf. The file is read once per loaded model.
    pub fn is_quantized(&self) -> bool {
        *self.quantized.get_or_init(|| {
            std::fs::read(&self.onnx_path)
                .is_ok_and(|b| b.windows(14).any(|w| w == b"QuantizeLinear"))
        })
    }

    /// What the model computes in with these providers: `int8` for a QDQ model, `bfloat16`
    /// under OpenVINO's BF16 hint, else its input type (`float32`, `float16`).
    pub fn precision(&self, providers: &[super::ProviderConfig]) -> String {
        if self.is_quantized() {
            return "int8".into();
        }
        let bf16 = providers.iter().any(|p| {
            matches!(p, super::ProviderConfig::Openvino { precision, .. } if precision == "BF16")
        });
        if bf16 && self.config.input.dtype == InputType::Float32 {
            return "bfloat16".into();
        }
        format!("{:?}", self.config.input.dtype).to_lowercase()
    }

    /// The tile size for `tiling` with this model, or what is wrong with it.
    pub fn tile_size(&self, tiling: &TilingConfig) -> Result<(u32, u32), Vec<String>> {
        let mut problems = Vec::new();
        if self.config.task == Task::Instance && tiling.scale != 1.0 {
            problems.push(format!(
                "{} is an instance model: its slices are cut at native resolution \
                 (expected scale = 1)",
                self.name
            ));
        }
        if matches!(self.config.output, OutputConfig::Labels { .. }) {
            problems.push(format!(
                "{} outputs labels; tiles can only be blended from scores (logits or probabilities)",
                self.name
            ));
        }
        let size = match (self.config.input.size, tiling.width, tiling.height) {
            (SizePolicy::Stretch { width, height }, w, h) => {
                let (tw, th) = (w.unwrap_or(width), h.unwrap_or(height));
                if (tw, th) != (width, height) {
                    problems.push(format!(
                        "tile size {tw}x{th} differs from the model's fixed input {width}x{height}"
                    ));
                }
                Some((tw, th))
            }
            (SizePolicy::Pad { multiple_of }, Some(w), Some(h)) => {
                if w % multiple_of != 0 || h % multiple_of != 0 || w == 0 || h == 0 {
                    problems.push(format!(
                        "tile size {w}x{h} must be a non-zero multiple of {multiple_of} for {}",
                        self.name
                    ));
                }
                Some((w, h))
            }
            (SizePolicy::Pad { .. }, _, _) => {
                problems.push(format!(
                    "{} takes any size: set tiling.width and tiling.height",
                    self.name
                ));
                None
            }
        };
        if let Some((w, h)) = size {
            if tiling.overlap >= w.min(h) {
                problems.push(format!(
                    "overlap {} is out of range (expected less than the tile size {w}x{h})",
                    tiling.overlap
                ));
            }
        }
        match size {
            Some(s) if problems.is_empty() => Ok(s),
            _ => Err(problems),
        }
    }
}

impl ModelConfig {
    fn check(&self, p: &mut Problems) {
        let input = &self.input;
        p.range(
            "memory_per_megapixel_mib",
            self.memory_per_megapixel_mib,
            0.0,
            1_000_000.0,
        );
        p.range("input.scale", input.scale, f32::MIN_POSITIVE, 65536.0);
        p.finite("input.mean", &input.mean);
        p.finite("input.std", &input.std);
        for (i, s) in input.std.iter().enumerate() {
            if s.is_nan() || s.abs() <= 1e-12 {
                p.push(format!("input.std[{i}]"), format!("{s} must be non-zero"));
            }
        }
        match input.size {
            SizePolicy::Pad { multiple_of } => {
                p.range("input.size.multiple_of", multiple_of, 1, 1024)
            }
            SizePolicy::Stretch { width, height } => {
                p.range("input.size.width", width, 1, 16384);
                p.range("input.size.height", height, 1, 16384);
            }
        }
        let n = self.classes.names.len();
        p.range("classes.names (count)", n, 1, 256);
        if let Some(palette) = &self.classes.palette {
            if palette.len() != n {
                p.push(
                    "classes.palette",
                    format!(
                        "has {} colours for {n} classes (expected one per class)",
                        palette.len()
                    ),
                );
            }
        }
        match (&self.task, &self.output) {
            (Task::Semantic, OutputConfig::Detections { .. }) => p.push(
                "output.kind",
                "`detections` is for task = \"instance\" (expected logits, probabilities or labels)",
            ),
            (
                Task::Instance,
                OutputConfig::Detections {
                    score_threshold,
                    max_detections,
                    classes,
                    ..
                },
            ) => {
                p.range("output.score_threshold", *score_threshold, 0.0, 1.0);
                p.range("output.max_detections", *max_detections, 1, 10000);
                for (i, name) in classes.iter().flatten().enumerate() {
                    if !self.classes.names.contains(name) {
                        p.push(
                            format!("output.classes[{i}]"),
                            format!("{name:?} is not one of the model's classes.names"),
                        );
                    }
                }
            }
            (Task::Instance, _) => {
                p.push("output.kind", "task = \"instance\" needs kind = \"detections\"")
            }
            (Task::Semantic, _) => {}
        }
    }
}

/// Distinct, reproducible colours for models whose config has no palette.
pub fn generated_palette(n: usize) -> Vec<[u8; 3]> {
    (0..n)
        .map(|i| {
            // Golden-angle hue steps keep neighbouring class indices far apart in colour.
            let h = (i as f32 * 137.508) % 360.0;
            let (s, v) = (0.65, 0.95);
            let c = v * s;
            let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
            let (r, g, b) = match (h / 60.0) as u32 {
                0 => (c, x, 0.0),
                1 => (x, c, 0.0),
                2 => (0.0, c, x),
                3 => (0.0, x, c),
                4 => (x, 0.0, c),
                _ => (c, 0.0, x),
            };
            let m = v - c;
            [
                ((r + m) * 255.0) as u8,
                ((g + m) * 255.0) as u8,
                ((b + m) * 255.0) as u8,
            ]
        })
        .collect()
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
    let candidates: Vec<PathBuf> = candidates.iter().map(|c| normalize(c)).collect();
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
