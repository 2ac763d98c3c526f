//! The commands of the `segstream` program, apart from the library: benchmarks, the metrics
//! exporter, the progress display.

pub mod batch;
pub mod bench;
pub mod compare;
pub mod exporter;
pub mod status;
