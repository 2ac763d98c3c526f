//! Many inputs in one run: a folder (searched recursively for video files), a glob
//! (`clips/*.mp4`) or a list file (`@list.txt`, one path or URI a line). Each input is one
//! stream with a name (`{name}` in sink paths); several are decoded at once so their frames
//! share the infer stage's batches, and each stream's last frame says how it ended so
//! per-stream sinks finish its outputs there and then.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;

use gstreamer as gst;
use gstreamer_pbutils as pbutils;

use super::gst::{Decode, DecodeOptions, Input};
use crate::frame::StreamEnd;
use crate::runtime::{Aborted, BoxError, Output, Source};

/// Extensions a folder's files must have to be taken as videos.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "ts", "mts", "m2ts", "mpg", "mpeg", "flv", "wmv",
    "3gp", "ogv", "h264", "h265",
];

/// One input of many.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Its stream id: its place in the whole list, the same in every shard.
    pub id: u32,
    /// What its outputs are called (`{name}`): the path below the folder or the glob's
    /// fixed part without its extension (`day1/cam0`), or the file stem for a list.
    pub name: String,
    pub input: Input,
}

impl Item {
    /// A path or URI as a list line or a queue message gives it; relative paths resolve
    /// against `base`.
    pub fn from_line(id: u32, line: &str, base: &Path) -> Item {
        let is_uri = line.contains("://");
        let stem = |s: &str| {
            let last = s.trim_end_matches('/').rsplit('/').next().unwrap_or(s);
            let stem = Path::new(last)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if stem.is_empty() {
                format!("stream{id}")
            } else {
                stem
            }
        };
        if is_uri {
            if let Some(path) = line
                .strip_prefix("file://")
                .filter(|_| !line.contains(['?', '#']))
            {
                return Item {
                    id,
                    name: stem(path),
                    input: file(PathBuf::from(path)),
                };
            }
            return Item {
                id,
                name: stem(line),
                input: Input::Uri { uri: line.into() },
            };
        }
        let path = crate::config::resolve(base, Path::new(line));
        Item {
            id,
            name: stem(line),
            input: file(path),
        }
    }

    /// The file it reads, when it is one.
    pub fn path(&self) -> Option<&Path> {
        match &self.input {
            Input::File { path, .. } => Some(path),
            _ => None,
        }
    }
}

fn file(path: PathBuf) -> Input {
    Input::File {
        path,
        start_index: 0,
    }
}

/// Whether `spec` names many inputs: a folder, a glob or `@list`.
pub fn is_many(spec: &Path) -> bool {
    let s = spec.to_string_lossy();
    s.starts_with('@') || s.contains(['*', '?', '[']) || spec.is_dir()
}

/// The inputs `spec` names, in a stable order (sorted by path; a list keeps its order).
pub fn expand(spec: &Path) -> Result<Vec<Item>, String> {
    let s = spec.to_string_lossy();
    if let Some(list) = s.strip_prefix('@') {
        let text = std::fs::read_to_string(list)
            .map_err(|e| format!("list file {list}: cannot read it ({e})"))?;
        let base = Path::new(list).parent().unwrap_or(Path::new(""));
        let items: Vec<Item> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .enumerate()
            .map(|(i, line)| Item::from_line(i as u32, line, base))
            .collect();
        if items.is_empty() {
            return Err(format!(
                "list file {list} names no input (expected one path or URI a line)"
            ));
        }
        return Ok(items);
    }
    let (root, mut files) = if spec.is_dir() {
        let files = walkdir::WalkDir::new(spec)
            .follow_links(true)
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file() && is_video(e.path()))
            .map(|e| e.into_path())
            .collect::<Vec<_>>();
        (spec.to_owned(), files)
    } else {
        let paths =
            glob::glob(&s).map_err(|e| format!("input {s} is not a valid glob pattern ({e})"))?;
        let files = paths
            .filter_map(Result::ok)
            .filter(|p| p.is_file() && !p.to_string_lossy().ends_with(".partial"))
            .collect::<Vec<_>>();
        (glob_root(spec), files)
    };
    files.sort();
    if files.is_empty() {
        return Err(if spec.is_dir() {
            format!(
                "input folder {} holds no video files (expected files ending in .{})",
                spec.display(),
                VIDEO_EXTENSIONS[..4].join(", .")
            )
        } else {
            format!("input {s} matches no file")
        });
    }
    Ok(files
        .into_iter()
        .enumerate()
        .map(|(i, path)| {
            let relative = path.strip_prefix(&root).unwrap_or(&path);
            let name = relative
                .with_extension("")
                .to_string_lossy()
                .replace('\\', "/");
            Item {
                id: i as u32,
                name,
                input: file(path),
            }
        })
        .collect())
}

