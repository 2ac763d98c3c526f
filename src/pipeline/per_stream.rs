//! One sink per stream, made on the stream's first frame: `out/cam{stream}.mp4` gives
//! `out/cam0.mp4`, `out/cam1.mp4`, ...; `out/{name}.mp4` gives one file per input of a batch.
//!
//! For streams that end during the run (the files of a batch) each output is written under
//! its `.partial` name and renamed into place on the stream's last frame, so a finished
//! output is never partial and a partial one never looks finished. A stream whose decoding
//! or output fails loses its partial output and the batch goes on; each outcome goes to the
//! run's stream log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{partial_path, stream_path};
use crate::frame::{Frame, StreamEnd};
use crate::runtime::{BoxError, Output, Stage};

/// Builds the sink of stream `id` writing to `output`; `input` is the file it reads.
pub type MakeSink = Box<dyn FnMut(u32, &Path, Option<PathBuf>) -> Box<dyn Stage> + Send>;

struct Open {
    stage: Box<dyn Stage>,
    /// Where it is written, and where it goes when complete (the same without `.partial`).
    written: PathBuf,
    complete: PathBuf,
}

pub struct PerStream {
    template: PathBuf,
    /// Streams end during the run: outputs are written under `.partial` names.
    ending: bool,
    make: MakeSink,
    sinks: BTreeMap<u32, Open>,
    /// Streams whose output failed: the rest of their frames are ignored.
    failed: BTreeSet<u32>,
}

impl PerStream {
    pub fn new(template: PathBuf, ending: bool, make: MakeSink) -> Self {
        PerStream {
            template,
            ending,
            make,
            sinks: BTreeMap::new(),
            failed: BTreeSet::new(),
        }
    }

    fn open(&mut self, stream: u32, out: &Output) -> Result<&mut Open, BoxError> {
        if !self.sinks.contains_key(&stream) {
            let name = out.streams().name(stream);
            let complete = stream_path(&self.template, stream, name.as_deref());
            let written = if self.ending {
                let partial = partial_path(&complete);
                // Left by a run that was killed: this one starts the file again.
                remove(&partial);
                partial
            } else {
                complete.clone()
            };
            let mut stage = (self.make)(stream, &written, out.streams().path(stream));
            stage.start()?;
            self.sinks.insert(
                stream,
                Open {
                    stage,
                    written,
                    complete,
                },
            );
        }
        Ok(self.sinks.get_mut(&stream).expect("inserted above"))
    }

    /// The stream is complete: finalizes its output and renames it into place.
    fn finish(&mut self, stream: u32, out: &mut Output) {
        let Some(mut open) = self.sinks.remove(&stream) else {
            return;
        };
        let result = open.stage.flush(out).map_err(|e| crate::one_line(&*e));
        drop(open.stage);
        let result = result.and_then(|()| rename(&open.written, &open.complete));
        if let Err(e) = &result {
            tracing::warn!(output = %open.complete.display(), "{e}");
            remove(&open.written);
        }
        out.streams().output_finished(stream, result);
    }

    /// The stream failed (its decoding, or this output): its partial output is removed.
    fn abandon(&mut self, stream: u32, reason: String, out: &Output) {
        if let Some(open) = self.sinks.remove(&stream) {
            drop(open.stage);
            remove(&open.written);
        }
        self.failed.insert(stream);
        out.streams().output_finished(stream, Err(reason));
    }
}

/// Moves a finished output into place, replacing an older one.
fn rename(from: &Path, to: &Path) -> Result<(), String> {
    if !from.exists() {
        return Err(format!("{}: nothing was written", to.display()));
    }
    if to.is_dir() {
        std::fs::remove_dir_all(to)
            .map_err(|e| format!("cannot replace the folder {}: {e}", to.display()))?;
    }
    std::fs::rename(from, to)
        .map_err(|e| format!("cannot rename {} to {}: {e}", from.display(), to.display()))
}

/// Removes a file or folder if it is there.
fn remove(path: &Path) {
    let _ = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
}

impl Stage for PerStream {
    fn process(&mut self, mut frame: Frame, out: &mut Output) -> Result<(), BoxError> {
        let stream = frame.stream;
        if self.failed.contains(&stream) {
            return Ok(());
        }
        let end = frame.end.take();
        let result = self
            .open(stream, out)
            .and_then(|open| open.stage.process(frame, out));
        if let Err(e) = result {
            if !self.ending {
                return Err(e);
            }
            // One stream's output failed: the others go on.
            let reason = crate::one_line(&*e);
            tracing::warn!(stream, "{reason}");
            self.abandon(stream, reason, out);
            return Ok(());
        }
        match end {
            Some(StreamEnd::Complete) => self.finish(stream, out),
            Some(StreamEnd::Failed(reason)) => self.abandon(stream, reason.to_string(), out),
            None => {}
        }
        Ok(())
    }

    /// Finalizes every stream's output still open, even when one of them fails; outputs of
    /// streams that did not end keep their `.partial` names.
    fn flush(&mut self, out: &mut Output) -> Result<(), BoxError> {
        let mut first = Ok(());
        for open in self.sinks.values_mut() {
            let result = open.stage.flush(out);
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}
