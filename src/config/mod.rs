//! Pipeline files and model configs: what the user wrote, parsed and checked.
//!
//! Parsing does nothing heavy; `Config::validate` collects every problem it can find so a
//! user fixes a file in one pass. Turning a config into running stages is `runtime::build`.

mod model;
mod pipeline;

pub use model::*;
pub use pipeline::*;

use std::path::{Path, PathBuf};

/// Problems with a pipeline file or a model config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {}", path.display(), problems.join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

impl ConfigError {
    /// Every individual problem, for `validate`, which prints one per line.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { path, problems } => problems
                .iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect(),
            other => vec![other.to_string()],
        }
    }
}

/// Reads and deserializes a TOML file, turning serde's multi-line report into one line that
/// names the file and line.
pub(crate) fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|err| {
        let start = err.span().map(|s| s.start).unwrap_or(0);
        let message = err.message().trim().replace('\n', " ");
        let line = unknown_key_line(&text, start, &message)
            .unwrap_or_else(|| text[..start].lines().count().max(1));
        ConfigError::Parse {
            path: path.to_owned(),
            line,
            message,
        }
    })
}

/// Tagged tables are parsed as a whole, so serde's span for an unknown key is the table's;
/// find the key's own line after it.
fn unknown_key_line(text: &str, start: usize, message: &str) -> Option<usize> {
    let key = message.strip_prefix("unknown field `")?.split('`').next()?;
    let first = text[..start].lines().count().max(1);
    text.lines()
        .enumerate()
        .skip(first - 1)
        .find(|(_, l)| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|(i, _)| i + 1)
}

/// `a/b/../c` → `a/c`, without touching the file system (for messages and lookups).
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Collects problems as `field: message` strings.
#[derive(Default, Debug)]
pub(crate) struct Problems(pub Vec<String>);

impl Problems {
    pub fn push(&mut self, field: impl std::fmt::Display, message: impl std::fmt::Display) {
        self.0.push(format!("{field}: {message}"));
    }

    /// Checks `lo <= value <= hi`, naming the field and the accepted range otherwise.
    pub fn range<T>(&mut self, field: impl std::fmt::Display, value: T, lo: T, hi: T)
    where
        T: PartialOrd + std::fmt::Display + Copy,
    {
        // Written so that NaN fails too.
        if !(value >= lo && value <= hi) {
            self.push(
                field,
                format!("{value} is out of range (expected {lo} to {hi})"),
            );
        }
    }

    pub fn into_result(self, path: &Path) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems: self.0,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_removes_dot_segments() {
        assert_eq!(
            normalize(Path::new("pipelines/../configs/./a.toml")),
            PathBuf::from("configs/a.toml")
        );
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
        assert_eq!(normalize(Path::new("/a/b/../../c")), PathBuf::from("/c"));
    }

    #[test]
    fn unknown_key_line_finds_the_key() {
        let text = "[source]\ntype = \"test\"\n\nwidht = 3\n";
        assert_eq!(
            unknown_key_line(text, 0, "unknown field `widht`, expected `width`"),
            Some(4)
        );
        assert_eq!(unknown_key_line(text, 0, "invalid type"), None);
    }
}