fn is_video(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.as_str()))
}

/// The folder of a glob above its first wildcard.
fn glob_root(spec: &Path) -> PathBuf {
    let mut root = PathBuf::new();
    for c in spec.components() {
        if c.as_os_str().to_string_lossy().contains(['*', '?', '[']) {
            break;
        }
        root.push(c);
    }
    if root == spec {
        root.pop();
    }
    root
}

/// Where a batch's inputs come from: a fixed list, or a work queue that hands out one at a
/// time.
pub trait Feed: Send {
    /// The next input, or `None` when there are no more; `stopping` says whether the run is
    /// stopping (a queue waiting for work looks at it).
    fn next(&mut self, stopping: &dyn Fn() -> bool) -> Option<Item>;
}

impl Feed for std::vec::IntoIter<Item> {
    fn next(&mut self, _stopping: &dyn Fn() -> bool) -> Option<Item> {
        Iterator::next(self)
    }
}

/// The source of a batch: `in_flight` inputs decoded at a time, each a stream of its own.
pub struct Batch {
    feed: Mutex<Box<dyn Feed>>,
    in_flight: usize,
    max_frames: Option<u64>,
    /// Inputs whose frame counts are looked up for progress (a fixed list's).
    probe: Vec<Item>,
    /// How each file is decoded (threads, NV12 planes).
    decode: DecodeOptions,
}

impl Batch {
    /// `probe`: inputs to look into in the background for the frames expected in all.
    pub fn new(
        feed: Box<dyn Feed>,
        in_flight: usize,
        max_frames: Option<u64>,
        probe: Vec<Item>,
    ) -> Batch {
        Batch {
            feed: Mutex::new(feed),
            in_flight: in_flight.max(1),
            max_frames,
            probe,
            decode: DecodeOptions::default(),
        }
    }

    /// Each file is decoded with `options`.
    pub fn decode_options(mut self, options: DecodeOptions) -> Self {
        self.decode = options;
        self
    }
}

impl Source for Batch {
    fn run(&mut self, out: &mut Output) -> Result<(), BoxError> {
        let probe = std::mem::take(&mut self.probe);
        if !probe.is_empty() {
            out.streams().set_planned(probe.len());
            let out = out.for_stream(0);
            let limit = self.max_frames;
            // Progress only: the batch does not wait for it.
            let _ = thread::Builder::new()
                .name("segstream-probe".into())
                .spawn(move || {
                    for item in probe {
                        if out.stop_requested() {
                            break;
                        }
                        if let Some(n) = item.path().and_then(expected_frames) {
                            out.add_expected_frames(limit.map_or(n, |l| n.min(l)));
                        }
                    }
                });
        }
        let feed = &self.feed;
        let (max_frames, decode) = (self.max_frames, self.decode);
        let aborted = thread::scope(|scope| {
            let workers: Vec<_> = (0..self.in_flight)
                .map(|w| {
                    let out = out.for_stream(0);
                    thread::Builder::new()
                        .name(format!("segstream-decode-{w}"))
                        .spawn_scoped(scope, move || -> Result<(), Aborted> {
                            loop {
                                let next = {
                                    let mut feed = feed.lock().unwrap_or_else(|e| e.into_inner());
                                    feed.next(&|| out.stop_requested())
                                };
                                let Some(item) = next else {
                                    return Ok(());
                                };
                                decode_one(item, &out, max_frames, decode)?;
                                if out.stop_requested() {
                                    return Ok(());
                                }
                            }
                        })
                })
                .collect();
            let mut aborted = false;
            for w in workers {
                match w {
                    Ok(h) => match h.join() {
                        Ok(r) => aborted |= r.is_err(),
                        Err(panic) => std::panic::resume_unwind(panic),
                    },
                    // Fewer decoders than asked for: the others carry on.
                    Err(e) => tracing::warn!("Cannot start a decoder thread: {e}."),
                }
            }
            aborted
        });
        if aborted {
            return Err(Box::new(Aborted));
        }
        Ok(())
    }
}

