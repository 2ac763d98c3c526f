//! png: one 8-bit PNG per frame, named by sequence number.
//!
//! `[[sinks]] type = "png", dir = "out/labels"` writes `out/labels/000000.png`, ... where
//! each pixel is the class index (or the overlay / plain frame as RGB).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::config::PngContent;
use crate::frame::Frame;
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
}

impl PngSink {
    pub fn new(dir: PathBuf, what: PngContent) -> Self {
        PngSink { dir, what }
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
