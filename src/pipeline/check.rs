//! The generic checks of a parsed pipeline: overrides from the command line, each
//! component's own check, the flow of facets from stage to stage (a stage whose needs
//! nothing upstream provides), and outputs that would overwrite an input or each other.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::parse::{File, Slot};
use super::{
    is_template, stream_path, Overrides, Part, Pipeline, MAX_COMPONENTS, NAME_PLACEHOLDER,
    STREAM_PLACEHOLDER,
};
use crate::component::{CheckContext, Component, SourceComponent};
use crate::config::Problems;
use crate::frame::{Facet, Facets};
use crate::registry;
use crate::runtime::MAX_CAPACITY;

impl File {
    pub(super) fn apply(&mut self, overrides: &Overrides, p: &mut Problems) {
        if let Some(input) = &overrides.input {
            match registry::source_from_input(input) {
                Ok((kind, mut config)) => {
                    let file = self.sources.first().and_then(|s| s.config.as_deref());
                    if let Some(file) = file {
                        config.keep_settings_of(file);
                    }
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

    pub(super) fn check(&mut self, path: &Path, p: &mut Problems) {
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
        let sources: Vec<&dyn SourceComponent> = self
            .sources
            .iter()
            .filter_map(|s| s.config.as_deref())
            .collect();
        let many = sources.iter().find_map(|s| s.many());
        let many = many.as_deref();
        if many.is_some() && self.sources.len() > 1 {
            p.push(
                "sources",
                "a source of many files must be the pipeline's only source",
            );
        }
        // Each stream's id and name, as placeholders expand them.
        let streams: Vec<(u32, Option<&str>)> = match many {
            Some(items) => items
                .iter()
                .map(|i| (i.id, Some(i.name.as_str())))
                .collect(),
            None => (0..self.sources.len() as u32).map(|i| (i, None)).collect(),
        };
        let inputs: Vec<PathBuf> = sources.iter().flat_map(|s| s.inputs()).collect();
        let mut outputs: Vec<&Path> = Vec::new();
        let mut named = false;
        for s in &self.sinks {
            let Some(c) = &s.config else { continue };
            let Some(out) = c.output() else { continue };
            if let Some(items) = many {
                if !is_template(out) {
                    p.push(
                        &s.field,
                        format!(
                            "{} would be written by all {} input files (expected \
                             {NAME_PLACEHOLDER} in the path, e.g. out/{NAME_PLACEHOLDER}.mp4)",
                            out.display(),
                            items.len()
                        ),
                    );
                } else if !c.whole_output() {
                    p.push(
                        &s.field,
                        "segment_s cannot be used with many input files (each file's output \
                         is written whole and renamed into place when complete)",
                    );
                }
                if out.to_string_lossy().contains(NAME_PLACEHOLDER) && !named {
                    // Said once, at the first sink that names its outputs by {name}.
                    named = true;
                    if let Some((a, b)) = same_name(items) {
                        p.push(
                            &s.field,
                            format!(
                                "inputs {} and {} both have the name {} (their outputs would \
                                 be the same file; rename one, or use {STREAM_PLACEHOLDER})",
                                a.input, b.input, b.name
                            ),
                        );
                    }
                }
            } else if streams.len() > 1 && !c.shared_by_streams() && !is_template(out) {
                p.push(
                    &s.field,
                    format!(
                        "{} would be written by all {} sources (expected \
                         {STREAM_PLACEHOLDER} in the path, e.g. out/cam{STREAM_PLACEHOLDER}.mp4)",
                        out.display(),
                        streams.len()
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
                streams
                    .iter()
                    .map(|(i, name)| stream_path(out, *i, *name))
                    .collect()
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
                    break;
                }
            }
        }
    }

    /// The checked components; `None` when one failed to parse.
    pub(super) fn finish(self, path: &Path) -> Option<Pipeline> {
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

/// The first two inputs of many that share a name, if any.
fn same_name(
    items: &[crate::component::ManyInput],
) -> Option<(&crate::component::ManyInput, &crate::component::ManyInput)> {
    let mut seen = std::collections::HashMap::new();
    items.iter().find_map(|item| {
        seen.insert(item.name.as_str(), item)
            .map(|other| (other, item))
    })
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

fn check_queue(p: &mut Problems, field: &str, capacity: Option<usize>) {
    if let Some(capacity) = capacity {
        p.range(format!("{field}.queue.capacity"), capacity, 1, MAX_CAPACITY);
    }
}
