//! infer: runs a semantic segmentation model on every frame and attaches its label map.
//!
//! `[[transforms]] type = "infer", model = "deeplabv3plus_mobilenet_v2"`
//!
//! One ONNX Runtime session per stage, created on the stage's thread.

mod postprocess;
mod preprocess;
mod session;
mod stitch;

pub use postprocess::{argmax_scores, resample_labels};
pub use preprocess::{normalize, resize, write_item, Geometry, Normalized};
pub use session::{check_model, environment, library_candidates, open_session, provider_name};
pub use stitch::{Stitch, StitchBuffers};

use std::borrow::Cow;
use std::sync::Arc;

use half::f16;
use ort::session::Session;
use ort::value::{Tensor, TensorElementType, ValueType};

use crate::config::{InputType, Layout, Model, OutputConfig, ProviderConfig, TilingConfig};
use crate::frame::{ClassScores, Frame, LabelMap, RgbImage, ScoreKind};
use crate::runtime::{BoxError, Output, Stage};
use crate::tile::{Tile, TileGrid};

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("{0}")]
    Runtime(String),
    #[error("execution provider {provider} was requested but cannot be used: {reason}")]
    Provider {
        provider: &'static str,
        reason: String,
    },
    #[error("cannot load model {model}: {reason}")]
    Session { model: String, reason: String },
    #[error("model {model} ({onnx}) does not match its config {config}: {}", problems.join("; "))]
    Mismatch {
        model: String,
        onnx: String,
        config: String,
        problems: Vec<String>,
    },
    #[error("model {model}: inference failed: {reason}")]
    Run { model: String, reason: String },
    #[error("model {model}: pre-processing failed: {0}", .source)]
    Preprocess {
        model: String,
        source: opencv::Error,
    },
}

/// How a `Segmenter` feeds its model.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineOptions {
    /// Most images (frames or tiles) per inference call.
    pub batch: usize,
    /// Tile frames at native (or scaled) resolution instead of resizing them.
    pub tiling: Option<TilingConfig>,
    /// Keep each frame's class scores (`Frame::scores`) for a later stage (refine); whole
    /// frames only, tiled frames keep none.
    pub scores: bool,
}

/// One batch item waiting for inference: a whole frame or one tile of it.
struct Job {
    image: usize,
    tile: Option<Tile>,
    geometry: Geometry,
    /// Model input size (width, height).
    size: (u32, u32),
    /// The region (x, y, width, height) of the prepared image that goes into the item.
    region: (u32, u32, u32, u32),
}

/// A model's output for a batch, borrowed from ONNX Runtime where the types allow.
enum BatchOut<'a> {
    /// `[n, classes, h, w]`.
    Scores {
        data: Cow<'a, [f32]>,
        classes: usize,
        h: usize,
        w: usize,
    },
    /// `[n, h, w]`.
    Labels {
        data: Cow<'a, [i64]>,
        h: usize,
        w: usize,
    },
}

/// A model ready to segment frames.
pub struct Segmenter {
    model: Model,
    session: Session,
    options: EngineOptions,
    /// Tile size, when tiling.
    tile: Option<(u32, u32)>,
    /// A batch size the model was exported with; batches are padded up to it.
    fixed_batch: Option<usize>,
    /// Stitch buffers kept between frames.
    pool: Vec<StitchBuffers>,
    /// The input tensor of the last run, reused while the shape stays the same.
    input_f32: Option<Tensor<f32>>,
    input_f16: Option<Tensor<f16>>,
    /// Staging for half-precision inputs.
    staging: Vec<f32>,
}

