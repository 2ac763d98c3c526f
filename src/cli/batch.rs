//! `run` over many files: which of them this run does (its shard, less the files whose
//! outputs are already complete), and what it says at the end: a table of failed files and
//! the run summary (`batch.json`) listing every file with frames, seconds, FPS and outcome.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use segstream::component::ManyInput as Item;
use segstream::pipeline::{Pipeline, NAME_PLACEHOLDER, STREAM_PLACEHOLDER};
use segstream::runtime::{Outcome, StreamRecord};
use serde::Serialize;

/// Shard `index` of `count`: the files whose stable hash falls in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// `I/N`, with `0 <= I < N`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad =
            || format!("--shard {text} is not a shard (expected I/N with 0 <= I < N, e.g. 0/3)");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (u64, u64) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The shard of a Kubernetes Indexed Job's pod: `JOB_COMPLETION_INDEX` (set by
    /// Kubernetes) of `JOB_COMPLETIONS` (set in the manifest); `None` outside one.
    pub fn from_env() -> Result<Option<Shard>, String> {
        let Ok(index) = std::env::var("JOB_COMPLETION_INDEX") else {
            return Ok(None);
        };
        let count = std::env::var("JOB_COMPLETIONS").map_err(|_| {
            "JOB_COMPLETION_INDEX is set but JOB_COMPLETIONS is not (expected the Job's \
             completions, e.g. env JOB_COMPLETIONS=3 in the manifest)"
                .to_owned()
        })?;
        Shard::parse(&format!("{index}/{count}"))
            .map(Some)
            .map_err(|e| e.replace("--shard", "JOB_COMPLETION_INDEX/JOB_COMPLETIONS"))
    }

    /// Whether the input named `name` falls in this shard: the same answer on every
    /// machine and in every run, whatever the other files are.
    pub fn holds(&self, name: &str) -> bool {
        xxhash_rust::xxh3::xxh3_64(name.as_bytes()) % self.count == self.index
    }
}

/// What this run does of the batch.
pub struct Plan {
    pub shard: Option<Shard>,
    /// Stream ids to run.
    pub chosen: BTreeSet<u32>,
    /// Files of this shard whose outputs are all in place already.
    pub skipped: Vec<Item>,
    /// Files of this shard.
    pub in_shard: usize,
}

/// Files in `shard`, less those whose every output exists (unless `force`).
pub fn plan(pipeline: &Pipeline, items: &[Item], shard: Option<Shard>, force: bool) -> Plan {
    let mut chosen = BTreeSet::new();
    let mut skipped = Vec::new();
    let mut in_shard = 0;
    for item in items {
        if shard.is_some_and(|s| !s.holds(&item.name)) {
            continue;
        }
        in_shard += 1;
        let outputs = pipeline.outputs_of(item.id, Some(&item.name));
        if !force && !outputs.is_empty() && outputs.iter().all(|o| o.exists()) {
            skipped.push(item.clone());
        } else {
            chosen.insert(item.id);
        }
    }
    Plan {
        shard,
        chosen,
        skipped,
        in_shard,
    }
}

/// Where the summary goes by default: the folder the per-file outputs are written in
/// (`out/` for `out/{name}.mp4`), as `batch.json` (`batch-I-of-N.json` for a shard).
pub fn default_summary_path(pipeline: &Pipeline, shard: Option<Shard>) -> PathBuf {
    let template = pipeline
        .sinks
        .iter()
        .filter_map(|s| s.config.output())
        .find(|p| segstream::pipeline::is_template(p));
    let mut dir = PathBuf::new();
    if let Some(t) = template {
        for c in t.components() {
            let s = c.as_os_str().to_string_lossy();
            if s.contains(NAME_PLACEHOLDER) || s.contains(STREAM_PLACEHOLDER) {
                break;
            }
            dir.push(c);
        }
        if dir == t {
            dir.pop();
        }
    }
    let name = match shard {
        Some(s) => format!("batch-{}-of-{}.json", s.index, s.count),
        None => "batch.json".into(),
    };
    dir.join(name)
}

/// One file in the summary.
#[derive(Serialize)]
pub struct FileRow {
    pub input: String,
    pub name: String,
    /// complete, failed, skipped (outputs already complete) or interrupted.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub frames: u64,
    pub seconds: f64,
    pub fps: f64,
    pub outputs: Vec<PathBuf>,
}

/// The run summary.
#[derive(Serialize)]
pub struct Summary {
    pub pipeline: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub seconds: f64,
    pub files: usize,
    pub complete: usize,
    pub failed: usize,
    pub skipped: usize,
    pub interrupted: usize,
    pub frames: u64,
    pub fps: f64,
    pub rows: Vec<FileRow>,
}

