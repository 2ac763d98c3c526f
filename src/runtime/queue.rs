//! The queue in front of a stage: how many frames it holds and what it does when full.

use serde::Deserialize;

/// A stage's input queue.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Frames the queue holds; by default 4 for files, and for live sources 1 in front of a
    /// transform (the newest frame: a slow stage never starts on a stale one) and 4 in front
    /// of a sink (slack for an encoder's or a disk's hiccups).
    #[serde(default)]
    pub capacity: Option<usize>,
    /// What a full queue does; by default `block` for files and `drop_oldest` for live sources.
    #[serde(default)]
    pub when_full: Option<FullPolicy>,
}

/// Most frames one queue may hold.
pub const MAX_CAPACITY: usize = 4096;

/// Where a queue is, for its default capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueRole {
    /// In front of a transform (infer, refine, ...).
    Transform,
    /// In front of a sink.
    Sink,
}

impl QueueConfig {
    /// The capacity in force: the configured one, else the default for the sources' kind
    /// and the queue's place.
    pub fn capacity(&self, live: bool, role: QueueRole) -> usize {
        self.capacity.unwrap_or(match (live, role) {
            (true, QueueRole::Transform) => 1,
            _ => DEFAULT_CAPACITY,
        })
    }

    /// The policy in force: the configured one, else the default for the sources' kind.
    pub fn policy(&self, live: bool) -> FullPolicy {
        self.when_full.unwrap_or(if live {
            FullPolicy::DropOldest
        } else {
            FullPolicy::Block
        })
    }
}

/// Frames a queue holds unless said otherwise (see [`QueueConfig::capacity`]).
const DEFAULT_CAPACITY: usize = 4;

/// What a full queue does with a new frame.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Wait for room: lossless, applies back-pressure to the source.
    Block,
    /// Discard the oldest queued frame (counted): bounded latency for live sources.
    DropOldest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_transforms_hold_the_newest_frame_unless_told_otherwise() {
        let default = QueueConfig::default();
        assert_eq!(default.capacity(true, QueueRole::Transform), 1);
        assert_eq!(default.capacity(true, QueueRole::Sink), 4);
        assert_eq!(default.capacity(false, QueueRole::Transform), 4);
        let set: QueueConfig = toml::from_str("capacity = 3").unwrap();
        assert_eq!(set.capacity(true, QueueRole::Transform), 3);
        assert_eq!(set.policy(true), FullPolicy::DropOldest);
    }
}
