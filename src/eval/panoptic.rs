//! Panoptic quality (Kirillov et al.), as the panopticapi's `pq_compute` defines it.
//!
//! `segstream eval --panoptic-pred out/panoptic --panoptic-truth gt/panoptic`
//!
//! Both directories hold 16-bit PNGs of the same names whose pixel value is
//! `class * 1000 + instance` (instance 0 for stuff), 65535 for void. Every distinct value is
//! one segment. A predicted and a true segment of the same class match when their IoU, with
//! the predicted segment's void pixels left out of the union, exceeds 0.5. Per class: PQ =
//! sum of matched IoUs / (TP + FP/2 + FN/2) = SQ x RQ. Unmatched predicted segments lying
//! more than half in void are not false positives. Averages run over the classes with any
//! TP, FP or FN; things are the classes given as such, or else those seen with an instance
//! id other than 0.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::EvalError;

/// The value of void (unlabelled, ignored) pixels.
pub const VOID: u16 = 65535;
/// Pixel value = class * `DIVISOR` + instance.
pub const DIVISOR: u16 = 1000;

/// Options of one panoptic evaluation.
#[derive(Clone, Debug, Default)]
pub struct PanopticOptions {
    /// Thing classes; None infers them (classes seen with a non-zero instance id).
    pub things: Option<Vec<u16>>,
    /// Class names by index, for the table.
    pub names: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default)]
