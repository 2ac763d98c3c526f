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

pub use build::{run, run_with_source, sources, RunOptions};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::component::{
    CheckContext, Component, SinkComponent, SourceComponent, TransformComponent,
};
use crate::config::{read_text, ConfigError, Document, Problem, Problems};
use crate::frame::{Facet, Facets};
use crate::registry::{self, Entry};
use crate::runtime::MAX_CAPACITY;

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

/// The file as parsed, before the components are frozen into a `Pipeline`.
struct File {
    sources: Vec<Slot<dyn SourceComponent>>,
    transforms: Vec<Slot<dyn TransformComponent>>,
    sinks: Vec<Slot<dyn SinkComponent>>,
}

/// A component, or the problem that kept it from parsing; `field` names its table.
struct Slot<T: ?Sized> {
    field: String,
    kind: &'static str,
    config: Option<Box<T>>,
    /// Relative paths in it resolve against the pipeline file's folder (false for what
    /// the command line gave: those resolve against the current folder).
    from_file: bool,
}

const ROOT_KEYS: [&str; 5] = ["source", "sources", "transforms", "sinks", "eval"];

/// Splits the document into components, parsing each by its `type`.
fn parse(doc: &Document<'_>, p: &mut Problems) -> File {
    let root = doc.root();
    for (key, _) in root.iter() {
        if !ROOT_KEYS.contains(&key.get_ref().as_ref()) {
            p.push_at(
                key.get_ref().as_ref(),
                format!(
                    "unknown field `{}`, expected one of {}",
                    key.get_ref(),
                    ROOT_KEYS.map(|k| format!("`{k}`")).join(", ")
                ),
                doc.position(key.span().start),
            );
        }
    }
    let tables = |key: &str| -> Vec<(String, &Spanned<DeValue<'_>>)> {
        match root.get(key) {
            None => Vec::new(),
            Some(v) => match v.get_ref().as_array() {
                Some(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| (format!("{key}[{i}]"), item))
                    .collect(),
                None => vec![(key.to_owned(), v)],
            },
        }
    };
    let one_source = tables("source");
    let many_sources = tables("sources");
    let sources = match (one_source.is_empty(), many_sources.is_empty()) {
        (false, true) => one_source,
        (true, false) => many_sources,
        (false, false) => {
            p.push(
                "sources",
                "both [source] and [[sources]] are set (expected one of them)",
            );
            one_source
        }
        (true, true) => {
            p.push(
                "source",
                "no source (expected a [source] table or [[sources]] tables)",
            );
            Vec::new()
        }
    };
    let sources = sources
        .into_iter()
        .map(|(field, v)| {
            let (kind, config) =
                component(doc, &field, v, p, registry::SOURCES, |e| (e.name, e.parse));
            Slot {
                field,
                kind,
                config,
                from_file: true,
            }
        })
        .collect();
    let transforms = parse_list(doc, &tables("transforms"), p, registry::TRANSFORMS);
    if root.get("sinks").is_none() {
        p.push(
            "sinks",
            "missing field `sinks` (expected at least one [[sinks]] table)",
        );
    }
    let mut sinks = parse_list(doc, &tables("sinks"), p, registry::SINKS);
    if let Some(v) = root.get("eval") {
        let config = parse_table(
            doc,
            "eval",
            v,
            p,
            registry::SINKS
                .iter()
                .find(|e| e.name == "eval")
                .map(|e| e.parse),
        );
        sinks.push(Slot {
            field: "eval".into(),
            kind: "eval",
            config,
            from_file: true,
        });
    }
    File {
        sources,
        transforms,
        sinks,
    }
}

