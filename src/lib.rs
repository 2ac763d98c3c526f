//! segstream: real-time video segmentation.
//!
//! sources (GStreamer, synthetic) → infer (ONNX Runtime) → refine (dense CRF) → composite
//! (OpenCV) → sinks, each stage on its own thread, joined by bounded queues.
//!
//! Layers, bottom up; each module imports only from those below it:
//! 1. [`frame`]: the data model (frames, images, label maps, class scores and their geometry,
//!    instances, boxes), and [`tile`]'s geometry.
//! 2. [`runtime`]: threads, queues, flow policies, metrics; it knows no concrete stage.
//! 3. [`config`]: reading TOML with positions, problems, ranges, paths; [`component`]: the
//!    traits every source, transform and sink implements.
//! 4. The components: [`source`], [`infer`], [`refine`], [`composite`], [`delay`], [`sink`],
//!    [`eval`], with [`instance`] (paste, RLE, merge, tracking) beside them.
//! 5. [`registry`] (the one list of component types) and [`pipeline`] (the generic check
//!    and build).
//!
//! The commands (`run`, `bench`, `eval`, `validate`, progress, metrics exporter) live in the
//! `segstream` binary (`src/main.rs`, `src/cli/`), apart from the library.

pub mod component;
pub mod composite;
pub mod config;
pub mod delay;
pub mod eval;
pub mod frame;
pub mod infer;
pub mod instance;
pub mod pipeline;
pub mod refine;
pub mod registry;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod tile;

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
