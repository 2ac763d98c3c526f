//! What the broker sinks (`mqtt`, `nats`) share: the topic of a frame's line, the checks of
//! their buffering settings, and the count of lines published, confirmed and dropped that
//! ends the run's summary.

use crate::config::Problems;
use crate::runtime::{Output, Summary};

/// A broker topic or subject for a frame of `stream`: `{stream}` is its id, `{name}` its
/// input's name (with many input files), with characters brokers treat as wildcards or
/// separators of words replaced by `_`.
pub(crate) fn topic(template: &str, stream: u32, out: &Output) -> String {
    let id = stream.to_string();
    let name = out.streams().name(stream).unwrap_or_else(|| id.clone());
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_whitespace() || "+#*>".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    template.replace("{stream}", &id).replace("{name}", &name)
}

/// `buffer` (lines held while the broker is away) and `drain_s` (the wait at the end).
pub(crate) fn check_buffering(buffer: usize, drain_s: f64, p: &mut Problems) {
    p.range("buffer", buffer, 1, 1_000_000);
    p.range("drain_s", drain_s, 0.0, 3600.0);
}

/// Lines handed to the client, confirmed by the broker, and dropped because the buffer was
/// full.
#[derive(Default)]
pub(crate) struct Delivery {
    pub published: u64,
    pub confirmed: u64,
    pub dropped: u64,
}

impl Delivery {
    /// Logs what the broker did not confirm by the end.
    pub fn warn_unconfirmed(&self, sink: &str, url: &str) {
        if self.confirmed < self.published {
            tracing::warn!(
                sink,
                url,
                unconfirmed = self.published - self.confirmed,
                "The broker did not confirm every line before the end."
            );
        }
    }

    /// The summary line of sink `key` (`mqtt`, `nats`) publishing to `url`.
    pub fn summary(&self, key: &'static str, url: &str) -> Summary {
        Summary {
            key,
            text: format!(
                "{key} {url}: {} line(s) published, {} confirmed by the broker, {} dropped \
                 (buffer full)",
                self.published, self.confirmed, self.dropped
            ),
            value: serde_json::json!({
                "url": url,
                "published": self.published,
                "confirmed": self.confirmed,
                "dropped": self.dropped,
            }),
        }
    }
}
