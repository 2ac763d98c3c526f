//! Class scores behind a label map, and how they map onto the frame.

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
    pub geometry: Geometry,
    /// Where the model's final Resize was taken off its graph (`infer`'s `fuse_resize`):
    /// the up-sampling it would have done. The scores are then its input, and the
    /// up-sampled scores (`factor` times as many per axis) are what covers the model input.
    pub upsampling: Option<super::Upsampling>,
}

/// How the scores the model gives relate to the frame, for mapping them back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub frame_width: u32,
    pub frame_height: u32,
    /// Size of the image the scores cover (the model input, or the stitched tiles).
    pub model_width: u32,
    pub model_height: u32,
    /// True when the frame was resized to the model size; false when it was padded.
    pub stretched: bool,
}
