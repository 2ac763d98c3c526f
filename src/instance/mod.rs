//! Working with object instances: pasting masks, RLE, merging slices, tracking ids, and
//! frame-sized maps (instance ids, panoptic labels).

pub mod maps;
pub mod merge;
pub mod paste;
pub mod rle;
pub mod track;

pub use crate::frame::{Instance, Mask};