fn rate(frames: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        frames as f64 / seconds
    } else {
        0.0
    }
}

/// The summary of a finished run of `plan`, from its stream log.
pub fn summarize(
    pipeline: &Pipeline,
    items: &[Item],
    plan: &Plan,
    records: &[StreamRecord],
    seconds: f64,
) -> Summary {
    // By id, so thousands of files cost no quadratic search.
    let skipped: BTreeSet<u32> = plan.skipped.iter().map(|s| s.id).collect();
    let records: std::collections::BTreeMap<u32, &StreamRecord> =
        records.iter().map(|r| (r.id, r)).collect();
    let mut rows = Vec::new();
    for item in items {
        let outputs = pipeline.outputs_of(item.id, Some(&item.name));
        let base = |outcome, reason: Option<String>| FileRow {
            input: item.input.clone(),
            name: item.name.clone(),
            outcome,
            reason,
            frames: 0,
            seconds: 0.0,
            fps: 0.0,
            outputs: outputs.clone(),
        };
        if skipped.contains(&item.id) {
            rows.push(base("skipped", None));
            continue;
        }
        if !plan.chosen.contains(&item.id) {
            continue;
        }
        let Some(r) = records.get(&item.id) else {
            rows.push(base("interrupted", Some("not started".into())));
            continue;
        };
        let secs = r.elapsed().as_secs_f64();
        let (outcome, reason) = match &r.outcome {
            Some(Outcome::Complete) => ("complete", None),
            Some(Outcome::Failed(e)) => ("failed", Some(e.clone())),
            None => ("interrupted", Some("the run stopped first".into())),
        };
        rows.push(FileRow {
            frames: r.frames,
            seconds: secs,
            fps: rate(r.frames, secs),
            outputs: if outcome == "complete" {
                outputs.clone()
            } else {
                Vec::new()
            },
            ..base(outcome, reason)
        });
    }
    let count = |o: &str| rows.iter().filter(|r| r.outcome == o).count();
    let frames = rows
        .iter()
        .filter(|r| r.outcome != "skipped")
        .map(|r| r.frames)
        .sum();
    Summary {
        pipeline: pipeline.path.clone(),
        shard: plan.shard.map(|s| s.to_string()),
        seconds,
        files: rows.len(),
        complete: count("complete"),
        failed: count("failed"),
        skipped: count("skipped"),
        interrupted: count("interrupted"),
        frames,
        fps: rate(frames, seconds),
        rows,
    }
}

impl Summary {
    /// Writes it whole (never a partial file under its name).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        segstream::sink::whole::write_whole(path, |w| {
            serde_json::to_writer_pretty(&mut *w, self)?;
            std::io::Write::write_all(w, b"\n")
        })
    }
}

impl fmt::Display for Summary {
    /// The closing lines: counts, then a table of the failed files with their reasons.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batch: {} files: {} complete, {} failed, {} skipped (outputs already complete), \
             {} interrupted; {} frames in {:.1} s ({:.1} fps)",
            self.files,
            self.complete,
            self.failed,
            self.skipped,
            self.interrupted,
            self.frames,
            self.seconds,
            self.fps
        )?;
        let failed: Vec<&FileRow> = self.rows.iter().filter(|r| r.outcome == "failed").collect();
        if !failed.is_empty() {
            let width = failed
                .iter()
                .map(|r| r.input.len())
                .max()
                .unwrap_or(4)
                .max(4);
            write!(f, "\nfailed files:\n  {:<width$}  REASON", "FILE")?;
            for r in failed {
                write!(
                    f,
                    "\n  {:<width$}  {}",
                    r.input,
                    r.reason.as_deref().unwrap_or("")
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_split_names_with_no_overlap() {
        assert_eq!(Shard::parse("1/3"), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "1", "a/3", "0/0", "-1/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let names: Vec<String> = (0..300).map(|i| format!("day{}/cam{i}", i % 7)).collect();
        let shards: Vec<Shard> = (0..3).map(|index| Shard { index, count: 3 }).collect();
        for n in &names {
            assert_eq!(shards.iter().filter(|s| s.holds(n)).count(), 1, "{n}");
        }
        // Roughly even: each shard gets a fair part of 300 names.
        for s in &shards {
            let held = names.iter().filter(|n| s.holds(n)).count();
            assert!((60..=140).contains(&held), "shard {s} holds {held}");
        }
    }
}
