//! `file`: a video file, a still image, or a numbered image sequence (`frames/%05d.png`).
//!
//! `[source] type = "file", path = "../assets/sample.mp4"` (relative to the pipeline file);
//! on the command line `--input clip.mp4` (relative to the current folder).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::gst::{Decode, Input};
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

/// Fills an image sequence pattern's `%d` (with any width and flags) with `index`.
pub fn sequence_file(pattern: &Path, index: u32) -> Option<PathBuf> {
    let s = pattern.to_string_lossy();
    let start = s.find('%')?;
    let rest = &s[start + 1..];
    let end = rest.find('d')?;
    let spec = &rest[..end];
    let width: usize = spec.trim_start_matches('0').parse().unwrap_or(0);
    let number = if spec.starts_with('0') {
        format!("{index:0width$}")
    } else {
        format!("{index:width$}")
    };
    Some(PathBuf::from(format!(
        "{}{number}{}",
        &s[..start],
        &rest[end + 1..]
    )))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_fill_the_pattern() {
        let f = |p: &str, i| sequence_file(Path::new(p), i).map(|p| p.display().to_string());
        assert_eq!(f("frames/%05d.png", 7).as_deref(), Some("frames/00007.png"));
        assert_eq!(f("img%d.jpg", 12).as_deref(), Some("img12.jpg"));
        assert_eq!(f("plain.png", 1), None);
    }
}
