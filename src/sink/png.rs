//! png: one 8-bit PNG per frame, named by sequence number.
//!
//! `[[sinks]] type = "png", dir = "out/labels"` writes `out/labels/000000.png`, ... where
//! each pixel is the class index (or the overlay / plain frame as RGB; or, 16-bit, instance
//! ids or panoptic labels).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::config::PngContent;
use crate::frame::Frame;
use crate::instance::maps::{self, Classes};
use crate::runtime::{BoxError, Output, Stage};

#[derive(Debug, thiserror::Error)]
pub enum PngError {
    #[error("cannot create directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
    #[error("frame {seq} has no {what} to write")]
    Missing { seq: u64, what: &'static str },
}

pub struct PngSink {
    dir: PathBuf,
    what: PngContent,
    /// Semantic class of each instance class, for panoptic maps.
    things: Vec<Option<u8>>,
}

impl PngSink {
    pub fn new(dir: PathBuf, what: PngContent) -> Self {
        PngSink {
            dir,
            what,
            things: Vec::new(),
        }
    }

    /// Names the pipeline's classes, which panoptic maps need to put things among stuff.
    pub fn with_classes(mut self, classes: &Classes) -> Self {
        self.things = classes.thing_classes();
        self
    }

    /// `000042.png` for stream 0, `s1_000042.png` for other streams.
    pub fn file_name(stream: u32, seq: u64) -> String {
        if stream == 0 {
            format!("{seq:06}.png")
        } else {
            format!("s{stream}_{seq:06}.png")
        }
    }
}

/// Writes a 16-bit grayscale PNG.
pub fn write_png16(path: &Path, width: u32, height: u32, data: &[u16]) -> Result<(), PngError> {
    let err = |reason: String| PngError::Write {
        path: path.to_owned(),
        reason,
    };
    let file = File::create(path).map_err(|e| err(e.to_string()))?;
    let mut encoder = ::png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(::png::ColorType::Grayscale);
    encoder.set_depth(::png::BitDepth::Sixteen);
    encoder.set_compression(::png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(|e| err(e.to_string()))?;
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_be_bytes()).collect();
    writer
        .write_image_data(&bytes)
        .map_err(|e| err(e.to_string()))?;
    writer.finish().map_err(|e| err(e.to_string()))
}

/// Writes an 8-bit grayscale or RGB PNG.
pub fn write_png(
    path: &Path,
    width: u32,
    height: u32,
    rgb: bool,
    data: &[u8],
) -> Result<(), PngError> {
    let err = |reason: String| PngError::Write {
        path: path.to_owned(),
        reason,
    };
    let file = File::create(path).map_err(|e| err(e.to_string()))?;
    let mut encoder = ::png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(if rgb {
        ::png::ColorType::Rgb
    } else {
        ::png::ColorType::Grayscale
    });
    encoder.set_depth(::png::BitDepth::Eight);
    // Label maps compress well at the fastest setting; speed matters more here.
    encoder.set_compression(::png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(|e| err(e.to_string()))?;
    writer
        .write_image_data(data)
        .map_err(|e| err(e.to_string()))?;
    writer.finish().map_err(|e| err(e.to_string()))
}

impl Stage for PngSink {
    fn start(&mut self) -> Result<(), BoxError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| PngError::Dir {
            path: self.dir.clone(),
            source,
        })?;
        Ok(())
    }

    fn process(&mut self, frame: Frame, _out: &mut Output) -> Result<(), BoxError> {
        let path = self.dir.join(Self::file_name(frame.stream, frame.seq));
        match self.what {
            PngContent::Labels => {
                let labels = frame.labels.as_ref().ok_or(PngError::Missing {
                    seq: frame.seq,
                    what: "label map",
                })?;
                write_png(&path, labels.width, labels.height, false, &labels.data)?;
            }
            PngContent::Truth => {
                let truth = frame.truth.as_ref().ok_or(PngError::Missing {
                    seq: frame.seq,
                    what: "true label map",
                })?;
                write_png(&path, truth.width, truth.height, false, &truth.data)?;
            }
            PngContent::Instances => {
                let instances = frame.instances.as_ref().ok_or(PngError::Missing {
                    seq: frame.seq,
                    what: "instance list",
                })?;
                let (w, h) = (frame.image.width, frame.image.height);
                write_png16(&path, w, h, &maps::instance_ids(w, h, instances))?;
            }
            PngContent::Panoptic => {
                let missing = |what| PngError::Missing {
                    seq: frame.seq,
                    what,
                };
                let instances = frame.instances.as_ref().ok_or(missing("instance list"))?;
                let labels = frame.labels.as_ref().ok_or(missing("label map"))?;
                let map = maps::panoptic(labels, instances, &self.things);
                write_png16(&path, labels.width, labels.height, &map)?;
            }
            PngContent::Overlay | PngContent::Frame => {
                let image = if self.what == PngContent::Overlay {
                    frame.display_image()
                } else {
                    &frame.image
                };
                write_png(&path, image.width, image.height, true, &image.data)?;
            }
        }
        Ok(())
    }
}