impl Segmenter {
    /// Opens a session and checks that the model agrees with its config.
    pub fn new(
        model: Model,
        providers: &[ProviderConfig],
        threads: usize,
        options: EngineOptions,
    ) -> Result<Self, InferError> {
        let session = open_session(&model, providers, threads)?;
        let mut problems = check_model(&session, &model);
        let tile = match &options.tiling {
            Some(t) => match model.tile_size(t) {
                Ok(size) => Some(size),
                Err(p) => {
                    problems.extend(p);
                    None
                }
            },
            None => None,
        };
        if !problems.is_empty() {
            return Err(InferError::Mismatch {
                model: model.name.clone(),
                onnx: model.onnx_path.display().to_string(),
                config: model.config_path.display().to_string(),
                problems,
            });
        }
        let fixed_batch = session
            .inputs()
            .iter()
            .find(|i| i.name() == model.config.input.name)
            .and_then(|i| i.dtype().tensor_shape().map(|s| s[0]))
            .filter(|&b| b > 0 && model.config.input.layout != Layout::CHW)
            .map(|b| b as usize);
        let mut options = options;
        options.batch = match model.config.input.layout {
            Layout::CHW => 1,
            _ => fixed_batch.unwrap_or(options.batch.max(1)),
        };
        Ok(Segmenter {
            model,
            session,
            options,
            tile,
            fixed_batch,
            pool: Vec::new(),
            input_f32: None,
            input_f16: None,
            staging: Vec::new(),
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Segments one image into a label map of the same size.
    pub fn segment(&mut self, image: &RgbImage) -> Result<LabelMap, InferError> {
        Ok(self
            .segment_batch(&[image])?
            .pop()
            .expect("one result per image"))
    }

    /// Normalizes (and resizes, or cuts into tiles) the images into batch jobs, with a stitch
    /// per tiled image.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &mut self,
        images: &[&RgbImage],
    ) -> Result<(Vec<Job>, Vec<Normalized>, Vec<Option<Stitch>>), InferError> {
        let name = self.model.name.clone();
        let pre = |source| InferError::Preprocess {
            model: name.clone(),
            source,
        };
        let input = &self.model.config.input;
        let classes = self.model.num_classes();
        let mut jobs = Vec::new();
        // The normalized (and resized or scaled) image each job reads from, by image.
        let mut prepared: Vec<Normalized> = Vec::with_capacity(images.len());
        let mut stitches: Vec<Option<Stitch>> = images.iter().map(|_| None).collect();
        for (i, image) in images.iter().enumerate() {
            let normalized = normalize(image, input);
            match (self.options.tiling, self.tile) {
                (Some(t), Some((tw, th))) => {
                    let sw = ((image.width as f32 * t.scale).round() as u32).max(1);
                    let sh = ((image.height as f32 * t.scale).round() as u32).max(1);
                    let scaled = resize(normalized, sw, sh).map_err(pre)?;
                    let grid =
                        TileGrid::new(sw, sh, tw, th, t.overlap).map_err(|e| InferError::Run {
                            model: name.clone(),
                            reason: e.to_string(),
                        })?;
                    let geometry = Geometry {
                        frame_width: image.width,
                        frame_height: image.height,
                        model_width: sw,
                        model_height: sh,
                        stretched: (sw, sh) != (image.width, image.height),
                    };
                    let buffers = self.pool.pop().unwrap_or_default();
                    stitches[i] = Some(Stitch::with_buffers(
                        classes, grid, t.blend, geometry, buffers,
                    ));
                    for tile in grid.tiles() {
                        jobs.push(Job {
                            image: i,
                            tile: Some(tile),
                            geometry,
                            size: (tw, th),
                            region: (tile.x, tile.y, tile.width, tile.height),
                        });
                    }
                    prepared.push(scaled);
                }
                _ => {
                    let geometry = Geometry::for_frame(image.width, image.height, input.size);
                    let (mw, mh) = (geometry.model_width, geometry.model_height);
                    let src = if geometry.stretched {
                        resize(normalized, mw, mh).map_err(pre)?
                    } else {
                        normalized
                    };
                    let (w, h) = (src.width.min(mw), src.height.min(mh));
                    jobs.push(Job {
                        image: i,
                        tile: None,
                        geometry,
                        size: (mw, mh),
                        region: (0, 0, w, h),
                    });
                    prepared.push(src);
                }
            }
        }

        Ok((jobs, prepared, stitches))
    }

    /// Consecutive jobs of the same input size, at most `batch` at a time.
    fn chunks<'j>(&self, jobs: &'j [Job]) -> Vec<&'j [Job]> {
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < jobs.len() {
            let size = jobs[start].size;
            let mut end = start + 1;
            while end < jobs.len() && end - start < self.options.batch && jobs[end].size == size {
                end += 1;
            }
            chunks.push(&jobs[start..end]);
            start = end;
        }
        chunks
    }

