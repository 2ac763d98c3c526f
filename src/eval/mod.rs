//! eval: how good label maps are against ground truth.
//!
//! `segstream eval --pred out/labels --truth gt/labels --classes 19`
//!
//! Predictions and ground truth are 8-bit label PNGs paired by file name. Pixels whose truth
//! is the ignore label (255 by default) do not count. From one confusion matrix over all
//! images: per-class IoU = TP / (TP + FP + FN), Dice = 2TP / (2TP + FP + FN), pixel accuracy
//! = correct / counted, and the means over classes that occur (in truth or prediction).

use std::path::{Path, PathBuf};

use serde::Serialize;

pub mod coco;
pub mod panoptic;
pub mod rle;
pub mod sink;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{} is {got}, but its ground truth is {expected} (expected the same size)", path.display())]
    Size {
        path: PathBuf,
        got: String,
        expected: String,
    },
    #[error("{} has no prediction {} (expected one per ground-truth file)", dir.display(), name)]
    Missing { dir: PathBuf, name: String },
    #[error("{} holds no .png label maps", dir.display())]
    Empty { dir: PathBuf },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

/// Maps Cityscapes `labelIds` (0..33) to the 19 training ids; everything else is ignored.
pub fn cityscapes_label_to_train_id(id: u8) -> u8 {
    const MAP: [u8; 34] = [
        255, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5, 255, 6, 7, 8,
        9, 10, 11, 12, 13, 14, 15, 255, 255, 16, 17, 18,
    ];
    MAP.get(id as usize).copied().unwrap_or(255)
}

/// A confusion matrix: `counts[truth * n + pred]`; predictions outside 0..n go to column n.
#[derive(Clone, Debug)]
pub struct Confusion {
    pub classes: usize,
    counts: Vec<u64>,
}

impl Confusion {
    pub fn new(classes: usize) -> Self {
        Confusion {
            classes,
            counts: vec![0; classes * (classes + 1)],
        }
    }

    /// Adds one image; `truth` pixels equal to `ignore` (or outside the classes) are skipped.
    pub fn add(&mut self, truth: &[u8], pred: &[u8], ignore: u8) {
        let n = self.classes;
        for (&t, &p) in truth.iter().zip(pred) {
            if t == ignore || t as usize >= n {
                continue;
            }
            let p = (p as usize).min(n);
            self.counts[t as usize * (n + 1) + p] += 1;
        }
    }

    pub fn metrics(&self, names: &[String]) -> Metrics {
        let n = self.classes;
        let at = |t: usize, p: usize| self.counts[t * (n + 1) + p];
        let mut per_class = Vec::with_capacity(n);
        let (mut correct, mut total) = (0u64, 0u64);
        for c in 0..n {
            let tp = at(c, c);
            let truth: u64 = (0..=n).map(|p| at(c, p)).sum();
            let predicted: u64 = (0..n).map(|t| at(t, c)).sum();
            let (fn_, fp) = (truth - tp, predicted - tp);
            correct += tp;
            total += truth;
            let union = tp + fp + fn_;
            per_class.push(ClassMetrics {
                class: c,
                name: names.get(c).cloned().unwrap_or_else(|| c.to_string()),
                iou: (union > 0).then(|| tp as f64 / union as f64),
                dice: (union > 0).then(|| 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64),
                pixels: truth,
            });
        }
        let mean = |f: fn(&ClassMetrics) -> Option<f64>| {
            let v: Vec<f64> = per_class.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        Metrics {
            pixel_accuracy: (total > 0).then(|| correct as f64 / total as f64),
            mean_iou: mean(|c| c.iou),
            mean_dice: mean(|c| c.dice),
            pixels: total,
            per_class,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassMetrics {
    pub class: usize,
    pub name: String,
    /// None when the class occurs in neither truth nor prediction.
    pub iou: Option<f64>,
    pub dice: Option<f64>,
    /// Ground-truth pixels of this class.
    pub pixels: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    pub pixel_accuracy: Option<f64>,
    pub mean_iou: Option<f64>,
    pub mean_dice: Option<f64>,
    /// Pixels counted (not ignored).
    pub pixels: u64,
    pub per_class: Vec<ClassMetrics>,
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}", v * 100.0));
        writeln!(
            f,
            "{:>5} {:<16} {:>8} {:>8} {:>12}",
            "class", "name", "IoU %", "Dice %", "pixels"
        )?;
        for c in &self.per_class {
            writeln!(
                f,
                "{:>5} {:<16} {:>8} {:>8} {:>12}",
                c.class,
                c.name,
                pct(c.iou),
                pct(c.dice),
                c.pixels
            )?;
        }
        write!(
            f,
            "mean IoU {}%, mean Dice {}%, pixel accuracy {}% over {} pixels",
            pct(self.mean_iou),
            pct(self.mean_dice),
            pct(self.pixel_accuracy),
            self.pixels
        )
    }
}

fn read_labels(path: &Path) -> Result<(u32, u32, Vec<u8>), EvalError> {
    let err = |reason: String| EvalError::Read {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| err(e.to_string()))?;
    let info = reader.info();
    if info.color_type != png::ColorType::Grayscale || info.bit_depth != png::BitDepth::Eight {
        return Err(err(format!(
            "{:?} {:?} image (expected an 8-bit single-channel label map)",
            info.color_type, info.bit_depth
        )));
    }
    let mut data = vec![
        0;
        reader
            .output_buffer_size()
            .ok_or_else(|| err("too large".into()))?
    ];
    let frame = reader
        .next_frame(&mut data)
        .map_err(|e| err(e.to_string()))?;
    data.truncate(frame.buffer_size());
    Ok((frame.width, frame.height, data))
}

/// The sorted names of the `*.png` files in `dir`; an error when there are none.
fn png_names(dir: &Path) -> Result<Vec<String>, EvalError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| EvalError::Read {
            path: dir.to_owned(),
            reason: e.to_string(),
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(EvalError::Empty {
            dir: dir.to_owned(),
        });
    }
    Ok(names)
}

/// Accuracy measured inside a run (`run --eval`): one confusion matrix over every frame
/// that carried both labels and ground truth.
#[derive(Clone, Debug, Serialize)]
pub struct RunEval {
    /// Frames scored (labels, instances or both).
    pub frames: u64,
    /// Frames that arrived without labels or instances, or without ground truth.
    pub unscored: u64,
    /// The label maps' figures (empty without a semantic model).
    pub metrics: Metrics,
    /// Mask AP and the other COCO figures, with an instance model on a source that knows
    /// its instances: the same as `eval --instances` on the run's `jsonl` and `coco_truth`
    /// files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<coco::CocoMetrics>,
}

impl std::fmt::Display for RunEval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.4}", v * 100.0));
        write!(f, "accuracy over {} frames: ", self.frames)?;
        let semantic = self.metrics.pixels > 0 || self.instances.is_none();
        if semantic {
            write!(
                f,
                "mean IoU {}%, pixel accuracy {}%, mean Dice {}%",
                pct(self.metrics.mean_iou),
                pct(self.metrics.pixel_accuracy),
                pct(self.metrics.mean_dice)
            )?;
        }
        if let Some(m) = &self.instances {
            write!(
                f,
                "{}mask AP {}% (AP50 {}%, AP75 {}%, {} objects)",
                if semantic { ", " } else { "" },
                pct(m.ap),
                pct(m.ap50),
                pct(m.ap75),
                m.ground_truth
            )?;
        }
        if self.unscored > 0 {
            write!(f, " ({} frames without labels or truth)", self.unscored)?;
        }
        Ok(())
    }
}

