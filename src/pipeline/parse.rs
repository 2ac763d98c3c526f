//! Splitting a pipeline document into components, each parsed by its `type` through the
//! registry; every problem is kept with its line and column.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::component::{SinkComponent, SourceComponent, TransformComponent};
use crate::config::{Document, Problems};
use crate::registry::{self, Entry};

/// The file as parsed, before the components are frozen into a `Pipeline`.
pub(super) struct File {
    pub(super) sources: Vec<Slot<dyn SourceComponent>>,
    pub(super) transforms: Vec<Slot<dyn TransformComponent>>,
    pub(super) sinks: Vec<Slot<dyn SinkComponent>>,
}

/// A component, or the problem that kept it from parsing; `field` names its table.
pub(super) struct Slot<T: ?Sized> {
    pub(super) field: String,
    pub(super) kind: &'static str,
    pub(super) config: Option<Box<T>>,
    /// Relative paths in it resolve against the pipeline file's folder (false for what
    /// the command line gave: those resolve against the current folder).
    pub(super) from_file: bool,
}

const ROOT_KEYS: [&str; 5] = ["source", "sources", "transforms", "sinks", "eval"];

/// Splits the document into components, parsing each by its `type`.
pub(super) fn parse(doc: &Document<'_>, p: &mut Problems) -> File {
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
