//! A parsed TOML file that remembers where everything stands, so a problem found long
//! after parsing (a range, a missing file) still names its line and column.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::position;

/// A TOML document with the spans of its keys and values.
pub struct Document<'a> {
    text: &'a str,
    root: Spanned<DeTable<'a>>,
}

impl<'a> Document<'a> {
    /// Parses `text`; on a syntax error, returns the message and its line and column.
    pub fn parse(text: &'a str) -> Result<Document<'a>, (String, (usize, usize))> {
        match DeTable::parse(text) {
            Ok(root) => Ok(Document { text, root }),
            Err(e) => Err((
                super::one_line_message(&e),
                position(text, e.span().map_or(0, |s| s.start)),
            )),
        }
    }

    pub fn root(&self) -> &DeTable<'a> {
        self.root.get_ref()
    }

    /// Line and column of byte `offset`.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        position(self.text, offset)
    }

    /// Where `field` (`transforms[1].tiling.scale`) is written: its key when present, else
    /// the nearest enclosing table or array element that is.
    pub fn locate(&self, field: &str) -> Option<(usize, usize)> {
        let mut at: Option<usize> = None;
        let mut table: Option<&DeTable<'a>> = Some(self.root.get_ref());
        let mut value: Option<&Spanned<DeValue<'a>>> = None;
        for segment in field.split('.').filter(|s| !s.is_empty()) {
            let (name, indices) = split_indices(segment);
            let Some(t) = table
                .take()
                .or_else(|| value.and_then(|v| v.get_ref().as_table()))
            else {
                break;
            };
            let Some((key, v)) = t.get_key_value(name) else {
                break;
            };
            at = Some(key.span().start);
            let mut v = v;
            for i in indices {
                match v.get_ref().as_array().and_then(|a| a.get(i)) {
                    Some(item) => {
                        v = item;
                        at = Some(item.span().start);
                    }
                    None => break,
                }
            }
            value = Some(v);
        }
        at.map(|offset| self.position(offset))
    }
}

/// `transforms[2]` → (`transforms`, [2]); `providers[0][1]` → (`providers`, [0, 1]).
fn split_indices(segment: &str) -> (&str, Vec<usize>) {
    let Some(open) = segment.find('[') else {
        return (segment, Vec::new());
    };
    let indices = segment[open..]
        .split(['[', ']'])
        .filter_map(|s| s.parse().ok())
        .collect();
    (&segment[..open], indices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_located_at_their_keys() {
        let text = "[source]\ntype = \"test\"\n\n[[transforms]]\ntype = \"delay\"\n\n\
                    [[transforms]]\ntype = \"composite\"\nalpha = 3\nqueue = { capacity = 0 }\n";
        let doc = Document::parse(text).unwrap();
        assert_eq!(doc.locate("source.type"), Some((2, 1)));
        assert_eq!(doc.locate("transforms[1].alpha"), Some((9, 1)));
        assert_eq!(doc.locate("transforms[1].queue.capacity"), Some((10, 11)));
        // A default (not written): the enclosing table.
        assert_eq!(doc.locate("transforms[1].queue.when_full"), Some((10, 1)));
        assert_eq!(doc.locate("nowhere"), None);
    }
}
