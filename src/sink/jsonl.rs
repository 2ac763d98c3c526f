//! jsonl: one JSON object per frame and line, for storage and for other tools.
//!
//! `[[sinks]] type = "jsonl", path = "../out/meta.jsonl"` writes lines like
//!
//! ```json
//! {"stream":0,"seq":12,"pts_ms":400.0,"time_ms":1795000000123.4,"width":1920,"height":1080,
//!  "instances":[{"id":3,"category_id":3,"category":"car","score":0.91,
//!                "bbox":[x,y,w,h],"segmentation":{"size":[1080,1920],"counts":"..."}}]}
//! ```
//!
//! Instances use COCO's result fields: `bbox` is `[x, y, width, height]` in frame pixels and
//! `segmentation` is compressed RLE at frame resolution, so pycocotools reads them as they
//! are. Every line goes out in one write as soon as it is made, and a line that cannot be
//! written whole (a full disk) is cut off again: a run that is killed or runs out of space
//! leaves a file of complete lines, and its error names the file.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::component::{BuildContext, CheckContext, Component, SinkComponent};
use crate::config::Problems;
use crate::frame::{Classes, Frame};
use crate::instance::rle;
use crate::runtime::{BoxError, Output, QueueConfig, Stage};

/// One JSON object per frame and line: stream, sequence number, timestamp, frame size and
/// each instance's class, score, box and mask (compressed COCO RLE at frame resolution).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub queue: QueueConfig,
}

impl Component for JsonlConfig {
    fn check(&mut self, cx: &CheckContext<'_>, _p: &mut Problems) {
        self.path = cx.resolve(&self.path);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SinkComponent for JsonlConfig {
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

    /// Each line names its stream, so one file may hold them all.
    fn shared_by_streams(&self) -> bool {
        true
    }

    fn build(
        &self,
        cx: &BuildContext<'_>,
        output: Option<&Path>,
    ) -> Result<Box<dyn Stage>, BoxError> {
        let path = output.unwrap_or(&self.path).to_owned();
        Ok(Box::new(JsonlSink::new(path, cx.classes.clone())))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Serialize)]
struct Line {
    stream: u32,
    seq: u64,
    /// Presentation timestamp in milliseconds, when the source knows it.
    pts_ms: Option<f64>,
    /// Wall-clock capture time, milliseconds since the Unix epoch.
    time_ms: f64,
    width: u32,
    height: u32,
    /// Absent for frames of a pipeline without an instance model.
    #[serde(skip_serializing_if = "Option::is_none")]
    instances: Option<Vec<InstanceLine>>,
}

#[derive(Serialize)]
struct InstanceLine {
    /// Tracking id, stable across frames (present when a composite stage tracks).
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u32>,
    category_id: u32,
    category: String,
    score: f32,
    bbox: [f32; 4],
    segmentation: Segmentation,
}

#[derive(Serialize)]
struct Segmentation {
    size: [u32; 2],
    counts: String,
}

pub struct JsonlSink {
    path: PathBuf,
    classes: Arc<Classes>,
    out: Option<File>,
    /// Bytes of complete lines written: a failed write is cut back to here.
    written: u64,
    buf: Vec<u8>,
}

impl JsonlSink {
    pub fn new(path: PathBuf, classes: Arc<Classes>) -> Self {
        JsonlSink {
            path,
            classes,
            out: None,
            written: 0,
            buf: Vec::new(),
        }
    }

    /// The frame's line, without the newline.
    pub fn line(&self, frame: &Frame) -> Result<Vec<u8>, serde_json::Error> {
        frame_line(frame, &self.classes)
    }
}

/// A frame's line, without the newline: what the `jsonl` sink writes and the broker sinks
/// publish.
pub fn frame_line(frame: &Frame, classes: &Classes) -> Result<Vec<u8>, serde_json::Error> {
    let (width, height) = (frame.image.width, frame.image.height);
    let instances = frame.instances.as_ref().map(|list| {
        list.iter()
            .map(|i| {
                let [x1, y1, x2, y2] = i.bbox;
                InstanceLine {
                    id: (i.id != 0).then_some(i.id),
                    category_id: i.class,
                    category: classes.instance_name(i.class),
                    score: i.score,
                    bbox: [x1, y1, x2 - x1, y2 - y1],
                    segmentation: Segmentation {
                        size: [height, width],
                        counts: rle::encode(&i.mask, width, height).counts_string(),
                    },
                }
            })
            .collect()
    });
    let captured = SystemTime::now()
        .checked_sub(frame.captured.elapsed())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let time_ms = captured
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    serde_json::to_vec(&Line {
        stream: frame.stream,
        seq: frame.seq,
        pts_ms: frame.pts.map(|p| p.as_secs_f64() * 1000.0),
        time_ms,
        width,
        height,
        instances,
    })
}

impl Stage for JsonlSink {
    fn start(&mut self) -> Result<(), BoxError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| JsonlError::Create {
                path: dir.to_owned(),
                source,
            })?;
        }
        let file = File::create(&self.path).map_err(|source| JsonlError::Create {
            path: self.path.clone(),
            source,
        })?;
        self.out = Some(file);
        self.written = 0;
        Ok(())
    }

    fn process(&mut self, frame: Frame, _out: &mut Output) -> Result<(), BoxError> {
        self.buf = self.line(&frame)?;
        self.buf.push(b'\n');
        let out = self.out.as_mut().expect("started");
        // One write per line; a line that cannot be written whole (a full disk) is cut off
        // again, so the file always ends with a complete line.
        if let Err(source) = out.write_all(&self.buf) {
            let _ = out.set_len(self.written);
            let _ = out.seek(SeekFrom::Start(self.written));
            return Err(Box::new(JsonlError::Write {
                path: self.path.clone(),
                source,
            }));
        }
        self.written += self.buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self, _out: &mut Output) -> Result<(), BoxError> {
        if let Some(out) = self.out.as_mut() {
            out.sync_data().map_err(|source| JsonlError::Write {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}
