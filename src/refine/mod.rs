//! refine: a fully connected CRF over the model's class scores, so labels follow the
//! image's edges.

pub mod crf;
pub mod lattice;

pub use crf::{mean_field, Appearance, CrfError, CrfParams, Refined, Smooth};
