//! The engine under the infer stage: pre-processes frames (resize, pad or tile), batches them
//! into session runs, and hands each output to its convention (`scores`, `labels`,
//! `detections`) to decode.

use half::f16;
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::SessionBuilder;
use ort::session::{IoBinding, Session};
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use super::detections::{self, DetectParams, Names, Placement};
use super::graph;
use super::labels::{self, Labels};
use super::model::*;
use super::preprocess::{frame_geometry, normalize, resize, write_item, Normalized};
use super::scores::{self, Scores};
use super::session::{check_model, open_session_fused, session_builder};
use super::stitch::{Stitch, StitchBuffers};
use super::{InferError, PrePost, ProviderConfig, TilingConfig};
use crate::frame::{
    argmax_scores, argmax_upsampled, resample_labels, ClassScores, Geometry, Instance, LabelMap,
    Nv12Image, RgbImage, ScoreKind, Upsampling, YuvColour,
};
use crate::instance::merge;
use crate::runtime::BoxError;
use crate::tile::{Tile, TileGrid};

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
    /// Refuse a frame whose inference would need more memory than this (MiB), by the
    /// model's `memory_per_megapixel_mib`; `None`: no limit.
    pub max_frame_mib: Option<u64>,
    /// Where pre- and post-processing run (`graph`: whole frames of semantic models only).
    pub pre_post: PrePost,
    /// Overlap host pre- and post-processing with the model (`Segmenter::segment_each`).
    pub overlap: bool,
    /// Take the model's final bilinear Resize of its scores off its graph and up-sample in
    /// the argmax instead (`super::resize`), where the result is the same: host pre- and
    /// post-processing, whole frames, a padded input. Kept scores are then the Resize's
    /// input, with its up-sampling (`ClassScores::upsampling`).
    pub fuse_resize: bool,
}

impl EngineOptions {
    /// Whether `model`'s sessions are made without its final Resize, if it ends in one
    /// (`fuse_resize` where the argmax can stand in for it).
    pub fn fuses_resize(&self, model: &Model) -> bool {
        self.fuse_resize
            && self.pre_post == PrePost::Host
            && self.tiling.is_none()
            && !model.is_instance()
            && matches!(model.config.input.size, SizePolicy::Pad { .. })
            && matches!(
                model.config.output,
                OutputConfig::Logits { .. } | OutputConfig::Probabilities { .. }
            )
    }
}

/// The in-graph pre- and post-processing sessions (`pre_post = "graph"`), chained to the
/// model's through IO bindings: the pre-processed input and the scores stay in the
/// provider's memory (the GPU's with CUDA or TensorRT) from one session to the next, and
/// only the frame's bytes go in and the labels' bytes come out.
struct InGraph {
    front: Front,
    /// Scores to labels, without and with up-sampling (models giving scores), and their
    /// bindings.
    post: Option<[(Session, IoBinding); 2]>,
    /// Where the labels land (and detections, and scores a later stage reads).
    host: MemoryInfo<'static>,
}

/// Frames of one size (and, NV12, one colour matrix) as the in-graph path takes them.
#[derive(Clone, Copy)]
enum GraphFrames<'a> {
    Rgb(&'a [&'a RgbImage]),
    Nv12(&'a [&'a Nv12Image]),
}

impl GraphFrames<'_> {
    fn len(&self) -> usize {
        match self {
            GraphFrames::Rgb(f) => f.len(),
            GraphFrames::Nv12(f) => f.len(),
        }
    }

    /// The frames' width and height.
    fn size(&self) -> (u32, u32) {
        match self {
            GraphFrames::Rgb(f) => (f[0].width, f[0].height),
            GraphFrames::Nv12(f) => (f[0].width, f[0].height),
        }
    }
}

/// `pre` and the model: frames in, the model's outputs out.
struct Front {
    /// RGB frames to the model's input.
    pre: Session,
    pre_binding: IoBinding,
    /// NV12 frames to the model's input, built for the colour matrix of the first NV12
    /// frames (and again if it changes), on `providers` with `threads`.
    pre_nv12: Option<(YuvColour, Session, IoBinding)>,
    providers: Vec<ProviderConfig>,
    threads: usize,
    /// The model session's binding: its input from `pre`, its outputs for `post`.
    model_binding: IoBinding,
    /// Where the frames are written for `pre`: page-locked host memory with CUDA, so their
    /// copy to the device is one DMA transfer.
    frame_allocator: Allocator,
    /// The frames of the last batch, reused while the shape stays the same: RGB, or NV12's
    /// luma and chroma.
    frames: Option<Tensor<u8>>,
    planes: [Option<Tensor<u8>>; 2],
    /// Where `pre`'s output and the model's outputs are kept. Outputs are bound anew for
    /// every run: a bound output keeps its shape, and the next frame's may differ.
    device: MemoryInfo<'static>,
    outputs_at: MemoryInfo<'static>,
}

/// A tensor of `shape` from `allocator`, kept in `slot` while the shape stays the same.
fn reuse<'t>(
    slot: &'t mut Option<Tensor<u8>>,
    allocator: &Allocator,
    shape: &[i64],
) -> ort::Result<&'t mut Tensor<u8>> {
    if slot.as_ref().is_none_or(|t| t.shape()[..] != shape[..]) {
        *slot = Some(Tensor::new(allocator, shape.to_vec())?);
    }
    Ok(slot.as_mut().expect("allocated above"))
}

