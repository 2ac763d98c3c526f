//! What every config file shares: reading TOML with positions, problems collected with the
//! line and column they come from, ranges, and paths relative to the file that names them.
//!
//! Parsing does nothing heavy; checks collect every problem they find so a user fixes a file
//! in one pass. Each component's own settings live beside its code; this module knows none.

mod document;

pub use document::Document;

use std::fmt;
use std::path::{Path, PathBuf};

/// Problems with a pipeline file or a model config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}", problems.iter().map(|p| p.in_file(path)).collect::<Vec<_>>().join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// Every individual problem, for `validate`, which prints one per line.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { path, problems } => {
                problems.iter().map(|p| p.in_file(path)).collect()
            }
            other => vec![other.to_string()],
        }
    }
}

/// One problem: the key it is about (`transforms[1].alpha`), what is wrong, and where the
/// key stands in the file when it is written there.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub field: String,
    pub message: String,
    /// Line and column (from 1).
    pub at: Option<(usize, usize)>,
}

impl Problem {
    /// `file:line:column: field: message`.
    pub fn in_file(&self, path: &Path) -> String {
        match self.at {
            Some((line, column)) => format!("{}:{line}:{column}: {self}", path.display()),
            None => format!("{}: {self}", path.display()),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Collects problems, each naming its key from the root of the file.
#[derive(Default, Debug)]
pub struct Problems {
    list: Vec<Problem>,
    /// Prepended to every field pushed (`transforms[2]`), see [`Problems::under`].
    prefix: String,
}

impl Problems {
    /// A collector whose fields are relative to `prefix` (`sources[1]`).
    pub fn under(prefix: impl Into<String>) -> Problems {
        Problems {
            list: Vec::new(),
            prefix: prefix.into(),
        }
    }

    fn field(&self, field: &str) -> String {
        match (self.prefix.is_empty(), field.is_empty()) {
            (true, _) => field.to_owned(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}.{field}", self.prefix),
        }
    }

    /// A problem with key `field` (relative to the prefix; empty for the prefix itself).
    pub fn push(&mut self, field: impl AsRef<str>, message: impl fmt::Display) {
        let field = self.field(field.as_ref());
        self.list.push(Problem {
            field,
            message: message.to_string(),
            at: None,
        });
    }

    /// A problem found with its position already known (a parse error).
    pub fn push_at(
        &mut self,
        field: impl AsRef<str>,
        message: impl fmt::Display,
        at: (usize, usize),
    ) {
        let field = self.field(field.as_ref());
        self.list.push(Problem {
            field,
            message: message.to_string(),
            at: Some(at),
        });
    }

    /// Checks `lo <= value <= hi`, naming the field and the accepted range otherwise. NaN
    /// and infinities fail too.
    pub fn range<T>(&mut self, field: impl AsRef<str>, value: T, lo: T, hi: T)
    where
        T: PartialOrd + fmt::Display + Copy,
    {
        // Written so that NaN fails too.
        if !(value >= lo && value <= hi) {
            self.push(
                field,
                format!("{value} is out of range (expected {lo} to {hi})"),
            );
        }
    }

    /// Checks that every number is finite.
    pub fn finite(&mut self, field: impl AsRef<str>, values: &[f32]) {
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            self.push(field, format!("{v} is not a finite number"));
        }
    }

    /// Takes over another collector's problems.
    pub fn extend(&mut self, other: Problems) {
        self.list.extend(other.list);
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The messages alone (`field: message`), for callers that report them elsewhere.
    pub fn messages(&self) -> Vec<String> {
        self.list.iter().map(|p| p.to_string()).collect()
    }

    /// Fills in each problem's position from the document its fields refer to.
    pub fn locate(&mut self, doc: &Document<'_>) {
        for p in &mut self.list {
            if p.at.is_none() {
                p.at = doc.locate(&p.field);
            }
        }
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.list
    }

    pub fn into_result(self, path: &Path) -> Result<(), ConfigError> {
        if self.list.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems: self.list,
            })
        }
    }
}

/// Reads and deserializes a whole TOML file, with the line and column of a problem.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = read_text(path)?;
    toml::from_str(&text).map_err(|err| {
        let (line, column) = position(&text, err.span().map_or(0, |s| s.start));
        ConfigError::Parse {
            path: path.to_owned(),
            line,
            column,
            message: one_line_message(&err),
        }
    })
}

/// Reads a config file as text.
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A TOML error's message on one line.
pub fn one_line_message(err: &toml::de::Error) -> String {
    err.message().trim().replace('\n', " ")
}

/// Line and column (from 1) of byte `offset` in `text`.
pub fn position(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// `path` as given when absolute, else relative to `base` (the folder of the file that
/// names it), without touching the file system.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() || base.as_os_str().is_empty() {
        normalize(path)
    } else {
        normalize(&base.join(path))
    }
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
    fn relative_paths_resolve_against_the_base() {
        assert_eq!(
            resolve(Path::new("/p/pipelines"), Path::new("../assets/a.mp4")),
            PathBuf::from("/p/assets/a.mp4")
        );
        assert_eq!(
            resolve(Path::new("/p"), Path::new("/abs/a.mp4")),
            PathBuf::from("/abs/a.mp4")
        );
        assert_eq!(
            resolve(Path::new(""), Path::new("a.mp4")),
            PathBuf::from("a.mp4")
        );
    }

    #[test]
    fn positions_count_lines_and_columns_from_one() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(position(text, 0), (1, 1));
        assert_eq!(position(text, 6), (2, 1));
        assert_eq!(position(text, 11), (2, 6));
    }

    #[test]
    fn ranges_refuse_nan_and_infinity() {
        let mut p = Problems::under("transforms[0]");
        p.range("alpha", f32::NAN, 0.0, 1.0);
        p.range("alpha", f64::INFINITY, 0.0, 1.0);
        p.range("alpha", 0.5, 0.0, 1.0);
        assert_eq!(p.len(), 2);
        assert!(p.messages()[0].starts_with("transforms[0].alpha: NaN is out of range"));
    }
}
