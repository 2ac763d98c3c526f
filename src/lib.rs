//! segstream: real-time video segmentation.
//!
//! decode (GStreamer) → infer (ONNX Runtime) → composite (OpenCV) → sinks, each stage on
//! its own thread, joined by bounded queues.

pub mod bench;
pub mod composite;
pub mod config;
pub mod decode;
pub mod delay;
pub mod eval;
pub mod exporter;
pub mod frame;
pub mod infer;
pub mod instance;
pub mod refine;
pub mod runtime;
pub mod sink;
pub mod synthetic;
pub mod tile;
pub mod topology;
