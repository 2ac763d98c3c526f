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

/// One line: the error and every cause not already spelled out in it.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text.replace('\n', " ")
}
