//! The unit of work that flows between stages.
//!
//! `let frame = Frame::new(0, seq, image);` then each stage adds what it computed (labels,
//! overlay). Pixels sit behind `Arc`s so fan-out to several sinks never copies them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::instance::Instance;

/// A tightly packed 8-bit RGB image (`width * height * 3` bytes, no row padding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Self {
        assert_eq!(
            data.len(),
            width as usize * height as usize * 3,
            "RGB buffer size"
        );
        Self {
            width,
            height,
            data,
        }
    }

    pub fn pixels(&self) -> usize {
        self.width as usize * self.height as usize
    }
}

/// One class index per pixel (`width * height` bytes); models have at most 256 classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelMap {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl LabelMap {
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Self {
        assert_eq!(
            data.len(),
            width as usize * height as usize,
            "label buffer size"
        );
        Self {
            width,
            height,
            data,
        }
    }
}

/// What class scores are: raw model outputs or probabilities that sum to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreKind {
    Logits,
    Probabilities,
}

/// Per-class scores of one frame, as `classes` planes of `width * height` floats, and how
/// they map onto the frame (set by `infer` when a later stage asks for them).
#[derive(Clone, Debug)]
pub struct ClassScores {
    pub kind: ScoreKind,
    pub classes: usize,
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
    /// The scores cover `geometry.model_width x model_height` pixels of the model input,
    /// which is the frame stretched or padded.
    pub geometry: crate::infer::Geometry,
}

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
            labels: None,
            scores: None,
            instances: None,
            overlay: None,
            truth: None,
        }
    }

    /// What a video sink should show: the overlay when there is one, else the frame itself.
    pub fn display_image(&self) -> &Arc<RgbImage> {
        self.overlay.as_ref().unwrap_or(&self.image)
    }
}