fn parse_list<T: ?Sized>(
    doc: &Document<'_>,
    tables: &[(String, &Spanned<DeValue<'_>>)],
    p: &mut Problems,
    entries: &'static [Entry<T>],
) -> Vec<Slot<T>> {
    tables
        .iter()
        .map(|(field, v)| {
            let (kind, config) = component(doc, field, v, p, entries, |e| (e.name, e.parse));
            Slot {
                field: field.clone(),
                kind,
                config,
                from_file: true,
            }
        })
        .collect()
}

/// Parses one component table by its `type` key.
fn component<T: ?Sized, E>(
    doc: &Document<'_>,
    field: &str,
    value: &Spanned<DeValue<'_>>,
    p: &mut Problems,
    entries: &'static [E],
    name_and_parse: impl Fn(&'static E) -> (&'static str, registry::ParseFn<T>),
) -> (&'static str, Option<Box<T>>) {
    let names = || {
        entries
            .iter()
            .map(|e| name_and_parse(e).0)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(table) = value.get_ref().as_table() else {
        p.push_at(field, "expected a table", doc.position(value.span().start));
        return ("", None);
    };
    let Some(kind) = table.get("type") else {
        p.push_at(
            field,
            format!("missing field `type` (expected one of {})", names()),
            doc.position(value.span().start),
        );
        return ("", None);
    };
    let Some(entry) = kind
        .get_ref()
        .as_str()
        .and_then(|k| entries.iter().find(|e| name_and_parse(e).0 == k))
    else {
        p.push_at(
            format!("{field}.type"),
            format!(
                "unknown type {} (expected one of {})",
                kind.get_ref()
                    .as_str()
                    .map_or_else(|| "(not a string)".into(), |k| format!("{k:?}")),
                names()
            ),
            doc.position(kind.span().start),
        );
        return ("", None);
    };
    let (name, parse) = name_and_parse(entry);
    (name, parse_table(doc, field, value, p, Some(parse)))
}

/// Deserializes a component table (without `type`) with `parse`, reporting its errors at
/// their line and column.
fn parse_table<T: ?Sized>(
    doc: &Document<'_>,
    field: &str,
    value: &Spanned<DeValue<'_>>,
    p: &mut Problems,
    parse: Option<registry::ParseFn<T>>,
) -> Option<Box<T>> {
    let parse = parse?;
    let Some(table) = value.get_ref().as_table() else {
        p.push_at(field, "expected a table", doc.position(value.span().start));
        return None;
    };
    let mut table: DeTable<'_> = table.clone();
    table.remove("type");
    match parse(Spanned::new(value.span(), table)) {
        Ok(c) => Some(c),
        Err(e) => {
            let at = e.span().unwrap_or(value.span()).start;
            p.push_at(field, crate::config::one_line_message(&e), doc.position(at));
            None
        }
    }
}

impl File {
    fn apply(&mut self, overrides: &Overrides, p: &mut Problems) {
        if let Some(input) = &overrides.input {
            match registry::source_from_input(input) {
                Ok((kind, config)) => {
                    self.sources = vec![Slot {
                        field: "source".into(),
                        kind,
                        config: Some(config),
                        from_file: false,
                    }]
                }
                Err(message) => p.push("--input", message),
            }
        }
        if let Some(output) = &overrides.output {
            let target = self
                .sinks
                .iter_mut()
                .find(|s| s.config.as_ref().is_some_and(|c| c.output().is_some()));
            match target {
                Some(s) => {
                    s.config
                        .as_mut()
                        .expect("found above")
                        .set_output(output.clone());
                    // The command line's path is relative to the current folder.
                    s.from_file = false;
                }
                None => p.push(
                    "--output",
                    "the pipeline has no mp4, png or jsonl sink to redirect",
                ),
            }
        }
        if overrides.eval && !self.sinks.iter().any(|s| s.kind == "eval") {
            self.sinks.push(Slot {
                field: "eval".into(),
                kind: "eval",
                config: Some(Box::new(crate::eval::sink::EvalConfig::default())),
                from_file: false,
            });
        }
    }

    fn check(&mut self, path: &Path, p: &mut Problems) {
        let base = path.parent().unwrap_or(Path::new(""));
        let in_file = CheckContext {
            pipeline: path,
            base,
        };
        let here = CheckContext {
            pipeline: path,
            base: Path::new(""),
        };
        let cx = |from_file: bool| if from_file { &in_file } else { &here };

        for (what, n) in [
            ("sources", self.sources.len()),
            ("transforms", self.transforms.len()),
            ("sinks", self.sinks.len()),
        ] {
            if n > MAX_COMPONENTS {
                p.push(
                    what,
                    format!("{n} {what} is out of range (expected at most {MAX_COMPONENTS})"),
                );
            }
        }
        if self.sinks.is_empty() {
            p.push(
                "sinks",
                format!(
                    "at least one sink is required ({})",
                    registry::SINKS
                        .iter()
                        .map(|e| e.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        for s in &mut self.sources {
            check_one(s, cx(s.from_file), p);
        }
        for t in &mut self.transforms {
            check_one(t, cx(t.from_file), p);
            if let Some(c) = &t.config {
                check_queue(p, &t.field, c.queue().capacity);
            }
        }
        for s in &mut self.sinks {
            check_one(s, cx(s.from_file), p);
            if let Some(c) = &s.config {
                check_queue(p, &s.field, c.queue().capacity);
            }
        }
        self.check_flow(p);
        self.check_outputs(p);
    }

    /// Walks the components in order: every need must be met by what comes before.
    fn check_flow(&self, p: &mut Problems) {
        let sources: Vec<&dyn SourceComponent> = self
            .sources
            .iter()
            .filter_map(|s| s.config.as_deref())
            .collect();
        let described = sources
            .iter()
            .map(|s| s.describe())
            .collect::<Vec<_>>()
            .join(", ");
        // What every source gives (a facet of one stream only cannot be relied on).
        let mut available = sources
            .iter()
            .map(|s| s.gives())
            .reduce(Facets::and)
            .unwrap_or_default();
        // Upstream components that withhold facets, latest last: (key, component).
        let mut upstream: Vec<(&str, &dyn Component)> = Vec::new();
        let meet = |field: &str,
                    kind: &str,
                    c: &dyn Component,
                    available: Facets,
                    upstream: &[(&str, &dyn Component)],
                    p: &mut Problems| {
            for need in c.needs() {
                if need.met_by(available) {
                    continue;
                }
                let why = need.facets.iter().find_map(|f| {
                    upstream
                        .iter()
                        .rev()
                        .find_map(|(here, u)| u.withholds(f, kind, here))
                });
                let message = why.unwrap_or_else(|| need.missing.replace("{source}", &described));
                let key = match need.key {
                    Some(k) => format!("{field}.{k}"),
                    None => field.to_owned(),
                };
                p.push(key, message);
            }
        };
        for t in &self.transforms {
            let Some(c) = t.config.as_deref() else {
                continue;
            };
            meet(&t.field, t.kind, c, available, &upstream, p);
            let withheld: Facets = Facet::ALL
                .into_iter()
                .filter(|f| c.withholds(*f, "", "").is_some())
                .fold(Facets::NONE, |a, f| a | f);
            available = available.without(withheld) | c.gives();
            upstream.push((&t.field, c));
        }
        for s in &self.sinks {
            let Some(c) = s.config.as_deref() else {
                continue;
            };
            meet(&s.field, s.kind, c, available, &upstream, p);
        }
    }

    /// Every sink writes its own files, none of them an input.
    fn check_outputs(&self, p: &mut Problems) {
        let streams = self.sources.len();
        let inputs: Vec<PathBuf> = self
            .sources
            .iter()
            .filter_map(|s| s.config.as_ref())
            .flat_map(|s| s.inputs())
            .collect();
        let mut outputs: Vec<&Path> = Vec::new();
        for s in &self.sinks {
            let Some(c) = &s.config else { continue };
            let Some(out) = c.output() else { continue };
            if streams > 1 && !c.shared_by_streams() && !is_template(out) {
                p.push(
                    &s.field,
                    format!(
                        "{} would be written by all {streams} sources (expected \
                         {STREAM_PLACEHOLDER} in the path, e.g. out/cam{STREAM_PLACEHOLDER}.mp4)",
                        out.display()
                    ),
                );
            }
            if outputs.contains(&out) {
                p.push(
                    &s.field,
                    format!("{} is written by another sink too", out.display()),
                );
            }
            outputs.push(out);
            let expanded: Vec<PathBuf> = if is_template(out) {
                (0..streams as u32).map(|i| stream_path(out, i)).collect()
            } else {
                vec![out.to_owned()]
            };
            for o in &expanded {
                if let Some(input) = inputs.iter().find(|i| overwrites(o, i)) {
                    p.push(
                        &s.field,
                        format!(
                            "{} is the input {} (expected an output path that is not an input)",
                            o.display(),
                            input.display()
                        ),
                    );
                }
            }
        }
    }

    /// The checked components; `None` when one failed to parse.
    fn finish(self, path: &Path) -> Option<Pipeline> {
        fn freeze<T: ?Sized>(slots: Vec<Slot<T>>) -> Option<Vec<Part<T>>> {
            slots
                .into_iter()
                .map(|s| {
                    s.config.map(|c| Part {
                        kind: s.kind,
                        config: Arc::from(c),
                    })
                })
                .collect()
        }
        Some(Pipeline {
            path: path.to_owned(),
            sources: freeze(self.sources)?,
            transforms: freeze(self.transforms)?,
            sinks: freeze(self.sinks)?,
        })
    }
}

/// Whether writing `output` would destroy `input`: the same path or file, or the folder of
/// an image sequence.
fn overwrites(output: &Path, input: &Path) -> bool {
    let same = |a: &Path, b: &Path| {
        crate::config::normalize(a) == crate::config::normalize(b)
            || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
    };
    if input.to_string_lossy().contains('%') {
        return input.parent().is_some_and(|dir| same(output, dir));
    }
    same(output, input)
}

fn check_one<T: ?Sized + Component>(slot: &mut Slot<T>, cx: &CheckContext<'_>, p: &mut Problems) {
    if let Some(c) = slot.config.as_mut() {
        let mut q = Problems::under(slot.field.clone());
        c.check(cx, &mut q);
        p.extend(q);
    }
}

fn check_queue(p: &mut Problems, field: &str, capacity: usize) {
    p.range(format!("{field}.queue.capacity"), capacity, 1, MAX_CAPACITY);
}
