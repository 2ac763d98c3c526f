//! infer: runs a model on every frame and attaches what it found: a label map (semantic
//! models) or the detected instances (Mask R-CNN), leaving the other untouched.
//!
//! `[[transforms]] type = "infer", model = "deeplabv3plus_mobilenet_v2"`
//!
//! One ONNX Runtime session per stage, created on the stage's thread. The files:
//! `config` (what the user sets), `model` (a model and its config file), `session` (ONNX
//! Runtime and providers), `preprocess` and `stitch` (frames in, tiles out and back),
//! `segmenter` (batches and session runs), `graph` (the same pre- and post-processing as
//! ONNX graphs on the session's device, `pre_post = "graph"`), `resize` (a model's final
//! Resize of its scores taken off its graph, for the argmax to do), and one file per output convention, each checking
//! the model's outputs and decoding them: `scores` (logits, probabilities), `labels` (class
//! indices) and `detections` (Mask R-CNN boxes and masks).

mod config;
pub mod detections;
pub mod graph;
mod labels;
mod model;
mod preprocess;
mod resize;
mod scores;
mod segmenter;
mod session;
mod stitch;

pub use crate::frame::{argmax_scores, resample_labels};
pub use config::{
    cap_threads, cores, infer_threads, InferConfig, PrePost, ProviderConfig, TilingConfig,
    MAX_THREADS,
};
pub use model::*;
pub use preprocess::{frame_geometry, normalize, resize, write_item, Normalized};
pub use segmenter::{EngineOptions, Segmenter};
pub use session::{
    check_model, environment, library_candidates, open_session, provider_name, session_builder,
};
pub use stitch::{Stitch, StitchBuffers};

use std::sync::Arc;

use crate::frame::{Frame, Nv12Image, RgbImage};
use crate::runtime::{BoxError, Output, Stage};

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
    #[error("frame {width}x{height}: model {model} would need about {need_gib:.1} GiB to segment it (limit {limit_mib} MiB: max_frame_mib of the infer transform; tiling bounds the memory of large frames)")]
    TooLarge {
        model: String,
        width: u32,
        height: u32,
        need_gib: f64,
        limit_mib: u64,
    },
    #[error("model {model}: pre-processing failed: {0}", .source)]
    Preprocess {
        model: String,
        source: opencv::Error,
    },
}

/// The infer stage.
pub struct Infer {
    model: Model,
    providers: Vec<ProviderConfig>,
    threads: usize,
    options: EngineOptions,
    segmenter: Option<Segmenter>,
    /// Whether NV12 frames came in yet (logged once).
    nv12_seen: bool,
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
            nv12_seen: false,
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
            final_resize = %segmenter
                .upsampling()
                .map_or("in the model".into(), |u| format!("{u}, in the argmax")),
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
        if segmenter.model().is_instance() {
            for mut frame in frames {
                let found = segmenter.detect(&frame.image)?;
                frame.instances = Some(Arc::new(found));
                out.send(frame)?;
            }
            return Ok(());
        }
        // Frames that carry their decoder's NV12 planes go in as those (half the bytes).
        if segmenter.takes_nv12() && frames.iter().all(|f| f.yuv.is_some()) {
            if !self.nv12_seen {
                self.nv12_seen = true;
                tracing::info!(stage = "infer", model = %self.model.name, "Frames go in as NV12 planes.");
            }
            let planes: Vec<Arc<Nv12Image>> = frames.iter().filter_map(|f| f.yuv.clone()).collect();
            let planes: Vec<&Nv12Image> = planes.iter().map(|p| p.as_ref()).collect();
            let results = segmenter.segment_nv12(&planes)?;
            for (mut frame, (labels, scores)) in frames.into_iter().zip(results) {
                frame.labels = Some(Arc::new(labels));
                frame.scores = scores.map(Arc::new);
                out.send(frame)?;
            }
            return Ok(());
        }
        // Each frame goes downstream as soon as its labels are ready.
        let held: Vec<Arc<RgbImage>> = frames.iter().map(|f| f.image.clone()).collect();
        let images: Vec<&RgbImage> = held.iter().map(|i| i.as_ref()).collect();
        let mut frames: Vec<Option<Frame>> = frames.into_iter().map(Some).collect();
        segmenter.segment_each(&images, |i, labels, scores| {
            let mut frame = frames[i].take().expect("each frame is emitted once");
            frame.labels = Some(Arc::new(labels));
            frame.scores = scores.map(Arc::new);
            out.send(frame)?;
            Ok(())
        })
    }
}
