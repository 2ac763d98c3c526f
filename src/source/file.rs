//! `file`: a video file, a still image, or a numbered image sequence (`frames/%05d.png`).
//!
//! `[source] type = "file", path = "../assets/sample.mp4"` (relative to the pipeline file);
//! on the command line `--input clip.mp4` (relative to the current folder).

use std::path::PathBuf;

use serde::Deserialize;

use super::gst::{sequence_file, Decode, Input};
use crate::component::{BuildContext, CheckContext, Component, SourceComponent};
use crate::config::Problems;
use crate::runtime::{BoxError, Source};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file, or an image sequence pattern with one `%d`-style number in it.
    pub path: PathBuf,
    /// First index of an image sequence.
    #[serde(default)]
    pub start_index: u32,
}

impl FileConfig {
    /// Whether the path is an image sequence pattern (`frames/%05d.png`).
    pub fn is_sequence(&self) -> bool {
        self.path.to_string_lossy().contains('%')
    }
}

impl Component for FileConfig {
    fn check(&mut self, cx: &CheckContext<'_>, p: &mut Problems) {
        self.path = cx.resolve(&self.path);
        if self.is_sequence() {
            match sequence_file(&self.path, self.start_index) {
                Some(first) if !first.is_file() => p.push(
                    "path",
                    format!(
                        "image sequence {}: its first file {} does not exist",
                        self.path.display(),
                        first.display()
                    ),
                ),
                Some(_) => {}
                None => p.push(
                    "path",
                    format!(
                        "{} is not an image sequence pattern (expected a number such as \
                         %05d, e.g. frames/%05d.png)",
                        self.path.display()
                    ),
                ),
            }
        } else if self.path.is_dir() {
            p.push(
                "path",
                format!(
                    "input {} is a directory (expected a file)",
                    self.path.display()
                ),
            );
        } else if !self.path.exists() {
            p.push(
                "path",
                format!("input {} does not exist", self.path.display()),
            );
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SourceComponent for FileConfig {
    fn from_input(input: &str) -> Option<Result<Self, String>> {
        Some(Ok(FileConfig {
            path: input.into(),
            start_index: 0,
        }))
    }

    fn is_live(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn inputs(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, BoxError> {
        let input = Input::File {
            path: self.path.clone(),
            start_index: self.start_index,
        };
        Ok(Box::new(Decode::new(input, cx.frames)))
    }
}
