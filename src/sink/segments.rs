//! Segmented recordings: with `segment_s`, a video file sink rotates its output into files of
//! about that many seconds, as camera recorders do. Each segment starts on a key frame and is
//! finalized before the next begins, so every segment but the one being written is complete
//! on disk, and the one being written is crash-safe like any `mp4` or `mkv` output.
//!
//! The path names each segment with `{index}` (0, 1, 2, ... as five digits) and/or `{time}`
//! (the segment's start, UTC, as `20261202T142000Z`):
//! `[[sinks]] type = "mp4", path = "../out/cam-{time}.mp4", segment_s = 60`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::Problems;

pub const INDEX: &str = "{index}";
pub const TIME: &str = "{time}";

/// Longest segment: a day.
const MAX_SEGMENT_S: f64 = 86_400.0;

fn has_placeholder(path: &Path) -> bool {
    let s = path.to_string_lossy();
    s.contains(INDEX) || s.contains(TIME)
}

/// A segment length needs a path that tells segments apart, and a path with placeholders
/// needs a segment length.
pub fn check(path: &Path, segment_s: Option<f64>, p: &mut Problems) {
    match segment_s {
        Some(s) => {
            p.range("segment_s", s, 1.0, MAX_SEGMENT_S);
            if !has_placeholder(path) {
                p.push(
                    "path",
                    format!(
                        "{} has no {INDEX} or {TIME} (expected one with segment_s, so each \
                         segment gets its own file, e.g. out/cam-{INDEX}.mp4)",
                        path.display()
                    ),
                );
            }
        }
        None if has_placeholder(path) => p.push(
            "path",
            format!(
                "{} names segments, but segment_s is not set (expected segment_s = SECONDS, \
                 or a path without {INDEX} and {TIME})",
                path.display()
            ),
        ),
        None => {}
    }
}

/// The file of segment `index`, started at `start`.
pub fn segment_path(template: &Path, index: u32, start: SystemTime) -> PathBuf {
    let stamp: String = humantime::format_rfc3339_seconds(start)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let s = template
        .to_string_lossy()
        .replace(INDEX, &format!("{index:05}"))
        .replace(TIME, &stamp);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn placeholders_name_each_segment() {
        let start = UNIX_EPOCH + Duration::from_secs(1_796_221_200);
        assert_eq!(
            segment_path(Path::new("out/cam-{index}-{time}.mp4"), 7, start),
            Path::new("out/cam-00007-20261202T142000Z.mp4")
        );
    }

    #[test]
    fn segment_length_and_placeholders_go_together() {
        let mut p = Problems::default();
        check(Path::new("out/a.mp4"), Some(60.0), &mut p);
        check(Path::new("out/{index}.mp4"), None, &mut p);
        check(Path::new("out/{index}.mp4"), Some(0.5), &mut p);
        check(Path::new("out/{time}.mp4"), Some(60.0), &mut p);
        assert_eq!(p.len(), 3, "{:?}", p.messages());
    }
}
