//! The commands of the `segstream` program, apart from the library: batches, benchmarks, the
//! work queue, the metrics exporter, the progress display.

pub mod batch;
pub mod bench;
pub mod compare;
pub mod exporter;
pub mod queue;
pub mod status;