struct ClassStat {
    iou: f64,
    tp: u64,
    fp: u64,
    fn_: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Quality {
    pub pq: Option<f64>,
    pub sq: Option<f64>,
    pub rq: Option<f64>,
    /// Classes averaged over.
    pub classes: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassQuality {
    pub class: u16,
    pub name: String,
    pub thing: bool,
    pub pq: f64,
    pub sq: f64,
    pub rq: f64,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PanopticMetrics {
    pub images: usize,
    pub all: Quality,
    pub things: Quality,
    pub stuff: Quality,
    pub per_class: Vec<ClassQuality>,
}

fn read_panoptic(path: &Path) -> Result<(u32, u32, Vec<u16>), EvalError> {
    let err = |reason: String| EvalError::Read {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().map_err(|e| err(e.to_string()))?;
    let info = reader.info();
    if info.color_type != png::ColorType::Grayscale || info.bit_depth != png::BitDepth::Sixteen {
        return Err(err(format!(
            "{:?} {:?} image (expected a 16-bit single-channel panoptic map)",
            info.color_type, info.bit_depth
        )));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| err("too large".into()))?;
    let mut data = vec![0; size];
    let frame = reader
        .next_frame(&mut data)
        .map_err(|e| err(e.to_string()))?;
    data.truncate(frame.buffer_size());
    let values = data
        .chunks_exact(2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .collect();
    Ok((frame.width, frame.height, values))
}

/// Matches one image's segments and adds the outcome to `stats`.
fn add_image(truth: &[u16], pred: &[u16], stats: &mut BTreeMap<u16, ClassStat>) {
    let mut pairs: HashMap<u32, u64> = HashMap::new();
    let (mut gt_area, mut pred_area): (BTreeMap<u16, u64>, BTreeMap<u16, u64>) = Default::default();
    for (&t, &p) in truth.iter().zip(pred) {
        *pairs.entry((t as u32) << 16 | p as u32).or_default() += 1;
        if t != VOID {
            *gt_area.entry(t).or_default() += 1;
        }
        if p != VOID {
            *pred_area.entry(p).or_default() += 1;
        }
    }
    let pair = |t: u16, p: u16| pairs.get(&((t as u32) << 16 | p as u32)).copied();
    let (mut gt_matched, mut pred_matched) = (BTreeSet::new(), BTreeSet::new());
    let mut keys: Vec<u32> = pairs.keys().copied().collect();
    keys.sort_unstable();
    for key in keys {
        let (t, p) = ((key >> 16) as u16, key as u16);
        if t == VOID || p == VOID || t / DIVISOR != p / DIVISOR {
            continue;
        }
        let inter = pairs[&key];
        let union = pred_area[&p] + gt_area[&t] - inter - pair(VOID, p).unwrap_or(0);
        let iou = inter as f64 / union as f64;
        if iou > 0.5 {
            let s = stats.entry(t / DIVISOR).or_default();
            s.tp += 1;
            s.iou += iou;
            gt_matched.insert(t);
            pred_matched.insert(p);
        }
    }
    for &t in gt_area.keys().filter(|t| !gt_matched.contains(*t)) {
        stats.entry(t / DIVISOR).or_default().fn_ += 1;
    }
    for (&p, &area) in pred_area.iter().filter(|(p, _)| !pred_matched.contains(*p)) {
        let in_void = pair(VOID, p).unwrap_or(0);
        if in_void as f64 / area as f64 > 0.5 {
            continue;
        }
        stats.entry(p / DIVISOR).or_default().fp += 1;
    }
}

/// Evaluates every `*.png` in `truth` against the file of the same name in `pred`.
pub fn evaluate(
    pred: &Path,
    truth: &Path,
    options: &PanopticOptions,
) -> Result<PanopticMetrics, EvalError> {
    let names = super::png_names(truth)?;
    let mut stats: BTreeMap<u16, ClassStat> = BTreeMap::new();
    let mut seen_things: BTreeSet<u16> = BTreeSet::new();
    for name in &names {
        let (pred_path, truth_path): (PathBuf, PathBuf) = (pred.join(name), truth.join(name));
        if !pred_path.exists() {
            return Err(EvalError::Missing {
                dir: pred.to_owned(),
                name: name.clone(),
            });
        }
        let (tw, th, t) = read_panoptic(&truth_path)?;
        let (pw, ph, p) = read_panoptic(&pred_path)?;
        if (tw, th) != (pw, ph) {
            return Err(EvalError::Size {
                path: pred_path,
                got: format!("{pw}x{ph}"),
                expected: format!("{tw}x{th}"),
            });
        }
        for &v in t.iter().chain(&p) {
            if v != VOID && v % DIVISOR != 0 {
                seen_things.insert(v / DIVISOR);
            }
        }
        add_image(&t, &p, &mut stats);
    }
    let things: BTreeSet<u16> = match &options.things {
        Some(t) => t.iter().copied().collect(),
        None => seen_things,
    };
    let per_class: Vec<ClassQuality> = stats
        .iter()
        .map(|(&class, s)| {
            let denominator = s.tp as f64 + 0.5 * s.fp as f64 + 0.5 * s.fn_ as f64;
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
            ClassQuality {
                class,
                name: options
                    .names
                    .get(class as usize)
                    .cloned()
                    .unwrap_or_else(|| class.to_string()),
                thing: things.contains(&class),
                pq: ratio(s.iou, denominator),
                sq: ratio(s.iou, s.tp as f64),
                rq: ratio(s.tp as f64, denominator),
                tp: s.tp,
                fp: s.fp,
                fn_: s.fn_,
            }
        })
        .collect();
    let average = |keep: &dyn Fn(&ClassQuality) -> bool| {
        let chosen: Vec<&ClassQuality> = per_class
            .iter()
            .filter(|c| keep(c) && c.tp + c.fp + c.fn_ > 0)
            .collect();
        let n = chosen.len();
        let mean = |f: fn(&ClassQuality) -> f64| {
            (n > 0).then(|| chosen.iter().map(|c| f(c)).sum::<f64>() / n as f64)
        };
        Quality {
            pq: mean(|c| c.pq),
            sq: mean(|c| c.sq),
            rq: mean(|c| c.rq),
            classes: n,
        }
    };
    Ok(PanopticMetrics {
        images: names.len(),
        all: average(&|_| true),
        things: average(&|c| c.thing),
        stuff: average(&|c| !c.thing),
        per_class,
    })
}

impl std::fmt::Display for PanopticMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}", v * 100.0));
        writeln!(
            f,
            "{:>5} {:<16} {:>5} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6}",
            "class", "name", "kind", "PQ %", "SQ %", "RQ %", "TP", "FP", "FN"
        )?;
        for c in &self.per_class {
            writeln!(
                f,
                "{:>5} {:<16} {:>5} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6}",
                c.class,
                c.name,
                if c.thing { "thing" } else { "stuff" },
                pct(Some(c.pq)),
                pct(Some(c.sq)),
                pct(Some(c.rq)),
                c.tp,
                c.fp,
                c.fn_
            )?;
        }
        for (what, q) in [
            ("all", &self.all),
            ("things", &self.things),
            ("stuff", &self.stuff),
        ] {
            writeln!(
                f,
                "{what:<7} PQ {:>6}%  SQ {:>6}%  RQ {:>6}%  over {} classes",
                pct(q.pq),
                pct(q.sq),
                pct(q.rq),
                q.classes
            )?;
        }
        write!(f, "{} images", self.images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn void_overlap_excuses_a_false_positive() {
        // truth: stuff 1000 on the left half, void on the right; pred: 1000 left, 2001 right.
        let truth = [1000, 1000, VOID, VOID];
        let pred = [1000, 1000, 2001, 2001];
        let mut stats = BTreeMap::new();
        add_image(&truth, &pred, &mut stats);
        assert_eq!(stats[&1].tp, 1);
        assert_eq!(stats[&1].iou, 1.0);
        assert!(!stats.contains_key(&2)); // in void: not a false positive
    }
}