/// Decodes one input to its end as stream `item.id`; a failure is that input's, recorded in
/// the run's stream log, not the batch's.
fn decode_one(
    item: Item,
    out: &Output,
    max_frames: Option<u64>,
    options: DecodeOptions,
) -> Result<(), Aborted> {
    let id = item.id;
    let described = item.input.describe();
    out.streams()
        .open(id, &item.name, &described, item.path().map(Path::to_owned));
    let mut stream = out.for_ending_stream(id);
    let mut decode = Decode::new(item.input, max_frames).options(options);
    let result = Source::run(&mut decode, &mut stream);
    let frames = decode.frames();
    let log = out.streams();
    match result {
        Err(e) if e.is::<Aborted>() => return Err(Aborted),
        // Stopped before its end: neither complete nor failed.
        Ok(()) if out.stop_requested() => {
            log.stopped(id, frames);
            stream.end_stream(None)?;
        }
        Ok(()) => {
            log.decoded(id, frames, Ok(()));
            stream.end_stream(Some(StreamEnd::Complete))?;
        }
        Err(e) => {
            let reason = crate::one_line(&*e);
            tracing::warn!(input = %described, "{reason}");
            log.decoded(id, frames, Err(reason.clone()));
            stream.end_stream(Some(StreamEnd::Failed(reason.into())))?;
        }
    }
    Ok(())
}

/// How long looking into one file for its frame count may take.
const PROBE_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(5);

/// A file's frames: its duration times its frame rate, when both are known.
fn expected_frames(path: &Path) -> Option<u64> {
    gst::init().ok()?;
    let uri = gst::glib::filename_to_uri(std::fs::canonicalize(path).ok()?, None).ok()?;
    let info = pbutils::Discoverer::new(PROBE_TIMEOUT)
        .ok()?
        .discover_uri(&uri)
        .ok()?;
    let duration = info.duration()?;
    let video = info.video_streams().into_iter().next()?;
    let rate = video.framerate();
    if rate.numer() <= 0 || rate.denom() <= 0 || rate.numer() / rate.denom() > 1000 {
        return None;
    }
    Some((duration.seconds_f64() * rate.numer() as f64 / rate.denom() as f64).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_give_sorted_videos_named_by_their_path_below_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "b.mp4",
            "a.MKV",
            "notes.txt",
            "day1/cam0.mp4",
            ".hidden/x.mp4",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"").unwrap();
        }
        let items = expand(dir.path()).unwrap();
        let names: Vec<_> = items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "day1/cam0"]);
        assert_eq!(items.iter().map(|i| i.id).collect::<Vec<_>>(), [0, 1, 2]);

        let glob = dir.path().join("*.mp4");
        let items = expand(&glob).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].name, "b");
        assert!(expand(&dir.path().join("*.webm"))
            .unwrap_err()
            .contains("matches no file"));
    }

    #[test]
    fn list_files_keep_their_order_and_resolve_paths_beside_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(
            &list,
            "# clips\nz.mp4\n\n/abs/y.mkv\nhttps://host/videos/x.mp4\nfile:///data/w.ts\n",
        )
        .unwrap();
        let items = expand(Path::new(&format!("@{}", list.display()))).unwrap();
        let names: Vec<_> = items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["z", "y", "x", "w"]);
        assert_eq!(items[0].path(), Some(dir.path().join("z.mp4").as_path()));
        assert_eq!(
            items[2].input,
            Input::Uri {
                uri: "https://host/videos/x.mp4".into()
            }
        );
        assert_eq!(items[3].path(), Some(Path::new("/data/w.ts")));
    }
}
