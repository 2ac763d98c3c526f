//! png: one 8-bit PNG per frame, named by sequence number.
//!
//! `[[sinks]] type = "png", dir = "../out/labels"` writes `out/labels/000000.png`, ... where
//! each pixel is the class index (or the overlay / plain frame as RGB; or, 16-bit, instance
//! ids or panoptic labels).

use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::whole::write_whole;
use crate::component::{BuildContext, CheckContext, Component, Need, SinkComponent};
use crate::config::Problems;
use crate::frame::{Classes, Facet, Frame};
use crate::instance::maps;
use crate::runtime::{BoxError, Output, QueueConfig, Stage};

/// One PNG per frame, named by sequence number.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PngConfig {
    pub dir: PathBuf,
    /// `labels` (8-bit, pixel = class index), `truth` (the source's true label map),
    /// `overlay` or `frame` (RGB), `instances` or `panoptic` (16-bit).
    #[serde(default)]
    pub what: PngContent,
    #[serde(default)]
    pub queue: QueueConfig,
}

impl Component for PngConfig {
    fn check(&mut self, cx: &CheckContext<'_>, _p: &mut Problems) {
        self.dir = cx.resolve(&self.dir);
    }

    fn needs(&self) -> Vec<Need> {
        match self.what {
            PngContent::Labels => vec![Need::one(
                Facet::Labels,
                "png label maps need an infer transform",
            )],
            PngContent::Truth => vec![Need::one(
                Facet::Truth,
                "png truth maps need a source with ground truth (type = \"synthetic\")",
            )],
            PngContent::Instances => vec![Need::one(
                Facet::Instances,
                "png instance maps need an infer transform with an instance model",
            )],
            PngContent::Panoptic => vec![Need::all(
                Facet::Labels | Facet::Instances,
                "png panoptic maps need a semantic and an instance infer transform",
            )],
            PngContent::Overlay | PngContent::Frame => Vec::new(),
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SinkComponent for PngConfig {
    fn queue(&self) -> QueueConfig {
        self.queue
    }

    fn output(&self) -> Option<&Path> {
        Some(&self.dir)
    }

    fn set_output(&mut self, path: PathBuf) -> bool {
        self.dir = path;
        true
    }

    fn build(
        &self,
        cx: &BuildContext<'_>,
        output: Option<&Path>,
    ) -> Result<Box<dyn Stage>, BoxError> {
        let dir = output.unwrap_or(&self.dir).to_owned();
        Ok(Box::new(
            PngSink::new(dir, self.what).with_classes(cx.classes),
        ))
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PngContent {
    #[default]
    Labels,
    Truth,
    Overlay,
    Frame,
    /// 16-bit: 0 for background, else the instance's id (its index + 1 when untracked);
    /// where masks overlap, the higher score wins.
    Instances,
    /// 16-bit, Cityscapes-style: `class * 1000 + instance` for things, `class * 1000` for
    /// stuff, 65535 for void; classes are the semantic model's.
    Panoptic,
}

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

/// Writes a 16-bit grayscale PNG, whole or not at all.
pub fn write_png16(path: &Path, width: u32, height: u32, data: &[u16]) -> Result<(), PngError> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_be_bytes()).collect();
    encode(
        path,
        width,
        height,
        ::png::ColorType::Grayscale,
        ::png::BitDepth::Sixteen,
        &bytes,
    )
}

/// Writes an 8-bit grayscale or RGB PNG, whole or not at all.
pub fn write_png(
    path: &Path,
    width: u32,
    height: u32,
    rgb: bool,
    data: &[u8],
) -> Result<(), PngError> {
    let color = if rgb {
        ::png::ColorType::Rgb
    } else {
        ::png::ColorType::Grayscale
    };
    encode(path, width, height, color, ::png::BitDepth::Eight, data)
}

fn encode(
    path: &Path,
    width: u32,
    height: u32,
    color: ::png::ColorType,
    depth: ::png::BitDepth,
    data: &[u8],
) -> Result<(), PngError> {
    write_whole(path, |w| {
        let mut encoder = ::png::Encoder::new(w, width, height);
        encoder.set_color(color);
        encoder.set_depth(depth);
        // Label maps compress well at the fastest setting; speed matters more here.
        encoder.set_compression(::png::Compression::Fast);
        let mut writer = encoder.write_header().map_err(io::Error::other)?;
        writer.write_image_data(data).map_err(io::Error::other)?;
        writer.finish().map_err(io::Error::other)
    })
    .map_err(|e| PngError::Write {
        path: path.to_owned(),
        reason: e.to_string(),
    })
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