/// Options of one evaluation.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub classes: usize,
    pub names: Vec<String>,
    pub ignore: u8,
    /// Ground truth holds Cityscapes labelIds, mapped to the 19 training ids.
    pub cityscapes_ids: bool,
}

/// Evaluates every `*.png` in `truth` against the file of the same name in `pred`.
pub fn evaluate(pred: &Path, truth: &Path, options: &EvalOptions) -> Result<Metrics, EvalError> {
    let names = png_names(truth)?;
    let mut confusion = Confusion::new(options.classes);
    for name in names {
        let (pred_path, truth_path) = (pred.join(&name), truth.join(&name));
        if !pred_path.exists() {
            return Err(EvalError::Missing {
                dir: pred.to_owned(),
                name,
            });
        }
        let (tw, th, mut t) = read_labels(&truth_path)?;
        let (pw, ph, p) = read_labels(&pred_path)?;
        if (tw, th) != (pw, ph) {
            return Err(EvalError::Size {
                path: pred_path,
                got: format!("{pw}x{ph}"),
                expected: format!("{tw}x{th}"),
            });
        }
        if options.cityscapes_ids {
            for v in &mut t {
                *v = cityscapes_label_to_train_id(*v);
            }
        }
        confusion.add(&t, &p, options.ignore);
    }
    Ok(confusion.metrics(&options.names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_example_by_hand() {
        // truth: 0 0 1 1 255 ; pred: 0 1 1 1 0  (class 2 never occurs)
        let mut c = Confusion::new(3);
        c.add(&[0, 0, 1, 1, 255], &[0, 1, 1, 1, 0], 255);
        let m = c.metrics(&[]);
        assert_eq!(m.pixels, 4);
        assert_eq!(m.pixel_accuracy, Some(0.75));
        assert_eq!(m.per_class[0].iou, Some(0.5)); // TP 1, FN 1
        assert_eq!(m.per_class[1].iou, Some(2.0 / 3.0)); // TP 2, FP 1
        assert_eq!(m.per_class[2].iou, None);
        assert_eq!(m.per_class[1].dice, Some(0.8));
        assert!((m.mean_iou.unwrap() - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn out_of_range_predictions_are_wrong_not_lost() {
        let mut c = Confusion::new(2);
        c.add(&[0, 1], &[7, 1], 255);
        let m = c.metrics(&[]);
        assert_eq!(m.pixel_accuracy, Some(0.5));
        assert_eq!(m.per_class[0].iou, Some(0.0));
    }
}
