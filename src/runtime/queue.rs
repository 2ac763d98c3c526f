//! The queue in front of a stage: how many frames it holds and what it does when full.

use serde::Deserialize;

/// A stage's input queue.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Frames the queue holds.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// What a full queue does; by default `block` for files and `drop_oldest` for live sources.
    #[serde(default)]
    pub when_full: Option<FullPolicy>,
}

/// Most frames one queue may hold.
pub const MAX_CAPACITY: usize = 4096;

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: default_capacity(),
            when_full: None,
        }
    }
}

impl QueueConfig {
    /// The policy in force: the configured one, else the default for the sources' kind.
    pub fn policy(&self, live: bool) -> FullPolicy {
        self.when_full.unwrap_or(if live {
            FullPolicy::DropOldest
        } else {
            FullPolicy::Block
        })
    }
}

fn default_capacity() -> usize {
    4
}

/// What a full queue does with a new frame.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Wait for room: lossless, applies back-pressure to the source.
    Block,
    /// Discard the oldest queued frame (counted): bounded latency for live sources.
    DropOldest,
}
