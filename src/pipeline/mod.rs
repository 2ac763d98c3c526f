//! Pipeline files (`pipelines/*.toml`): sources, transforms in order, sinks. Each table is
//! a component chosen by its `type` through the registry; the check here is generic: it
//! walks the list and reports a component whose needs nothing upstream provides.
//!
//! ```toml
//! [source]
//! type = "file"
//! path = "../assets/sample.mp4"   # relative to this file
//!
//! [[transforms]]
//! type = "infer"
//! model = "deeplabv3plus_mobilenet_v2"
//!
//! [[transforms]]
//! type = "composite"
//!
//! [[sinks]]
//! type = "mp4"
//! path = "../out/demo.mp4"
//! ```

mod build;
mod check;
mod parse;

pub use build::{run, run_with_source, sources, RunOptions};
use parse::parse;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::component::{SinkComponent, SourceComponent, TransformComponent};
use crate::config::{read_text, ConfigError, Document, Problem, Problems};

/// Sink paths may contain this; each stream writes its own file or directory.
pub const STREAM_PLACEHOLDER: &str = "{stream}";

/// Most sources, transforms or sinks in one pipeline: each is a thread or more.
pub const MAX_COMPONENTS: usize = 64;

/// `path` with `{stream}` replaced by the stream id.
pub fn stream_path(path: &Path, stream: u32) -> PathBuf {
    PathBuf::from(
        path.to_string_lossy()
            .replace(STREAM_PLACEHOLDER, &stream.to_string()),
    )
}

/// Whether a sink path has a `{stream}` placeholder.
pub fn is_template(path: &Path) -> bool {
    path.to_string_lossy().contains(STREAM_PLACEHOLDER)
}

/// A component of the pipeline with its `type`.
pub struct Part<T: ?Sized> {
    pub kind: &'static str,
    pub config: Arc<T>,
}

impl<T: ?Sized> Clone for Part<T> {
    fn clone(&self) -> Self {
        Part {
            kind: self.kind,
            config: self.config.clone(),
        }
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for Part<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?}", self.kind, self.config)
    }
}

/// Command-line overrides applied on top of a pipeline file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub input: Option<String>,
    pub output: Option<PathBuf>,
    /// Score against the source's ground truth (adds `[eval]` when the file has none).
    pub eval: bool,
}

/// A pipeline file that parsed and passed its checks, its models' configs loaded.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub path: PathBuf,
    /// Frames of source `i` carry stream id `i`.
    pub sources: Vec<Part<dyn SourceComponent>>,
    pub transforms: Vec<Part<dyn TransformComponent>>,
    pub sinks: Vec<Part<dyn SinkComponent>>,
}

impl Pipeline {
    /// Reads a pipeline file, applies overrides and checks everything that can be checked
    /// without starting anything. All problems are reported together.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Pipeline, ConfigError> {
        let (pipeline, problems) = Self::load_with_problems(path, overrides)?;
        match pipeline {
            Some(p) if problems.is_empty() => Ok(p),
            _ => Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            }),
        }
    }

    /// Like `load`, but returns the problems beside what could be loaded; fails only when
    /// the file cannot be read or is not TOML.
    pub fn load_with_problems(
        path: &Path,
        overrides: &Overrides,
    ) -> Result<(Option<Pipeline>, Vec<Problem>), ConfigError> {
        let text = read_text(path)?;
        let doc =
            Document::parse(&text).map_err(|(message, (line, column))| ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message,
            })?;
        let mut p = Problems::default();
        let mut file = parse(&doc, &mut p);
        file.apply(overrides, &mut p);
        file.check(path, &mut p);
        p.locate(&doc);
        let pipeline = file.finish(path);
        Ok((pipeline, p.into_vec()))
    }

    /// Whether any source is live (then queues drop the oldest frames by default).
    pub fn is_live(&self) -> bool {
        self.sources.iter().any(|s| s.config.is_live())
    }

    /// The first transform of type `T`, with its index.
    pub fn find_transform<T: 'static>(&self) -> Option<(usize, &T)> {
        self.transforms
            .iter()
            .enumerate()
            .find_map(|(i, t)| t.config.as_any().downcast_ref::<T>().map(|c| (i, c)))
    }

    /// Every file the run writes, with `{stream}` expanded for each stream.
    pub fn outputs(&self) -> Vec<PathBuf> {
        let streams = self.sources.len() as u32;
        let mut out = Vec::new();
        for sink in &self.sinks {
            if let Some(path) = sink.config.output() {
                if is_template(path) {
                    out.extend((0..streams).map(|s| stream_path(path, s)));
                } else {
                    out.push(path.to_owned());
                }
            }
        }
        out
    }
}
