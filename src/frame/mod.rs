//! The data model at the bottom of segstream: a frame and what stages learn about it.
//!
//! `let frame = Frame::new(0, seq, image);` then each stage adds what it computed (labels,
//! overlay). Pixels sit behind `Arc`s so fan-out to several sinks never copies them. This
//! layer imports nothing else of segstream; every other module builds on it.

pub mod argmax;
mod bbox;
mod classes;
mod facet;
mod image;
mod instance;
mod scores;
mod yuv;

pub use argmax::{argmax_scores, argmax_upsampled, resample_labels, Alignment, Upsampling};
pub use bbox::{box_ios, box_iou, overlap, MatchMetric};
pub use classes::{Classes, CITYSCAPES};
pub use facet::{Facet, Facets};
pub use image::{LabelMap, RgbImage};
pub use instance::{Instance, Mask};
pub use scores::{ClassScores, Geometry, ScoreKind};
pub use yuv::{Nv12Image, YuvColour};

use std::sync::Arc;
use std::time::{Duration, Instant};

/// A decoded video frame and everything the pipeline has learned about it so far.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Which source the frame came from (0 for single-source pipelines).
    pub stream: u32,
    /// Position in its stream, from 0, assigned by the source; gaps mean drops.
    pub seq: u64,
    /// Presentation timestamp from the container or capture clock, if known.
    pub pts: Option<Duration>,
    /// Nominal frame rate of the stream as (numerator, denominator), if known.
    pub rate: Option<(i32, i32)>,
    /// When the source handed the frame to the pipeline; used for capture-to-output latency.
    pub captured: Instant,
    pub image: Arc<RgbImage>,
    /// The same picture in the decoder's NV12 planes, when the source keeps them
    /// (`nv12 = true`) for a stage that takes them instead of RGB.
    pub yuv: Option<Arc<Nv12Image>>,
    /// Per-pixel class indices at frame resolution, set by `infer`.
    pub labels: Option<Arc<LabelMap>>,
    /// Class scores behind the labels, when a stage needs them (refine): the model's, or
    /// refined probabilities after `refine`.
    pub scores: Option<Arc<ClassScores>>,
    /// Detected objects (instance models), set by `infer`; empty when none were found.
    pub instances: Option<Arc<Vec<Instance>>>,
    /// The frame with the segmentation drawn over it, set by `composite`.
    pub overlay: Option<Arc<RgbImage>>,
    /// The true label map, when the source knows it (the synthetic scene does).
    pub truth: Option<Arc<LabelMap>>,
    /// The true objects, when the source knows them (the synthetic scene does): class in
    /// the label space of `truth`, score 1, exact masks.
    pub truth_instances: Option<Arc<Vec<Instance>>>,
    /// Set on the last frame of a stream that ends while the run goes on (one file of a
    /// batch), so per-stream sinks finish that stream's outputs there.
    pub end: Option<StreamEnd>,
}

/// How a stream that ends before the run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEnd {
    /// Every frame of it was decoded: its outputs are complete.
    Complete,
    /// Decoding failed after this frame (the reason): its outputs are not to be kept.
    Failed(Arc<str>),
}

impl Frame {
    pub fn new(stream: u32, seq: u64, image: RgbImage) -> Self {
        Self {
            stream,
            seq,
            pts: None,
            rate: None,
            captured: Instant::now(),
            image: Arc::new(image),
            yuv: None,
            labels: None,
            scores: None,
            instances: None,
            overlay: None,
            truth: None,
            truth_instances: None,
            end: None,
        }
    }

    /// What a video sink should show: the overlay when there is one, else the frame itself.
    pub fn display_image(&self) -> &Arc<RgbImage> {
        self.overlay.as_ref().unwrap_or(&self.image)
    }
}