/// Copies the items into the first batch slots of `tensor` (its `n` slots each one item's
/// bytes); unused slots are zero. The bytes are copied once: a borrowed view cannot be
/// bound.
fn fill_slots<'i>(tensor: &mut Tensor<u8>, n: usize, items: impl Iterator<Item = &'i [u8]>) {
    let bytes = tensor.extract_tensor_mut().1;
    let len = bytes.len() / n.max(1);
    let mut used = 0;
    for (slot, item) in bytes.chunks_exact_mut(len).zip(items) {
        slot.copy_from_slice(item);
        used += len;
    }
    bytes[used..].fill(0);
}

impl Front {
    /// Runs `pre` and the model on `frames` (`n` batch slots) laid out as `geometry`;
    /// returns the model's outputs.
    fn run<'f>(
        &'f mut self,
        session: &'f mut Session,
        model: &Model,
        frames: GraphFrames<'_>,
        n: usize,
        geometry: &Geometry,
    ) -> Result<ort::session::SessionOutputs<'f>, InferError> {
        let err = |e: ort::Error| InferError::Run {
            model: model.name.clone(),
            reason: e.to_string(),
        };
        let input = &model.config.input;
        let (w, h) = (geometry.frame_width as i64, geometry.frame_height as i64);
        let (mw, mh) = (geometry.model_width as i64, geometry.model_height as i64);
        let (aux_name, aux) = match input.size {
            SizePolicy::Pad { .. } => (graph::PADS, vec![0, 0, 0, 0, 0, 0, mh - h, mw - w]),
            SizePolicy::Stretch { .. } => (graph::SIZES, vec![n as i64, 3, mh, mw]),
        };
        let aux = Tensor::from_array(([aux.len()], aux)).map_err(err)?;
        let prepared = match frames {
            GraphFrames::Rgb(images) => {
                let frame = reuse(
                    &mut self.frames,
                    &self.frame_allocator,
                    &[n as i64, h, w, 3],
                )
                .map_err(err)?;
                fill_slots(frame, n, images.iter().map(|i| i.data.as_slice()));
                let binding = &mut self.pre_binding;
                binding.bind_input(graph::FRAME, &*frame).map_err(err)?;
                binding.bind_input(aux_name, &aux).map_err(err)?;
                binding
                    .bind_output_to_device(graph::IMAGE, &self.device)
                    .map_err(err)?;
                self.pre.run_binding(binding).map_err(err)?
            }
            GraphFrames::Nv12(images) => {
                let colour = images[0].colour;
                if self.pre_nv12.as_ref().is_none_or(|p| p.0 != colour) {
                    let format = graph::FrameFormat::Nv12(colour);
                    let options = graph_options(model, &self.providers, self.threads)?;
                    let pre = graph::pre(input, format, &options).map_err(err)?;
                    let binding = pre.create_binding().map_err(err)?;
                    self.pre_nv12 = Some((colour, pre, binding));
                }
                let (_, pre, binding) = self.pre_nv12.as_mut().expect("built above");
                let (cw, ch) = images[0].chroma_size();
                let [luma, chroma] = &mut self.planes;
                let luma = reuse(luma, &self.frame_allocator, &[n as i64, h, w]).map_err(err)?;
                fill_slots(luma, n, images.iter().map(|i| i.luma.as_slice()));
                let shape = [n as i64, ch as i64, cw as i64, 2];
                let chroma = reuse(chroma, &self.frame_allocator, &shape).map_err(err)?;
                fill_slots(chroma, n, images.iter().map(|i| i.chroma.as_slice()));
                binding.bind_input(graph::LUMA, &*luma).map_err(err)?;
                binding.bind_input(graph::CHROMA, &*chroma).map_err(err)?;
                binding.bind_input(aux_name, &aux).map_err(err)?;
                binding
                    .bind_output_to_device(graph::IMAGE, &self.device)
                    .map_err(err)?;
                pre.run_binding(binding).map_err(err)?
            }
        };
        self.model_binding
            .bind_input(input.name.as_str(), &prepared[graph::IMAGE])
            .map_err(err)?;
        for name in model.config.output.names() {
            self.model_binding
                .bind_output_to_device(name, &self.outputs_at)
                .map_err(err)?;
        }
        session.run_binding(&self.model_binding).map_err(err)
    }
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
    Scores(Scores<'a>),
    Labels(Labels<'a>),
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
    /// Input tensors, reused while the shape stays the same: the model reads one while the
    /// next batch is written into the other (`segment_each`).
    inputs: [InputSlot; 2],
    /// Pre- and post-processing on the session's device, when asked for.
    graph: Option<InGraph>,
    /// The up-sampling of the final Resize taken off the model's graph, which the argmax
    /// does instead.
    upsampling: Option<Upsampling>,
}

impl Segmenter {
    /// Opens a session and checks that the model agrees with its config.
    pub fn new(
        model: Model,
        providers: &[ProviderConfig],
        threads: usize,
        options: EngineOptions,
    ) -> Result<Self, InferError> {
        let fuse = options.fuses_resize(&model);
        let (session, upsampling) = open_session_fused(&model, providers, threads, fuse)?;
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
        if options.pre_post == PrePost::Graph && options.tiling.is_some() {
            problems.push("pre_post = \"graph\" is for whole frames (no tiling)".into());
        }
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
        if model.is_instance() {
            // Each image's detections come as their own tensors.
            options.batch = 1;
        }
        let graph = match options.pre_post {
            PrePost::Host => None,
            PrePost::Graph => Some(in_graph(
                &model,
                &session,
                providers,
                threads,
                options.scores,
            )?),
        };
        Ok(Segmenter {
            graph,
            upsampling,
            model,
            session,
            options,
            tile,
            fixed_batch,
            pool: Vec::new(),
            inputs: Default::default(),
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The up-sampling of the model's final Resize, when it was taken off the graph and the
    /// argmax does it.
    pub fn upsampling(&self) -> Option<Upsampling> {
        self.upsampling
    }

    /// Whether `segment_nv12` takes frames as NV12 planes (in-graph semantic models).
    pub fn takes_nv12(&self) -> bool {
        self.graph.is_some() && !self.model.is_instance()
    }

    /// Segments one image into a label map of the same size.
    pub fn segment(&mut self, image: &RgbImage) -> Result<LabelMap, InferError> {
        Ok(self
            .segment_batch(&[image])?
            .pop()
            .expect("one result per image"))
    }

    /// Refuses a frame whose inference would need more than the memory limit: the model runs
    /// at the frame's size (or the tiles'), and its activations grow with the pixels.
    fn check_memory(&self, image: &RgbImage) -> Result<(), InferError> {
        self.check_size(image.width, image.height)
    }

    /// `check_memory` for a frame of `width` x `height`.
    fn check_size(&self, width: u32, height: u32) -> Result<(), InferError> {
        let Some(limit) = self.options.max_frame_mib else {
            return Ok(());
        };
        let per_mpx = self.model.config.memory_per_megapixel_mib;
        let need = match (self.options.tiling, self.tile) {
            // Tiles go through the model a batch at a time; the frame is held as floats to
            // cut from, and its class scores are stitched at frame size.
            (Some(t), Some((tw, th))) => {
                let tiles = tw as f64 * th as f64 * self.options.batch as f64 / 1e6 * per_mpx;
                let scaled = width as f64 * height as f64 * (t.scale as f64).powi(2);
                let floats = 3.0 + self.model.num_classes() as f64;
                tiles + scaled * floats * 4.0 / (1024.0 * 1024.0)
            }
            _ => {
                let g = frame_geometry(width, height, self.model.config.input.size);
                g.model_width as f64 * g.model_height as f64 / 1e6 * per_mpx
            }
        };
        if need > limit as f64 {
            return Err(InferError::TooLarge {
                model: self.model.name.clone(),
                width,
                height,
                need_gib: need / 1024.0,
                limit_mib: limit,
            });
        }
        Ok(())
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
            self.check_memory(image)?;
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
                    let (job, src) = whole_frame(&self.model, i, image, normalized)?;
                    jobs.push(job);
                    prepared.push(src);
                }
            }
        }

        Ok((jobs, prepared, stitches))
    }

    /// Consecutive jobs of the same input size, at most `batch` at a time.
    fn chunks<'j>(&self, jobs: &'j [Job]) -> Vec<&'j [Job]> {
        let sizes: Vec<(u32, u32)> = jobs.iter().map(|j| j.size).collect();
        batches(&sizes, self.options.batch)
            .into_iter()
            .map(|r| &jobs[r])
            .collect()
    }

    /// Times the model alone: `runs` passes of session runs over the input `segment` would
    /// feed for `image` (pre-processed once, outside the timing). Returns each pass's time.
    pub fn time_model(
        &mut self,
        image: &RgbImage,
        runs: usize,
    ) -> Result<Vec<std::time::Duration>, InferError> {
        let mut times = vec![std::time::Duration::ZERO; runs];
        if self.model.is_instance() {
            let (jobs, prepared) = self.prepare_detections(image)?;
            for job in &jobs {
                self.load_input(std::slice::from_ref(job), &prepared, job.size)?;
                for t in times.iter_mut() {
                    *t += self.run_detections(job)?.1;
                }
            }
            return Ok(times);
        }
        let (jobs, prepared, _) = self.prepare(&[image])?;
        let chunks = self.chunks(&jobs);
        for chunk in chunks {
            self.load_input(chunk, &prepared, chunk[0].size)?;
            for t in times.iter_mut() {
                *t += self.run_loaded(chunk.len(), |_, _| Ok(()))?.1;
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
        if self.graph.is_some() {
            return self.segment_in_graph(images);
        }
        let (jobs, prepared, mut stitches) = self.prepare(images)?;
        let mut results: Vec<Option<LabelMap>> = images.iter().map(|_| None).collect();
        let mut scores: Vec<Option<ClassScores>> = images.iter().map(|_| None).collect();
        let (keep, up) = (self.options.scores, self.upsampling);
        for chunk in self.chunks(&jobs) {
            let size = chunk[0].size;
            self.load_input(chunk, &prepared, size)?;
            let (results, stitches, scores) = (&mut results, &mut stitches, &mut scores);
            self.run_loaded(chunk.len(), |model, out| {
                for (k, job) in chunk.iter().enumerate() {
                    match (&out, &job.tile, &mut stitches[job.image]) {
                        (BatchOut::Scores(out), Some(tile), Some(stitch)) => {
                            stitch.add(tile, out.item(k), out.h, out.w)
                        }
                        _ => {
                            let (labels, kept) = decode_whole(model, &out, k, job, keep, up)?;
                            results[job.image] = Some(labels);
                            scores[job.image] = kept;
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

    /// Whether `segment_each` overlaps the work around the model with the model.
    pub fn overlaps(&self) -> bool {
        self.options.overlap
            && self.graph.is_none()
            && self.tile.is_none()
            && !self.model.is_instance()
    }

    /// Segments `images` like `segment_batch_scored`, handing each result to `emit` in order
    /// as soon as it is ready. With `overlaps()`, the model runs each batch on a thread of
    /// its own while this thread finishes the batch before it (argmax, up-sampling, `emit`)
    /// and prepares the batch after it (normalization, resizing, the input tensor), into the
    /// other of two input tensors: pre 0, [model 0 | pre 1], [model 1 | post 0, pre 2], ...,
    /// post n. Batches are consecutive frames of one size, at most `batch` at a time.
    pub fn segment_each(
        &mut self,
        images: &[&RgbImage],
        mut emit: impl FnMut(usize, LabelMap, Option<ClassScores>) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        if !self.overlaps() || images.len() < 2 {
            let results = self.segment_batch_scored(images)?;
            for (i, (labels, scores)) in results.into_iter().enumerate() {
                emit(i, labels, scores)?;
            }
            return Ok(());
        }
        for image in images {
            self.check_memory(image)?;
        }
        let groups = batches(&frame_sizes(images), self.options.batch);
        let (keep, up) = (self.options.scores, self.upsampling);
        let Segmenter {
            model,
            session,
            inputs,
            fixed_batch,
            ..
        } = self;
        let (model, fixed_batch) = (&*model, *fixed_batch);
        // Normalizes the frames of `range` into `slot`; returns their jobs.
        let pre = |range: &std::ops::Range<usize>,
                   slot: &mut InputSlot|
         -> Result<Vec<Job>, InferError> {
            let mut jobs = Vec::with_capacity(range.len());
            let mut prepared = Vec::with_capacity(range.len());
            for (k, image) in images[range.clone()].iter().enumerate() {
                let normalized = normalize(image, &model.config.input);
                let (job, src) = whole_frame(model, k, image, normalized)?;
                jobs.push(job);
                prepared.push(src);
            }
            slot.load(model, fixed_batch, &jobs, &prepared, jobs[0].size)?;
            Ok(jobs)
        };
        // Argmax (and up-sampling) of a batch's output, each frame emitted.
        let mut post = |range: &std::ops::Range<usize>,
                        jobs: &[Job],
                        value: &DynValue|
         -> Result<(), BoxError> {
            let out = read_output(model, value, jobs.len())?;
            for (k, job) in jobs.iter().enumerate() {
                let (labels, scores) = decode_whole(model, &out, k, job, keep, up)?;
                emit(range.start + k, labels, scores)?;
            }
            Ok(())
        };
        let mut loaded = pre(&groups[0], &mut inputs[0])?;
        // The batch the model ran last: its frames, jobs and output, not yet post-processed.
        let mut finished: Option<(std::ops::Range<usize>, Vec<Job>, DynValue)> = None;
        for (g, range) in groups.iter().enumerate() {
            let [first, second] = &mut *inputs;
            let (current, other) = if g % 2 == 0 {
                (&*first, second)
            } else {
                (&*second, first)
            };
            let session = &mut *session;
            let (ran, host) = std::thread::scope(|scope| {
                let model_run = std::thread::Builder::new()
                    .name("segstream-model".into())
                    .spawn_scoped(scope, move || -> Result<DynValue, InferError> {
                        let mut outputs =
                            current.run(session, &model.config.input).map_err(|e| {
                                InferError::Run {
                                    model: model.name.clone(),
                                    reason: e.to_string(),
                                }
                            })?;
                        take_output(model, &mut outputs)
                    });
                let model_run = match model_run {
                    Ok(handle) => handle,
                    Err(e) => {
                        let reason = format!("cannot start the model's thread: {e}");
                        return (
                            Err(InferError::Run {
                                model: model.name.clone(),
                                reason,
                            }),
                            Ok(None),
                        );
                    }
                };
                let host = (|| -> Result<Option<Vec<Job>>, BoxError> {
                    if let Some((range, jobs, value)) = finished.take() {
                        post(&range, &jobs, &value)?;
                    }
                    match groups.get(g + 1) {
                        Some(next) => Ok(Some(pre(next, other)?)),
                        None => Ok(None),
                    }
                })();
                let ran = model_run
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (ran, host)
            });
            let value = ran?;
            let next = host?;
            let jobs = std::mem::replace(&mut loaded, next.unwrap_or_default());
            finished = Some((range.clone(), jobs, value));
        }
        if let Some((range, jobs, value)) = finished {
            post(&range, &jobs, &value)?;
        }
        Ok(())
    }

    /// `segment_batch_scored` with pre- and post-processing in graphs: consecutive frames of
    /// one size, at most `batch` at a time, go through `pre`, the model and `post`.
    fn segment_in_graph(
        &mut self,
        images: &[&RgbImage],
    ) -> Result<Vec<(LabelMap, Option<ClassScores>)>, InferError> {
        let mut results = Vec::with_capacity(images.len());
        for range in batches(&frame_sizes(images), self.options.batch) {
            results.extend(self.run_in_graph(GraphFrames::Rgb(&images[range]))?);
        }
        Ok(results)
    }

    /// Segments frames given as NV12 planes (`Frame::yuv`), with pre- and post-processing
    /// in graphs (`pre_post = "graph"`): the colours are converted on the session's device,
    /// so half the bytes of RGB go in. Batches are consecutive frames of one size and
    /// colour matrix, at most `batch` at a time.
    pub fn segment_nv12(
        &mut self,
        frames: &[&Nv12Image],
    ) -> Result<Vec<(LabelMap, Option<ClassScores>)>, InferError> {
        if !self.takes_nv12() {
            return Err(InferError::Run {
                model: self.model.name.clone(),
                reason: "NV12 frames need pre_post = \"graph\" and a semantic model".into(),
            });
        }
        let keys: Vec<_> = frames
            .iter()
            .map(|f| (f.width, f.height, f.colour))
            .collect();
        let mut results = Vec::with_capacity(frames.len());
        for range in batches(&keys, self.options.batch) {
            results.extend(self.run_in_graph(GraphFrames::Nv12(&frames[range]))?);
        }
        Ok(results)
    }

    /// One batch of equally sized frames through the in-graph sessions.
    fn run_in_graph(
        &mut self,
        frames: GraphFrames<'_>,
    ) -> Result<Vec<(LabelMap, Option<ClassScores>)>, InferError> {
        let (w, h) = frames.size();
        self.check_size(w, h)?;
        let count = frames.len();
        let model = &self.model;
        let err = |e: ort::Error| InferError::Run {
            model: model.name.clone(),
            reason: e.to_string(),
        };
        let geometry = frame_geometry(w, h, model.config.input.size);
        let (mw, mh) = (geometry.model_width as i64, geometry.model_height as i64);
        let n = self.fixed_batch.unwrap_or(count);
        let InGraph { front, post, host } = self.graph.as_mut().expect("graph mode");
        let outputs = front.run(&mut self.session, model, frames, n, &geometry)?;
        let output_name = model.config.output.names()[0];
        let bad = |reason: String| InferError::Run {
            model: model.name.clone(),
            reason: format!("output {output_name:?}: {reason}"),
        };
        let value = outputs
            .get(output_name)
            .ok_or_else(|| bad("missing from the results".into()))?;
        let mut results = Vec::with_capacity(count);
        let Some(post) = post else {
            // The model gives labels: mapped to the frame on the host (nearest neighbour).
            let out = labels::read(value, count).map_err(bad)?;
            for k in 0..count {
                let labels = resample_labels(out.item(k), out.h, out.w, &geometry)
                    .map_err(|v| bad(format!("class index {v} is outside 0..=255")))?;
                results.push((labels, None));
            }
            return Ok(results);
        };
        let shape = match value.dtype() {
            ValueType::Tensor { shape, .. } => shape.to_vec(),
            _ => return Err(bad("not a tensor".into())),
        };
        let [b, c, sh, sw] = shape[..] else {
            return Err(bad(format!("unexpected shape {shape:?}")));
        };
        // Pad: the scores cover the padded input, cropped after up-sampling; stretch: the
        // frame.
        let (th, tw) = if geometry.stretched {
            (h as i64, w as i64)
        } else {
            (mh, mw)
        };
        let ends = Tensor::from_array(([2usize], vec![h as i64, w as i64])).map_err(err)?;
        let resize = (sh, sw) != (th, tw);
        let (post, binding) = &mut post[resize as usize];
        binding.bind_input(graph::SCORES, value).map_err(err)?;
        binding.bind_input(graph::ENDS, &ends).map_err(err)?;
        binding
            .bind_output_to_device(graph::LABELS, host)
            .map_err(err)?;
        if resize {
            let sizes = Tensor::from_array(([4usize], vec![b, c, th, tw])).map_err(err)?;
            binding.bind_input(graph::SIZES, &sizes).map_err(err)?;
        }
        let labels = post.run_binding(binding).map_err(err)?;
        let (_, labels) = labels[graph::LABELS]
            .try_extract_tensor::<u8>()
            .map_err(err)?;
        let plane = w as usize * h as usize;
        let kept = if self.options.scores {
            Some(scores::read(value, model.num_classes(), count).map_err(bad)?)
        } else {
            None
        };
        let kind = match model.config.output {
            OutputConfig::Probabilities { .. } => ScoreKind::Probabilities,
            _ => ScoreKind::Logits,
        };
        for k in 0..count {
            let map = LabelMap::new(w, h, labels[k * plane..(k + 1) * plane].to_vec());
            let scores = kept.as_ref().map(|s| ClassScores {
                kind,
                classes: s.classes,
                width: s.w as u32,
                height: s.h as u32,
                data: s.item(k).to_vec(),
                geometry,
                upsampling: None,
            });
            results.push((map, scores));
        }
        Ok(results)
    }

    /// Detects the objects in one image (instance models): boxes, classes, scores and masks in
    /// frame coordinates, by descending score. With tiling, every slice (and, with
    /// `full_frame`, the whole frame too) goes through the model and detections that match
    /// across slices are merged.
    pub fn detect(&mut self, image: &RgbImage) -> Result<Vec<Instance>, InferError> {
        let OutputConfig::Detections { max_detections, .. } = self.model.config.output else {
            return Err(InferError::Run {
                model: self.model.name.clone(),
                reason: "semantic models do not detect instances (expected output kind \
                         \"detections\")"
                    .into(),
            });
        };
        if self.graph.is_some() {
            let mut found = self.detect_in_graph(image)?;
            found.sort_by(|a, b| b.score.total_cmp(&a.score));
            found.truncate(max_detections as usize);
            return Ok(found);
        }
        let (jobs, prepared) = self.prepare_detections(image)?;
        let mut found = Vec::new();
        for job in &jobs {
            self.load_input(std::slice::from_ref(job), &prepared, job.size)?;
            found.extend(self.run_detections(job)?.0);
        }
        let mut found = match &self.options.tiling {
            Some(t) if jobs.len() > 1 => merge::merge(found, t.merge, t.merge_threshold),
            _ => found,
        };
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        found.truncate(max_detections as usize);
        Ok(found)
    }

    /// The jobs for one image of an instance model (the whole frame, or its slices) and the
    /// normalized images they read.
    fn prepare_detections(
        &self,
        image: &RgbImage,
    ) -> Result<(Vec<Job>, Vec<Normalized>), InferError> {
        let name = &self.model.name;
        let input = &self.model.config.input;
        let pre = |source| InferError::Preprocess {
            model: name.clone(),
            source,
        };
        let normalized = normalize(image, input);
        let (w, h) = (image.width, image.height);
        let whole = |index: usize| -> Job {
            let geometry = frame_geometry(w, h, input.size);
            let (mw, mh) = (geometry.model_width, geometry.model_height);
            let region = if geometry.stretched { (mw, mh) } else { (w, h) };
            Job {
                image: index,
                tile: None,
                geometry,
                size: (mw, mh),
                region: (0, 0, region.0, region.1),
            }
        };
        let stretched = |normalized: Normalized| -> Result<Normalized, InferError> {
            match input.size {
                SizePolicy::Stretch { width, height } => {
                    resize(normalized, width, height).map_err(pre)
                }
                SizePolicy::Pad { .. } => Ok(normalized),
            }
        };
        let (Some(t), Some((tw, th))) = (self.options.tiling, self.tile) else {
            return Ok((vec![whole(0)], vec![stretched(normalized)?]));
        };
        let grid = TileGrid::new(w, h, tw, th, t.overlap).map_err(|e| InferError::Run {
            model: name.clone(),
            reason: e.to_string(),
        })?;
        let geometry = Geometry {
            frame_width: w,
            frame_height: h,
            model_width: tw,
            model_height: th,
            stretched: false,
        };
        let mut jobs: Vec<Job> = grid
            .tiles()
            .map(|tile| Job {
                image: 0,
                tile: Some(tile),
                geometry,
                size: (tw, th),
                region: (tile.x, tile.y, tile.width, tile.height),
            })
            .collect();
        let mut prepared = Vec::new();
        if t.full_frame && jobs.len() > 1 {
            let copy = Normalized {
                width: normalized.width,
                height: normalized.height,
                data: normalized.data.clone(),
            };
            prepared.push(copy);
            prepared.push(stretched(normalized)?);
            jobs.push(whole(1));
        } else {
            prepared.push(normalized);
        }
        Ok((jobs, prepared))
    }

    /// Runs the session on the loaded input of `job` and decodes the detections into frame
    /// coordinates; also returns how long the session run took.
    fn run_detections(
        &mut self,
        job: &Job,
    ) -> Result<(Vec<Instance>, std::time::Duration), InferError> {
        let name = &self.model.name;
        let run_err = |e: ort::Error| InferError::Run {
            model: name.clone(),
            reason: e.to_string(),
        };
        let started = std::time::Instant::now();
        let outputs = self.inputs[0]
            .run(&mut self.session, &self.model.config.input)
            .map_err(run_err)?;
        let took = started.elapsed();
        Ok((decode_detections(&self.model, &outputs, job)?, took))
    }

    /// `detect` with pre-processing in a graph (whole frames): the detections are decoded on
    /// the host.
    fn detect_in_graph(&mut self, image: &RgbImage) -> Result<Vec<Instance>, InferError> {
        let input = &self.model.config.input;
        let geometry = frame_geometry(image.width, image.height, input.size);
        let (mw, mh) = (geometry.model_width, geometry.model_height);
        let region = if geometry.stretched {
            (mw, mh)
        } else {
            (image.width, image.height)
        };
        let job = Job {
            image: 0,
            tile: None,
            geometry,
            size: (mw, mh),
            region: (0, 0, region.0, region.1),
        };
        let InGraph { front, .. } = self.graph.as_mut().expect("graph mode");
        let outputs = front.run(
            &mut self.session,
            &self.model,
            GraphFrames::Rgb(&[image]),
            1,
            &geometry,
        )?;
        decode_detections(&self.model, &outputs, &job)
    }

    /// Writes the items into the first input tensor (padding and unused batch slots are
    /// zero).
    fn load_input(
        &mut self,
        items: &[Job],
        prepared: &[Normalized],
        size: (u32, u32),
    ) -> Result<(), InferError> {
        self.inputs[0].load(&self.model, self.fixed_batch, items, prepared, size)
    }

    /// Runs the session on the loaded input and hands the first `items` results to `read`;
    /// returns what it returns and how long the session run took.
    fn run_loaded<R>(
        &mut self,
        items: usize,
        read: impl FnOnce(&Model, BatchOut<'_>) -> Result<R, InferError>,
    ) -> Result<(R, std::time::Duration), InferError> {
        let name = &self.model.name;
        let run_err = |e: ort::Error| InferError::Run {
            model: name.clone(),
            reason: e.to_string(),
        };
        let started = std::time::Instant::now();
        let mut outputs = self.inputs[0]
            .run(&mut self.session, &self.model.config.input)
            .map_err(run_err)?;
        let took = started.elapsed();
        let value = take_output(&self.model, &mut outputs)?;
        let out = read_output(&self.model, &value, items)?;
        Ok((read(&self.model, out)?, took))
    }
}

/// Runs of consecutive equal `sizes`, at most `most` (at least 1) long: the batches of one
/// input shape.
fn batches<K: PartialEq>(sizes: &[K], most: usize) -> Vec<std::ops::Range<usize>> {
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        match runs.last_mut() {
            Some(r) if r.len() < most.max(1) && sizes[r.start] == *size => r.end = i + 1,
            _ => runs.push(i..i + 1),
        }
    }
    runs
}

/// Each frame's width and height.
fn frame_sizes(images: &[&RgbImage]) -> Vec<(u32, u32)> {
    images.iter().map(|i| (i.width, i.height)).collect()
}

/// The job of whole frame `i`, and its model input: `normalized` resized when the frame is
/// stretched to the model's size (padding is left to `InputSlot::load`).
fn whole_frame(
    model: &Model,
    i: usize,
    image: &RgbImage,
    normalized: Normalized,
) -> Result<(Job, Normalized), InferError> {
    let geometry = frame_geometry(image.width, image.height, model.config.input.size);
    let (mw, mh) = (geometry.model_width, geometry.model_height);
    let src = if geometry.stretched {
        resize(normalized, mw, mh).map_err(|source| InferError::Preprocess {
            model: model.name.clone(),
            source,
        })?
    } else {
        normalized
    };
    let (w, h) = (src.width.min(mw), src.height.min(mh));
    let job = Job {
        image: i,
        tile: None,
        geometry,
        size: (mw, mh),
        region: (0, 0, w, h),
    };
    Ok((job, src))
}

/// The label map of whole-frame item `k` of a batch's output, and its class scores when
/// `keep` asks for them (scores conventions).
fn decode_whole(
    model: &Model,
    out: &BatchOut<'_>,
    k: usize,
    job: &Job,
    keep: bool,
    up: Option<Upsampling>,
) -> Result<(LabelMap, Option<ClassScores>), InferError> {
    match out {
        BatchOut::Scores(out) => {
            let (classes, h, w) = (out.classes, out.h, out.w);
            let item = out.item(k);
            let labels = match &up {
                Some(up) => argmax_upsampled(item, classes, h, w, &job.geometry, up),
                None => argmax_scores(item, classes, h, w, &job.geometry),
            };
            let kind = match model.config.output {
                OutputConfig::Probabilities { .. } => ScoreKind::Probabilities,
                _ => ScoreKind::Logits,
            };
            let scores = keep.then(|| ClassScores {
                kind,
                classes,
                width: w as u32,
                height: h as u32,
                data: item.to_vec(),
                geometry: job.geometry,
                // Before the final Resize, when it was taken off: 1/16 of the values.
                upsampling: up,
            });
            Ok((labels, scores))
        }
        BatchOut::Labels(out) => {
            let labels =
                resample_labels(out.item(k), out.h, out.w, &job.geometry).map_err(|v| {
                    InferError::Run {
                        model: model.name.clone(),
                        reason: format!("class index {v} is outside 0..=255"),
                    }
                })?;
            Ok((labels, None))
        }
    }
}

/// The model's (first) output, taken from the run's outputs.
fn take_output(
    model: &Model,
    outputs: &mut ort::session::SessionOutputs<'_>,
) -> Result<DynValue, InferError> {
    let output_name = model.config.output.names()[0];
    outputs.remove(output_name).ok_or_else(|| InferError::Run {
        model: model.name.clone(),
        reason: format!("output {output_name:?} missing from the results"),
    })
}

/// A semantic model's output for a batch of `items`, read by its convention.
fn read_output<'v>(
    model: &Model,
    value: &'v DynValue,
    items: usize,
) -> Result<BatchOut<'v>, InferError> {
    let output_name = model.config.output.names()[0];
    let bad = |reason: String| InferError::Run {
        model: model.name.clone(),
        reason: format!("output {output_name:?}: {reason}"),
    };
    Ok(match &model.config.output {
        OutputConfig::Logits { .. } | OutputConfig::Probabilities { .. } => {
            BatchOut::Scores(scores::read(value, model.num_classes(), items).map_err(bad)?)
        }
        OutputConfig::Labels { .. } => BatchOut::Labels(labels::read(value, items).map_err(bad)?),
        OutputConfig::Detections { .. } => {
            return Err(InferError::Run {
                model: model.name.clone(),
                reason: "instance models are not semantic segmenters".into(),
            })
        }
    })
}

/// An input tensor of the model's element type, reused while its shape stays the same.
#[derive(Default)]
struct InputSlot {
    f32: Option<Tensor<f32>>,
    f16: Option<Tensor<f16>>,
    /// Staging for half-precision inputs.
    staging: Vec<f32>,
}

impl InputSlot {
    /// Writes equally sized items into the tensor, padding up to a fixed batch (padding and
    /// unused batch slots are zero).
    fn load(
        &mut self,
        model: &Model,
        fixed_batch: Option<usize>,
        items: &[Job],
        prepared: &[Normalized],
        (mw, mh): (u32, u32),
    ) -> Result<(), InferError> {
        let run_err = |e: ort::Error| InferError::Run {
            model: model.name.clone(),
            reason: e.to_string(),
        };
        let input = &model.config.input;
        let n = fixed_batch.unwrap_or(items.len());
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
                if !self.f32.as_ref().is_some_and(|t| fits(t.shape())) {
                    let zeros = vec![0f32; n * item_len];
                    self.f32 = Some(Tensor::from_array((shape.clone(), zeros)).map_err(run_err)?);
                }
                let tensor = self.f32.as_mut().expect("created above");
                fill(tensor.extract_tensor_mut().1);
            }
            InputType::Float16 => {
                if !self.f16.as_ref().is_some_and(|t| fits(t.shape())) {
                    let zeros = vec![f16::ZERO; n * item_len];
                    self.f16 = Some(Tensor::from_array((shape.clone(), zeros)).map_err(run_err)?);
                }
                self.staging.resize(n * item_len, 0.0);
                fill(&mut self.staging);
                let tensor = self.f16.as_mut().expect("created above");
                for (h, &v) in tensor.extract_tensor_mut().1.iter_mut().zip(&self.staging) {
                    *h = f16::from_f32(v);
                }
            }
        }
        Ok(())
    }

    /// Runs `session` on the loaded tensor.
    fn run<'s>(
        &self,
        session: &'s mut Session,
        input: &InputConfig,
    ) -> ort::Result<ort::session::SessionOutputs<'s>> {
        let name = input.name.as_str();
        match input.dtype {
            InputType::Float32 => {
                session.run(ort::inputs![name => self.f32.as_ref().expect("load ran")])
            }
            InputType::Float16 => {
                session.run(ort::inputs![name => self.f16.as_ref().expect("load ran")])
            }
        }
    }
}

/// The session options of the in-graph sessions. Their threads sleep when done instead of
/// spinning: the model's session runs between them, and on a small machine spinning
/// threads take its cores.
fn graph_options(
    model: &Model,
    providers: &[ProviderConfig],
    threads: usize,
) -> Result<SessionBuilder, InferError> {
    session_builder(model, providers, threads)?
        .with_intra_op_spinning(false)
        .map_err(|e| InferError::Session {
            model: model.name.clone(),
            reason: ort::Error::<()>::from(e).to_string(),
        })
}

/// Builds the in-graph sessions for `model` on the providers of its `session`.
fn in_graph(
    model: &Model,
    session: &Session,
    providers: &[ProviderConfig],
    threads: usize,
    keep_scores: bool,
) -> Result<InGraph, InferError> {
    let options = graph_options(model, providers, threads)?;
    let failed = |e: ort::Error| InferError::Session {
        model: model.name.clone(),
        reason: format!("cannot build its in-graph pre- and post-processing: {e}"),
    };
    // Where the intermediates stay, and where the labels land (page-locked with CUDA, so
    // their copy back is one DMA transfer).
    let (device, host) = match providers.first() {
        Some(
            ProviderConfig::Cuda { device_id, .. } | ProviderConfig::Tensorrt { device_id, .. },
        ) => (
            MemoryInfo::new(
                AllocationDevice::CUDA,
                *device_id,
                AllocatorType::Device,
                MemoryType::Default,
            ),
            MemoryInfo::new(
                AllocationDevice::CUDA_PINNED,
                *device_id,
                AllocatorType::Device,
                MemoryType::CPUOutput,
            ),
        ),
        _ => (Ok(MemoryInfo::default()), Ok(MemoryInfo::default())),
    };
    let (device, host) = (device.map_err(failed)?, host.map_err(failed)?);
    // Detections, and scores a later stage reads, are wanted on the host.
    let outputs_at = if keep_scores || model.is_instance() {
        host.clone()
    } else {
        device.clone()
    };
    let pre = graph::pre(&model.config.input, graph::FrameFormat::Rgb, &options).map_err(failed)?;
    let frame_allocator = if host == MemoryInfo::default() {
        Allocator::default()
    } else {
        let pinned = MemoryInfo::new(
            host.allocation_device(),
            host.device_id(),
            AllocatorType::Device,
            MemoryType::CPUInput,
        )
        .map_err(failed)?;
        Allocator::new(&pre, pinned).map_err(failed)?
    };
    let pre_binding = pre.create_binding().map_err(failed)?;
    let model_binding = session.create_binding().map_err(failed)?;
    let classes = model.num_classes();
    let post_session = |ty, resize: bool| -> Result<(Session, IoBinding), InferError> {
        let session = graph::post(ty, classes, resize, &options).map_err(failed)?;
        let binding = session.create_binding().map_err(failed)?;
        Ok((session, binding))
    };
    let post = match &model.config.output {
        OutputConfig::Logits { name } | OutputConfig::Probabilities { name } => {
            let ty = session
                .outputs()
                .iter()
                .find(|o| o.name() == name)
                .and_then(|o| match o.dtype() {
                    ValueType::Tensor { ty, .. } => Some(*ty),
                    _ => None,
                })
                .unwrap_or(TensorElementType::Float32);
            Some([post_session(ty, false)?, post_session(ty, true)?])
        }
        _ => None,
    };
    Ok(InGraph {
        front: Front {
            pre,
            pre_binding,
            pre_nv12: None,
            providers: providers.to_vec(),
            threads,
            model_binding,
            frame_allocator,
            frames: None,
            planes: [None, None],
            device,
            outputs_at,
        },
        post,
        host,
    })
}

/// Decodes the detections of `model` in `outputs` (the run of `job`) into frame
/// coordinates.
fn decode_detections(
    model: &Model,
    outputs: &ort::session::SessionOutputs<'_>,
    job: &Job,
) -> Result<Vec<Instance>, InferError> {
    let OutputConfig::Detections {
        boxes,
        labels,
        scores,
        masks,
        masks_format,
        score_threshold,
        ..
    } = &model.config.output
    else {
        unreachable!("detections are for instance models");
    };
    let names = Names {
        boxes,
        labels,
        scores,
        masks,
    };
    let failed = |reason| InferError::Run {
        model: model.name.clone(),
        reason,
    };
    let read = detections::read(outputs, &names).map_err(failed)?;
    let (offset, stretched) = match job.tile {
        Some(tile) => ((tile.x, tile.y), false),
        None => ((0, 0), job.geometry.stretched),
    };
    let place = Placement {
        frame_width: job.geometry.frame_width,
        frame_height: job.geometry.frame_height,
        model: job.size,
        region: (job.region.2, job.region.3),
        offset,
        stretched,
    };
    let params = DetectParams {
        format: *masks_format,
        score_threshold: *score_threshold,
        keep: model.class_filter(),
        num_classes: model.num_classes(),
    };
    detections::decode(&read.outputs(), &place, &params).map_err(failed)
}
