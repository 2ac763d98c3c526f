//! `file`: a video file, a still image, or a numbered image sequence (`frames/%05d.png`);
//! or many files: a folder, a glob (`clips/*.mp4`) or a list file (`@list.txt`), each file a
//! stream of its own named by `{name}` in sink paths (see `super::batch`).
//!
//! `[source] type = "file", path = "../assets/sample.mp4"` (relative to the pipeline file);
//! on the command line `--input clip.mp4` (relative to the current folder).

use std::path::PathBuf;

use serde::Deserialize;

use super::batch::{self, Batch, Item};
use super::gst::{sequence_file, Decode, DecodeOptions, Input};
use crate::component::{BuildContext, CheckContext, Component, ManyInput, SourceComponent};
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
    /// With many files: how many are decoded at once (their frames share the infer
    /// stage's batches).
    #[serde(default = "default_in_flight")]
    pub files_in_flight: usize,
    /// Threads of each video decoder (0, the default: the decoder decides by the cores).
    #[serde(default)]
    pub decoder_threads: u32,
    /// Keep each video decoder's 4:2:0 planes on each frame as NV12, beside RGB: an infer
    /// stage with `pre_post = "graph"` then takes them (half the bytes of RGB to a GPU).
    /// Stills and 4:2:2 or 4:4:4 video have none, and go as RGB.
    #[serde(default)]
    pub nv12: bool,
    /// With many files: each of them, found when the config is checked.
    #[serde(skip)]
    pub items: Vec<Item>,
}

fn default_in_flight() -> usize {
    2
}

/// Most files decoded at once.
pub const MAX_IN_FLIGHT: usize = 16;

impl FileConfig {
    /// Whether the path is an image sequence pattern (`frames/%05d.png`).
    pub fn is_sequence(&self) -> bool {
        self.path.to_string_lossy().contains('%')
    }
}

/// `path` resolved with `resolve`, keeping a list file's leading `@`.
fn resolve_spec(path: &std::path::Path, resolve: impl Fn(&std::path::Path) -> PathBuf) -> PathBuf {
    match path.to_str().and_then(|s| s.strip_prefix('@')) {
        Some(list) => PathBuf::from(format!("@{}", resolve(list.as_ref()).display())),
        None => resolve(path),
    }
}

impl Component for FileConfig {
    fn check(&mut self, cx: &CheckContext<'_>, p: &mut Problems) {
        self.path = resolve_spec(&self.path, |p| cx.resolve(p));
        p.range("files_in_flight", self.files_in_flight, 1, MAX_IN_FLIGHT);
        p.range("decoder_threads", self.decoder_threads, 0, 64);
        if batch::is_many(&self.path) {
            match batch::expand(&self.path) {
                Ok(items) => self.items = items,
                Err(e) => p.push("path", e),
            }
        } else if self.is_sequence() {
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
            files_in_flight: default_in_flight(),
            decoder_threads: 0,
            nv12: false,
            items: Vec::new(),
        }))
    }

    fn keep_settings_of(&mut self, file: &dyn SourceComponent) {
        if let Some(f) = file.as_any().downcast_ref::<FileConfig>() {
            self.files_in_flight = f.files_in_flight;
            self.decoder_threads = f.decoder_threads;
            self.nv12 = f.nv12;
        }
    }

    fn is_live(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        match self.items.len() {
            0 => self.path.display().to_string(),
            n => format!("{} ({n} files)", self.path.display()),
        }
    }

    fn inputs(&self) -> Vec<PathBuf> {
        if !self.items.is_empty() {
            return self
                .items
                .iter()
                .filter_map(|i| i.path().map(ToOwned::to_owned))
                .collect();
        }
        vec![self.path.clone()]
    }

    fn many(&self) -> Option<Vec<ManyInput>> {
        (!self.items.is_empty()).then(|| {
            self.items
                .iter()
                .map(|i| ManyInput {
                    id: i.id,
                    name: i.name.clone(),
                    input: i.input.describe(),
                })
                .collect()
        })
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, BoxError> {
        if !self.items.is_empty() {
            let chosen: Vec<Item> = self
                .items
                .iter()
                .filter(|i| cx.chosen.is_none_or(|c| c.contains(&i.id)))
                .cloned()
                .collect();
            return Ok(Box::new(
                Batch::new(
                    Box::new(chosen.clone().into_iter()),
                    self.files_in_flight,
                    cx.frames,
                    chosen,
                )
                .decode_options(self.decode_options()),
            ));
        }
        let input = Input::File {
            path: self.path.clone(),
            start_index: self.start_index,
        };
        Ok(Box::new(
            Decode::new(input, cx.frames).options(self.decode_options()),
        ))
    }
}

impl FileConfig {
    fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            threads: self.decoder_threads,
            nv12: self.nv12,
        }
    }
}
