//! Sources: where frames come from. Each file is one `type` of `[source]`, with its
//! settings; those that GStreamer decodes share `gst`.

pub mod batch;
pub mod camera;
pub mod file;
pub mod gst;
pub mod rtsp;
pub mod synthetic;
pub mod test;
pub mod uri;
