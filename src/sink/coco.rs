//! coco_truth: the source's true instances as a COCO instances file, for `eval --instances`.
//!
//! `[[sinks]] type = "coco_truth", path = "../out/truth.json"` writes what a data set's
//! annotation file holds: `images` (id = frame `seq`, `file_name` as the PNG sink names the
//! frame, size), `annotations` (one per visible object: compressed RLE at frame resolution,
//! area, `[x, y, width, height]` box, `iscrowd` 0) and `categories`. Category ids are the
//! pipeline's instance model's class indices, matched by name, so the file scores that
//! model's JSONL output as it is; without an instance model they are the truth's own class
//! indices (Cityscapes train ids for the synthetic scene). Only the `synthetic` source knows
//! its instances.
//!
//! The file is whole at every moment: it is rewritten under a temporary name and renamed
//! over the old one, after a frame once a second has passed since the last write, and at
//! the end. A kill loses at most the last second's frames, never the file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::component::{BuildContext, CheckContext, Component, Need, SinkComponent};
use crate::config::Problems;
use crate::eval::coco::{supercategory, truth_categories, warn_unnamed};
use crate::frame::{Classes, Facet, Frame};
use crate::instance::rle;
use crate::runtime::{BoxError, Output, QueueConfig, Stage};
use crate::sink::png::PngSink;
use crate::sink::whole::write_whole;

/// Settings of the `coco_truth` sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CocoTruthConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub queue: QueueConfig,
}

impl Component for CocoTruthConfig {
    fn check(&mut self, cx: &CheckContext<'_>, _p: &mut Problems) {
        self.path = cx.resolve(&self.path);
    }

    fn needs(&self) -> Vec<Need> {
        vec![Need::one(
            Facet::Truth,
            "coco_truth needs a source with ground truth (type = \"synthetic\")",
        )]
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SinkComponent for CocoTruthConfig {
    fn queue(&self) -> QueueConfig {
        self.queue
    }

    fn output(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn set_output(&mut self, path: PathBuf) -> bool {
        self.path = path;
        true
    }

    fn build(
        &self,
        cx: &BuildContext<'_>,
        output: Option<&Path>,
    ) -> Result<Box<dyn Stage>, BoxError> {
        let path = output.unwrap_or(&self.path).to_owned();
        Ok(Box::new(CocoTruthSink::new(path, cx.classes)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CocoTruthError {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("frame {seq} has no true instances to write (expected a synthetic source)")]
    Missing { seq: u64 },
}

#[derive(Serialize)]
struct Image {
    id: u64,
    file_name: String,
    width: u32,
    height: u32,
}

#[derive(Serialize)]
struct Annotation {
    id: u64,
    image_id: u64,
    category_id: u32,
    segmentation: Segmentation,
    area: u64,
    bbox: [f32; 4],
    iscrowd: u8,
}

#[derive(Serialize)]
struct Segmentation {
    size: [u32; 2],
    counts: String,
}

#[derive(Serialize)]
struct Category {
    id: u32,
    name: String,
    supercategory: &'static str,
}

#[derive(Serialize)]
struct File<'a> {
    info: Info,
    images: &'a [Image],
    annotations: &'a [Annotation],
    categories: &'a [Category],
}

#[derive(Serialize)]
struct Info {
    description: &'static str,
}

pub struct CocoTruthSink {
    path: PathBuf,
    /// Category id and name per truth class (Cityscapes train id); `None` for classes not
    /// written.
    category: Vec<Option<(u32, &'static str)>>,
    categories: Vec<Category>,
    images: Vec<Image>,
    annotations: Vec<Annotation>,
    /// When the file was last written, and whether frames came since.
    written: Option<Instant>,
    dirty: bool,
    /// Truth classes already warned about.
    warned: std::collections::BTreeSet<u32>,
}

/// How long frames may wait before the file is rewritten.
const REWRITE_EVERY: Duration = Duration::from_secs(1);

impl CocoTruthSink {
    pub fn new(path: PathBuf, classes: &Classes) -> Self {
        let category = truth_categories(classes);
        let categories = category
            .iter()
            .enumerate()
            .filter_map(|(class, c)| {
                let (id, name) = (*c)?;
                Some(Category {
                    id,
                    name: name.to_owned(),
                    supercategory: supercategory(class),
                })
            })
            .collect();
        CocoTruthSink {
            path,
            category,
            categories,
            images: Vec::new(),
            annotations: Vec::new(),
            written: None,
            dirty: false,
            warned: Default::default(),
        }
    }

    fn write(&mut self) -> Result<(), CocoTruthError> {
        let file = File {
            info: Info {
                description: "segstream coco_truth: the source's true instances",
            },
            images: &self.images,
            annotations: &self.annotations,
            categories: &self.categories,
        };
        write_whole(&self.path, |w| {
            serde_json::to_writer(&mut *w, &file)?;
            std::io::Write::write_all(w, b"\n")
        })
        .map_err(|source| CocoTruthError::Write {
            path: self.path.clone(),
            source,
        })?;
        self.written = Some(Instant::now());
        self.dirty = false;
        Ok(())
    }
}

impl Stage for CocoTruthSink {
    fn start(&mut self) -> Result<(), BoxError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| CocoTruthError::Write {
                path: dir.to_owned(),
                source,
            })?;
        }
        // An empty, valid file from the start.
        self.write()?;
        Ok(())
    }

    fn process(&mut self, frame: Frame, _out: &mut Output) -> Result<(), BoxError> {
        let truth = frame
            .truth_instances
            .as_ref()
            .ok_or(CocoTruthError::Missing { seq: frame.seq })?;
        let (width, height) = (frame.image.width, frame.image.height);
        for inst in truth.iter() {
            // A thing the model does not name is left out, as the run's eval leaves it out.
            let Some((category_id, _)) = self.category.get(inst.class as usize).copied().flatten()
            else {
                warn_unnamed("coco_truth", inst.class, &mut self.warned);
                continue;
            };
            let m = &inst.mask;
            self.annotations.push(Annotation {
                id: self.annotations.len() as u64 + 1,
                image_id: frame.seq,
                category_id,
                segmentation: Segmentation {
                    size: [height, width],
                    counts: rle::encode(m, width, height).counts_string(),
                },
                area: m.area() as u64,
                bbox: [m.x as f32, m.y as f32, m.width as f32, m.height as f32],
                iscrowd: 0,
            });
        }
        self.images.push(Image {
            id: frame.seq,
            file_name: PngSink::file_name(frame.stream, frame.seq),
            width,
            height,
        });
        self.dirty = true;
        if self.written.is_none_or(|t| t.elapsed() >= REWRITE_EVERY) {
            self.write()?;
        }
        Ok(())
    }

    fn flush(&mut self, _out: &mut Output) -> Result<(), BoxError> {
        if self.dirty {
            self.write()?;
        }
        Ok(())
    }
}
