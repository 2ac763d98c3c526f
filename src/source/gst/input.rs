//! What a GStreamer-backed source opens.

use std::path::{Path, PathBuf};

/// What a GStreamer-backed source opens.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A video file, a still image, or a numbered image sequence (`frames/%05d.png`).
    File { path: PathBuf, start_index: u32 },
    /// Any URI GStreamer can open.
    Uri { uri: String },
    /// An RTSP stream, reconnected when it drops.
    Rtsp {
        url: String,
        latency_ms: u32,
        timeout_s: f64,
        transport: RtspTransport,
        reconnect: bool,
        backoff_max_s: f64,
        max_outage_s: Option<f64>,
    },
    /// A V4L2 camera.
    Camera { device: PathBuf },
    /// `videotestsrc`.
    Test {
        pattern: String,
        width: u32,
        height: u32,
        fps: u32,
        frames: Option<u64>,
        live: bool,
    },
}

impl Input {
    /// Live inputs produce frames on their own clock and cannot wait for a slow pipeline.
    pub fn is_live(&self) -> bool {
        match self {
            Input::Rtsp { .. } | Input::Camera { .. } => true,
            Input::Uri { uri } => uri.starts_with("rtsp") || uri.starts_with("udp"),
            Input::Test { live, .. } => *live,
            Input::File { .. } => false,
        }
    }

    /// A short human name of the input, used in messages.
    pub fn describe(&self) -> String {
        match self {
            Input::File { path, .. } => path.display().to_string(),
            Input::Uri { uri } => uri.clone(),
            Input::Rtsp { url, .. } => url.clone(),
            Input::Camera { device } => device.display().to_string(),
            Input::Test { pattern, .. } => format!("test:{pattern}"),
        }
    }
}

/// How RTSP media travels.
#[derive(Clone, Copy, Debug, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RtspTransport {
    /// UDP, falling back to TCP (interleaved) when UDP gets nothing.
    #[default]
    Auto,
    /// Interleaved in the RTSP connection: passes firewalls, no packet loss.
    Tcp,
    /// Unicast UDP: lowest latency, packets may be lost.
    Udp,
}

/// Fills an image sequence pattern's `%d` (with any width and flags) with `index`.
pub fn sequence_file(pattern: &Path, index: u32) -> Option<PathBuf> {
    let (prefix, width, zero, suffix) = sequence_parts(pattern)?;
    let number = if zero {
        format!("{index:0width$}")
    } else {
        format!("{index:width$}")
    };
    Some(PathBuf::from(format!("{prefix}{number}{suffix}")))
}

/// The smallest index above `after` whose file of the image sequence `pattern` exists.
pub fn next_sequence_index(pattern: &Path, after: u32) -> Option<u32> {
    let (prefix, _, _, suffix) = sequence_parts(pattern)?;
    let name_prefix = prefix.rsplit('/').next().unwrap_or("");
    let dir = match pattern.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let digits = name.strip_prefix(name_prefix)?.strip_suffix(&suffix)?;
            let digits = digits.trim_start();
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse::<u32>().ok()
        })
        .filter(|&i| i > after)
        .min()
}

/// `frames/%05d.png` as ("frames/", 5, zero-padded, ".png").
fn sequence_parts(pattern: &Path) -> Option<(String, usize, bool, String)> {
    let s = pattern.to_string_lossy();
    let start = s.find('%')?;
    let rest = &s[start + 1..];
    let end = rest.find('d')?;
    let spec = &rest[..end];
    let width: usize = spec.trim_start_matches('0').parse().unwrap_or(0);
    Some((
        s[..start].to_owned(),
        width,
        spec.starts_with('0'),
        rest[end + 1..].to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_fill_the_pattern() {
        let f = |p: &str, i| sequence_file(Path::new(p), i).map(|p| p.display().to_string());
        assert_eq!(f("frames/%05d.png", 7).as_deref(), Some("frames/00007.png"));
        assert_eq!(f("img%d.jpg", 12).as_deref(), Some("img12.jpg"));
        assert_eq!(f("plain.png", 1), None);
    }

    #[test]
    fn sequence_files_and_the_next_one_after_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        for i in [0, 1, 2, 3, 5, 6, 7] {
            std::fs::write(dir.path().join(format!("img_{i:05}.png")), b"x").unwrap();
        }
        std::fs::write(dir.path().join("img_notes.png"), b"x").unwrap();
        let pattern = dir.path().join("img_%05d.png");
        assert_eq!(
            sequence_file(&pattern, 4),
            Some(dir.path().join("img_00004.png"))
        );
        assert_eq!(next_sequence_index(&pattern, 4), Some(5));
        assert_eq!(next_sequence_index(&pattern, 7), None);
    }
}