    /// Times the model alone: `runs` passes of session runs over the input `segment` would
    /// feed for `image` (pre-processed once, outside the timing). Returns each pass's time.
    pub fn time_model(
        &mut self,
        image: &RgbImage,
        runs: usize,
    ) -> Result<Vec<std::time::Duration>, InferError> {
        let (jobs, prepared, _) = self.prepare(&[image])?;
        let chunks = self.chunks(&jobs);
        let mut times = vec![std::time::Duration::ZERO; runs];
        for chunk in chunks {
            self.load_input(chunk, &prepared, chunk[0].size)?;
            for t in times.iter_mut() {
                *t += self.run_loaded(chunk.len(), |_| Ok(()))?.1;
            }
        }
        Ok(times)
    }

    /// Segments several images, batching whole frames or tiles into as few model runs as
    /// the batch size allows.
    pub fn segment_batch(&mut self, images: &[&RgbImage]) -> Result<Vec<LabelMap>, InferError> {
        Ok(self
            .segment_batch_scored(images)?
            .into_iter()
            .map(|(labels, _)| labels)
            .collect())
    }

    /// Like `segment_batch`, with each image's class scores when `EngineOptions::scores`
    /// asks for them (whole frames of logits or probabilities models).
    pub fn segment_batch_scored(
        &mut self,
        images: &[&RgbImage],
    ) -> Result<Vec<(LabelMap, Option<ClassScores>)>, InferError> {
        let name = self.model.name.clone();
        let (jobs, prepared, mut stitches) = self.prepare(images)?;
        let mut results: Vec<Option<LabelMap>> = images.iter().map(|_| None).collect();
        let mut scores: Vec<Option<ClassScores>> = images.iter().map(|_| None).collect();
        let kind = match self.model.config.output {
            OutputConfig::Probabilities { .. } => ScoreKind::Probabilities,
            _ => ScoreKind::Logits,
        };
        let keep = self.options.scores;
        for chunk in self.chunks(&jobs) {
            let size = chunk[0].size;
            self.load_input(chunk, &prepared, size)?;
            let (results, stitches, scores) = (&mut results, &mut stitches, &mut scores);
            self.run_loaded(chunk.len(), |out| {
                match out {
                    BatchOut::Scores {
                        data,
                        classes,
                        h,
                        w,
                    } => {
                        for (k, job) in chunk.iter().enumerate() {
                            let item = &data[k * classes * h * w..(k + 1) * classes * h * w];
                            match (&job.tile, &mut stitches[job.image]) {
                                (Some(tile), Some(stitch)) => stitch.add(tile, item, h, w),
                                _ => {
                                    results[job.image] =
                                        Some(argmax_scores(item, classes, h, w, &job.geometry));
                                    if keep {
                                        scores[job.image] = Some(ClassScores {
                                            kind,
                                            classes,
                                            width: w as u32,
                                            height: h as u32,
                                            data: item.to_vec(),
                                            geometry: job.geometry,
                                        });
                                    }
                                }
                            }
                        }
                    }
                    BatchOut::Labels { data, h, w } => {
                        for (k, job) in chunk.iter().enumerate() {
                            let item = &data[k * h * w..(k + 1) * h * w];
                            let labels =
                                resample_labels(item, h, w, &job.geometry).map_err(|v| {
                                    InferError::Run {
                                        model: name.clone(),
                                        reason: format!("class index {v} is outside 0..=255"),
                                    }
                                })?;
                            results[job.image] = Some(labels);
                        }
                    }
                }
                Ok(())
            })?;
        }
        for (slot, stitch) in results.iter_mut().zip(stitches.drain(..)) {
            if let Some(stitch) = stitch {
                let (labels, buffers) = stitch.finish_and_recycle();
                *slot = Some(labels);
                self.pool.push(buffers);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every image has a result"))
            .zip(scores)
            .collect())
    }

    /// Runs the model on equally sized items, padding up to a fixed batch.
    /// Writes the items into the input tensor (padding and unused batch slots are zero).
    fn load_input(
        &mut self,
        items: &[Job],
        prepared: &[Normalized],
        (mw, mh): (u32, u32),
    ) -> Result<(), InferError> {
        let name = &self.model.name;
        let run_err = |e: ort::Error| InferError::Run {
            model: name.clone(),
            reason: e.to_string(),
        };
        let input = &self.model.config.input;
        let n = self.fixed_batch.unwrap_or(items.len());
        let item_len = 3 * mw as usize * mh as usize;
        let shape: Vec<i64> = match input.layout {
            Layout::NCHW => vec![n as i64, 3, mh as i64, mw as i64],
            Layout::NHWC => vec![n as i64, mh as i64, mw as i64, 3],
            Layout::CHW => vec![3, mh as i64, mw as i64],
        };
        // Writes the items into `buf` (n items; padding and unused batch slots are zero).
        let fill = |buf: &mut [f32]| {
            buf.fill(0.0);
            for (job, item) in items.iter().zip(buf.chunks_exact_mut(item_len)) {
                let (x, y, w, h) = job.region;
                write_item(item, input.layout, &prepared[job.image], x, y, w, h, mw);
            }
        };
        let fits = |s: &[i64]| s == &shape[..];
        match input.dtype {
            InputType::Float32 => {
                if !self.input_f32.as_ref().is_some_and(|t| fits(t.shape())) {
                    let zeros = vec![0f32; n * item_len];
                    self.input_f32 =
                        Some(Tensor::from_array((shape.clone(), zeros)).map_err(run_err)?);
                }
                let tensor = self.input_f32.as_mut().expect("created above");
                fill(tensor.extract_tensor_mut().1);
            }
            InputType::Float16 => {
                if !self.input_f16.as_ref().is_some_and(|t| fits(t.shape())) {
                    let zeros = vec![f16::ZERO; n * item_len];
                    self.input_f16 =
                        Some(Tensor::from_array((shape.clone(), zeros)).map_err(run_err)?);
                }
                self.staging.resize(n * item_len, 0.0);
                fill(&mut self.staging);
                let tensor = self.input_f16.as_mut().expect("created above");
                for (h, &v) in tensor.extract_tensor_mut().1.iter_mut().zip(&self.staging) {
                    *h = f16::from_f32(v);
                }
            }
        }
        Ok(())
    }

    /// Runs the session on the loaded input and hands the first `items` results to `read`;
    /// returns what it returns and how long the session run took.
    fn run_loaded<R>(
        &mut self,
        items: usize,
        read: impl FnOnce(BatchOut<'_>) -> Result<R, InferError>,
    ) -> Result<(R, std::time::Duration), InferError> {
        let name = &self.model.name;
        let run_err = |e: ort::Error| InferError::Run {
            model: name.clone(),
            reason: e.to_string(),
        };
        let input = &self.model.config.input;
        let input_name = input.name.as_str();
        let started = std::time::Instant::now();
        let outputs = match input.dtype {
            InputType::Float32 => {
                let tensor = self.input_f32.as_ref().expect("load_input ran");
                self.session
                    .run(ort::inputs![input_name => tensor])
                    .map_err(run_err)?
            }
            InputType::Float16 => {
                let tensor = self.input_f16.as_ref().expect("load_input ran");
                self.session
                    .run(ort::inputs![input_name => tensor])
                    .map_err(run_err)?
            }
        };
        let took = started.elapsed();
        let output_name = self.model.config.output.names()[0];
        let value = outputs.get(output_name).ok_or_else(|| InferError::Run {
            model: name.clone(),
            reason: format!("output {output_name:?} missing from the results"),
        })?;
        let ty = match value.dtype() {
            ValueType::Tensor { ty, .. } => *ty,
            _ => TensorElementType::Float32,
        };
        let bad_shape = |shape: &[i64]| InferError::Run {
            model: name.clone(),
            reason: format!("output {output_name:?} has unexpected shape {shape:?}"),
        };
        match &self.model.config.output {
            OutputConfig::Logits { .. } | OutputConfig::Probabilities { .. } => {
                let (shape, data): (Vec<i64>, Cow<[f32]>) = if ty == TensorElementType::Float16 {
                    let (s, d) = value.try_extract_tensor::<f16>().map_err(run_err)?;
                    (
                        s.to_vec(),
                        Cow::Owned(d.iter().map(|v| v.to_f32()).collect()),
                    )
                } else {
                    let (s, d) = value.try_extract_tensor::<f32>().map_err(run_err)?;
                    (s.to_vec(), Cow::Borrowed(d))
                };
                let [b, c, h, w] = shape[..] else {
                    return Err(bad_shape(&shape));
                };
                if c as usize != self.model.num_classes()
                    || h <= 0
                    || w <= 0
                    || (b as usize) < items
                {
                    return Err(bad_shape(&shape));
                }
                let out = BatchOut::Scores {
                    data,
                    classes: c as usize,
                    h: h as usize,
                    w: w as usize,
                };
                Ok((read(out)?, took))
            }
            OutputConfig::Labels { .. } => {
                let (shape, data): (Vec<i64>, Cow<[i64]>) = if ty == TensorElementType::Int32 {
                    let (s, d) = value.try_extract_tensor::<i32>().map_err(run_err)?;
                    (
                        s.to_vec(),
                        Cow::Owned(d.iter().map(|&v| v as i64).collect()),
                    )
                } else {
                    let (s, d) = value.try_extract_tensor::<i64>().map_err(run_err)?;
                    (s.to_vec(), Cow::Borrowed(d))
                };
                let (h, w) = match shape[..] {
                    [_, h, w] | [_, 1, h, w] => (h as usize, w as usize),
                    _ => return Err(bad_shape(&shape)),
                };
                Ok((read(BatchOut::Labels { data, h, w })?, took))
            }
            OutputConfig::Detections { .. } => Err(InferError::Run {
                model: name.clone(),
                reason: "instance models are not semantic segmenters".into(),
            }),
        }
    }
}

/// The infer stage.
pub struct Infer {
    model: Model,
    providers: Vec<ProviderConfig>,
    threads: usize,
    options: EngineOptions,
    segmenter: Option<Segmenter>,
}

impl Infer {
    pub fn new(
        model: Model,
        providers: Vec<ProviderConfig>,
        threads: usize,
        options: EngineOptions,
    ) -> Self {
        Infer {
            model,
            providers,
            threads,
            options,
            segmenter: None,
        }
    }
}

impl Stage for Infer {
    fn start(&mut self) -> Result<(), BoxError> {
        let segmenter = Segmenter::new(
            self.model.clone(),
            &self.providers,
            self.threads,
            self.options,
        )?;
        let used: Vec<&str> = self.providers.iter().map(provider_name).collect();
        tracing::info!(
            stage = "infer",
            model = %self.model.name,
            providers = %if used.is_empty() { "CPU".into() } else { used.join(",") },
            "Model loaded."
        );
        self.segmenter = Some(segmenter);
        Ok(())
    }

    fn process(&mut self, frame: Frame, out: &mut Output) -> Result<(), BoxError> {
        self.process_batch(vec![frame], out)
    }

    fn process_batch(&mut self, frames: Vec<Frame>, out: &mut Output) -> Result<(), BoxError> {
        let segmenter = self.segmenter.as_mut().expect("start() ran");
        let images: Vec<&RgbImage> = frames.iter().map(|f| f.image.as_ref()).collect();
        let labels = segmenter.segment_batch_scored(&images)?;
        for (mut frame, (labels, scores)) in frames.into_iter().zip(labels) {
            frame.labels = Some(Arc::new(labels));
            frame.scores = scores.map(Arc::new);
            out.send(frame)?;
        }
        Ok(())
    }
}
