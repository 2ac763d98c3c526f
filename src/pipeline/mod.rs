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
mod per_stream;

pub use build::{run, run_with_source, sources, RunOptions};
use parse::parse;
pub use per_stream::PerStream;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::component::{ManyInput, SinkComponent, SourceComponent, TransformComponent};
use crate::config::{read_text, ConfigError, Document, Problem, Problems};
use crate::frame::Facets;

/// Sink paths may contain this; each stream writes its own file or directory.
pub const STREAM_PLACEHOLDER: &str = "{stream}";

/// Sink paths may contain this with many input files: each file's name (its path below the
/// folder without the extension).
pub const NAME_PLACEHOLDER: &str = "{name}";

/// Most sources, transforms or sinks in one pipeline: each is a thread or more.
pub const MAX_COMPONENTS: usize = 64;

/// `path` with `{stream}` replaced by the stream id and `{name}` by the stream's name (the id
/// when it has none).
pub fn stream_path(path: &Path, stream: u32, name: Option<&str>) -> PathBuf {
    let id = stream.to_string();
    PathBuf::from(
        path.to_string_lossy()
            .replace(STREAM_PLACEHOLDER, &id)
            .replace(NAME_PLACEHOLDER, name.unwrap_or(&id)),
    )
}

/// Whether a sink path has a `{stream}` or `{name}` placeholder.
pub fn is_template(path: &Path) -> bool {
    let s = path.to_string_lossy();
    s.contains(STREAM_PLACEHOLDER) || s.contains(NAME_PLACEHOLDER)
}

/// Where an output is written until it is complete: beside it, with `.partial` added.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
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

    /// Model sessions of all its transforms that share the cores (`threads = 0`).
    pub fn sessions_sharing_cores(&self) -> usize {
        (self.transforms.iter())
            .map(|t| t.config.sessions_sharing_cores())
            .sum()
    }

    /// Whether any source is live (then queues drop the oldest frames by default).
    pub fn is_live(&self) -> bool {
        self.sources.iter().any(|s| s.config.is_live())
    }

    /// What the stages after each transform need, so it can keep what it would drop.
    pub fn wanted(&self) -> Vec<Facets> {
        let sink_needs = self
            .sinks
            .iter()
            .flat_map(|s| s.config.needs())
            .fold(Facets::NONE, |a, n| a | n.facets);
        let mut wanted = vec![sink_needs; self.transforms.len()];
        for i in (0..self.transforms.len().saturating_sub(1)).rev() {
            let next = &self.transforms[i + 1].config;
            wanted[i] = wanted[i + 1] | next.needs().iter().fold(Facets::NONE, |a, n| a | n.facets);
        }
        wanted
    }

    /// The first transform of type `T`, with its index.
    pub fn find_transform<T: 'static>(&self) -> Option<(usize, &T)> {
        self.transforms
            .iter()
            .enumerate()
            .find_map(|(i, t)| t.config.as_any().downcast_ref::<T>().map(|c| (i, c)))
    }

    /// The inputs of its source of many (a folder, a glob, a list), if it has one.
    pub fn many(&self) -> Option<Vec<ManyInput>> {
        self.sources.iter().find_map(|s| s.config.many())
    }

    /// The outputs each stream of its own gets (sinks whose path has a placeholder).
    pub fn per_stream_outputs(&self) -> usize {
        self.sinks
            .iter()
            .filter(|s| s.config.output().is_some_and(is_template))
            .count()
    }

    /// The files or folders stream `stream` named `name` ends with, placeholders expanded.
    pub fn outputs_of(&self, stream: u32, name: Option<&str>) -> Vec<PathBuf> {
        self.sinks
            .iter()
            .filter_map(|s| s.config.output())
            .filter(|p| is_template(p))
            .map(|p| stream_path(p, stream, name))
            .collect()
    }

    /// Every file the run writes, with `{stream}` and `{name}` expanded for each stream.
    pub fn outputs(&self) -> Vec<PathBuf> {
        let many = self.many();
        let streams: Vec<(u32, Option<&str>)> = match &many {
            Some(items) => items
                .iter()
                .map(|i| (i.id, Some(i.name.as_str())))
                .collect(),
            None => (0..self.sources.len() as u32).map(|s| (s, None)).collect(),
        };
        let mut out = Vec::new();
        for sink in &self.sinks {
            if let Some(path) = sink.config.output() {
                if is_template(path) {
                    out.extend(streams.iter().map(|(s, n)| stream_path(path, *s, *n)));
                } else {
                    out.push(path.to_owned());
                }
            }
        }
        out
    }
}
