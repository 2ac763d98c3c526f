//! Mask AP and AR by the COCO definition, as pycocotools' `COCOeval(iouType="segm")`.
//!
//! `segstream eval --instances out/instances.jsonl --coco-truth gt.json`
//!
//! Predictions are the JSONL sink's lines (one per frame); frame `seq` of stream 0 is COCO
//! image id `seq` (or, with `MatchBy::FileName`, the image whose `file_name` stem is that
//! number, as the PNG sink names files: `000012.png`). Ground truth is a COCO instances file
//! with polygon or RLE (compressed or not) segmentations, rasterized as pycocotools does.
//! The computation follows COCOeval step by step (IoU thresholds .50:.05:.95, 101 recall
//! points, at most 1/10/100 detections, the four area ranges, crowd regions matched by
//! intersection over the detection's area and never counted as misses), so the numbers
//! agree with it exactly.

use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::rle::Rle;
use super::EvalError;
use crate::frame::{Classes, CITYSCAPES};

/// The Cityscapes train ids that are things (person, rider, car, truck, bus, train,
/// motorcycle, bicycle): the classes true instances may have.
const THINGS: std::ops::RangeInclusive<usize> = 11..=18;

/// The COCO category each true instance class (a Cityscapes train id, as the synthetic
/// source gives them) is scored under: the instance model's class index of the same name,
/// or without an instance model the train id itself. Indexed by train id, with the name;
/// `None` for stuff and for things the model does not name.
pub fn truth_categories(classes: &Classes) -> Vec<Option<(u32, &'static str)>> {
    let mut out = vec![None; CITYSCAPES.len()];
    for class in THINGS {
        let name = CITYSCAPES[class];
        out[class] = if classes.instance.is_empty() {
            Some((class as u32, name))
        } else {
            classes
                .instance
                .iter()
                .position(|n| n.eq_ignore_ascii_case(name))
                .map(|i| (i as u32, name))
        };
    }
    out
}

/// Warns, once per class, that true objects of `class` are left out because the instance
/// model does not name it; `warned` holds the classes already warned about.
pub fn warn_unnamed(what: &str, class: u32, warned: &mut BTreeSet<u32>) {
    if warned.insert(class) {
        let name = CITYSCAPES.get(class as usize).copied().unwrap_or("?");
        tracing::warn!(
            "{what}: the instance model names no {name}; true {name} objects are left out"
        );
    }
}

/// Cityscapes' category of a thing: "human" (person, rider) or "vehicle".
pub fn supercategory(class: usize) -> &'static str {
    match CITYSCAPES.get(class) {
        Some(&"person") | Some(&"rider") => "human",
        _ => "vehicle",
    }
}

/// How prediction frames are paired with ground-truth images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MatchBy {
    /// Image id = frame sequence number (stream 0).
    #[default]
    Id,
    /// The image whose file name, less its extension, is the sequence number (`000012.png`).
    FileName,
}

#[derive(Deserialize)]
struct GtFile {
    images: Vec<GtImage>,
    annotations: Vec<GtAnnotation>,
    categories: Vec<GtCategory>,
}

#[derive(Deserialize)]
struct GtImage {
    id: i64,
    width: u32,
    height: u32,
    #[serde(default)]
    file_name: Option<String>,
}

#[derive(Deserialize)]
struct GtAnnotation {
    id: i64,
    image_id: i64,
    category_id: i64,
    segmentation: Value,
    #[serde(default)]
    area: Option<f64>,
    #[serde(default)]
    iscrowd: u8,
}

#[derive(Deserialize)]
struct GtCategory {
    id: i64,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct PredLine {
    #[serde(default)]
    stream: u32,
    seq: u64,
    #[serde(default)]
    instances: Vec<PredInstance>,
}

#[derive(Deserialize)]
struct PredInstance {
    category_id: i64,
    score: f64,
    segmentation: PredSegmentation,
}

#[derive(Deserialize)]
struct PredSegmentation {
    size: [u32; 2],
    counts: String,
}

struct GtObject {
    id: i64,
    rle: Rle,
    area: f64,
    crowd: bool,
}

struct Detection {
    id: i64,
    rle: Rle,
    area: f64,
    score: f64,
}

/// One (image, category) as COCOeval's `evaluateImg` leaves it, for one area range.
struct ImageEval {
    /// Per threshold, per detection (score order): matched gt id, 0 when none.
    matches: Vec<Vec<i64>>,
    /// Per threshold, per detection: ignored.
    ignored: Vec<Vec<bool>>,
    /// Detection scores in descending order.
    scores: Vec<f64>,
    /// Ground-truth objects not ignored in this area range.
    counted: usize,
}

/// The twelve COCO summary numbers and AP per category; None where COCOeval prints -1.
#[derive(Clone, Debug, Serialize)]
pub struct CocoMetrics {
    pub images: usize,
    pub detections: usize,
    pub ground_truth: usize,
    pub ap: Option<f64>,
    pub ap50: Option<f64>,
    pub ap75: Option<f64>,
    pub ap_small: Option<f64>,
    pub ap_medium: Option<f64>,
    pub ap_large: Option<f64>,
    pub ar1: Option<f64>,
    pub ar10: Option<f64>,
    pub ar100: Option<f64>,
    pub ar_small: Option<f64>,
    pub ar_medium: Option<f64>,
    pub ar_large: Option<f64>,
    pub per_category: Vec<CategoryAp>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CategoryAp {
    pub id: i64,
    pub name: String,
    /// AP over IoU .50:.95, all areas, 100 detections; None without ground truth.
    pub ap: Option<f64>,
    pub ap50: Option<f64>,
}

/// `np.linspace(start, stop, num)`, value for value.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    (0..num)
        .map(|i| {
            if i == num - 1 {
                stop
            } else {
                i as f64 * step + start
            }
        })
        .collect()
}

const AREA_RANGES: [(f64, f64); 4] = [(0.0, 1e10), (0.0, 1024.0), (1024.0, 9216.0), (9216.0, 1e10)];
const MAX_DETS: [usize; 3] = [1, 10, 100];

fn invalid(what: String, reason: impl Into<String>) -> EvalError {
    EvalError::Invalid {
        what,
        reason: reason.into(),
    }
}

fn gt_rle(ann: &GtAnnotation, image: &GtImage, what: &str) -> Result<Rle, EvalError> {
    let bad = |r: String| invalid(what.to_owned(), r);
    let seg = &ann.segmentation;
    if let Some(polygons) = seg.as_array() {
        let polygons: Vec<Vec<f64>> = polygons
            .iter()
            .map(|p| p.as_array()?.iter().map(|v| v.as_f64()).collect())
            .collect::<Option<_>>()
            .filter(|p: &Vec<Vec<f64>>| !p.is_empty() && p.iter().all(|p| p.len() >= 6))
            .ok_or_else(|| {
                bad("segmentation is not a list of polygons [x0, y0, x1, y1, x2, y2, ...]".into())
            })?;
        let rles: Vec<Rle> = polygons
            .iter()
            .map(|p| Rle::from_polygon(image.height, image.width, p))
            .collect();
        return Ok(Rle::union(&rles));
    }
    let size = seg["size"]
        .as_array()
        .and_then(|s| Some([s.first()?.as_u64()? as u32, s.get(1)?.as_u64()? as u32]))
        .ok_or_else(|| bad("segmentation has no \"size\": [height, width]".into()))?;
    if size != [image.height, image.width] {
        return Err(bad(format!(
            "segmentation is {}x{} but image {} is {}x{} (expected the image's size)",
            size[1], size[0], image.id, image.width, image.height
        )));
    }
    match &seg["counts"] {
        Value::String(s) => Rle::from_counts_string(s, size[0], size[1]).map_err(|e| e.to_string()),
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_u64().and_then(|v| u32::try_from(v).ok()))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| "counts holds something other than run lengths".to_string())
            .and_then(|c| Rle::from_counts(size[0], size[1], c)),
        _ => Err("segmentation has no \"counts\"".into()),
    }
    .map_err(bad)
}

/// Reads both files and computes the metrics.
pub fn evaluate(pred: &Path, truth: &Path, match_by: MatchBy) -> Result<CocoMetrics, EvalError> {
    let read_err = |path: &Path, reason: String| EvalError::Read {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(truth).map_err(|e| read_err(truth, e.to_string()))?;
    let gt: GtFile = serde_json::from_str(&text).map_err(|e| {
        read_err(
            truth,
            format!("{e} (expected a COCO instances file with images, annotations, categories)"),
        )
    })?;

    let images: HashMap<i64, &GtImage> = gt.images.iter().map(|i| (i.id, i)).collect();
    let mut scorer = Scorer::new(gt.categories.iter().map(|c| (c.id, c.name.clone())));
    for &id in images.keys() {
        scorer.add_image(id);
    }
    let by_file_name: HashMap<u64, i64> = gt
        .images
        .iter()
        .filter_map(|i| {
            let name = i.file_name.as_deref()?;
            let stem = Path::new(name).file_stem()?.to_str()?;
            Some((stem.parse().ok()?, i.id))
        })
        .collect();

    for (n, ann) in gt.annotations.iter().enumerate() {
        let Some(image) = images.get(&ann.image_id) else {
            continue;
        };
        if !scorer.has_category(ann.category_id) {
            continue;
        }
        let what = format!("{} annotation {n} (id {})", truth.display(), ann.id);
        let rle = gt_rle(ann, image, &what)?;
        let area = ann.area.unwrap_or(rle.area() as f64);
        scorer.push_truth(
            (ann.image_id, ann.category_id),
            GtObject {
                id: ann.id,
                rle,
                area,
                crowd: ann.iscrowd != 0,
            },
        );
    }

    let file = std::fs::File::open(pred).map_err(|e| read_err(pred, e.to_string()))?;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| read_err(pred, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let what = format!("{} line {}", pred.display(), n + 1);
        let frame: PredLine = serde_json::from_str(&line).map_err(|e| {
            invalid(
                what.clone(),
                format!("{e} (expected a JSONL sink line with seq and instances)"),
            )
        })?;
        if frame.stream != 0 {
            return Err(invalid(
                what,
                format!("frame of stream {} (expected stream 0 only)", frame.stream),
            ));
        }
        let image_id = match match_by {
            MatchBy::Id => i64::try_from(frame.seq)
                .ok()
                .filter(|id| images.contains_key(id)),
            MatchBy::FileName => by_file_name.get(&frame.seq).copied(),
        }
        .ok_or_else(|| {
            invalid(
                what.clone(),
                format!(
                    "frame {} has no image in {} (expected an image with {})",
                    frame.seq,
                    truth.display(),
                    match match_by {
                        MatchBy::Id => format!("id {}", frame.seq),
                        MatchBy::FileName => format!("file name {:06}.*", frame.seq),
                    }
                ),
            )
        })?;
        let image = images[&image_id];
        for inst in frame.instances {
            scorer.detections += 1;
            if !scorer.has_category(inst.category_id) {
                continue;
            }
            let [h, w] = inst.segmentation.size;
            if [h, w] != [image.height, image.width] {
                return Err(invalid(
                    what,
                    format!(
                        "mask is {w}x{h} but image {image_id} is {}x{} (expected the same size)",
                        image.width, image.height
                    ),
                ));
            }
            let rle = Rle::from_counts_string(&inst.segmentation.counts, h, w)
                .map_err(|r| invalid(what.clone(), r.to_string()))?;
            scorer.push_detection(image_id, inst.category_id, inst.score, rle);
        }
    }
    Ok(scorer.metrics())
}

/// Ground truth and detections gathered image by image, then scored as COCOeval scores
/// them: what `evaluate` reads from files, and what `run --eval` gathers from frames.
pub struct Scorer {
    images: BTreeSet<i64>,
    /// Category ids, ascending, and their names.
    categories: Vec<(i64, String)>,
    gts: HashMap<(i64, i64), Vec<GtObject>>,
    dts: HashMap<(i64, i64), Vec<Detection>>,
    /// Detections seen, of any category (also their ids, from 1).
    detections: i64,
    ground_truth: usize,
}

impl Scorer {
    /// A scorer over `categories` (id, name); objects of other categories are left out.
    pub fn new(categories: impl IntoIterator<Item = (i64, String)>) -> Scorer {
        let mut categories: Vec<(i64, String)> = categories.into_iter().collect();
        categories.sort_by_key(|c| c.0);
        categories.dedup_by_key(|c| c.0);
        Scorer {
            images: BTreeSet::new(),
            categories,
            gts: HashMap::new(),
            dts: HashMap::new(),
            detections: 0,
            ground_truth: 0,
        }
    }

    fn has_category(&self, id: i64) -> bool {
        self.categories.binary_search_by_key(&id, |c| c.0).is_ok()
    }

    /// Counts image `id` (an image without objects still counts).
    pub fn add_image(&mut self, id: i64) {
        self.images.insert(id);
    }

    fn push_truth(&mut self, key: (i64, i64), object: GtObject) {
        self.ground_truth += 1;
        self.gts.entry(key).or_default().push(object);
    }

    /// A true object of `category` in image `image` (not crowd; area its pixel count).
    pub fn add_truth(&mut self, image: i64, category: i64, rle: Rle) {
        if self.has_category(category) {
            let id = self.ground_truth as i64 + 1;
            let area = rle.area() as f64;
            self.push_truth(
                (image, category),
                GtObject {
                    id,
                    rle,
                    area,
                    crowd: false,
                },
            );
        }
    }

    fn push_detection(&mut self, image: i64, category: i64, score: f64, rle: Rle) {
        self.dts
            .entry((image, category))
            .or_default()
            .push(Detection {
                id: self.detections,
                area: rle.area() as f64,
                rle,
                score,
            });
    }

    /// A detection of `category` with `score` in image `image`.
    pub fn add_detection(&mut self, image: i64, category: i64, score: f64, rle: Rle) {
        self.detections += 1;
        if self.has_category(category) {
            self.push_detection(image, category, score, rle);
        }
    }

    /// The COCO figures over everything added.
    pub fn metrics(&self) -> CocoMetrics {
        let image_ids: Vec<i64> = self.images.iter().copied().collect();
        let categories: Vec<i64> = self.categories.iter().map(|c| c.0).collect();
        let (gts, dts) = (&self.gts, &self.dts);
        let thresholds = linspace(0.5, 0.95, 10);
        let recall_points = linspace(0.0, 1.0, 101);
        let (t_n, r_n, k_n, a_n, m_n) = (
            thresholds.len(),
            recall_points.len(),
            categories.len(),
            AREA_RANGES.len(),
            MAX_DETS.len(),
        );
        // precision[t][r][k][a][m] and recall[t][k][a][m], -1 where undefined, as COCOeval.
        let p_at = |t: usize, r: usize, k: usize, a: usize, m: usize| {
            ((((t * r_n + r) * k_n + k) * a_n + a) * m_n) + m
        };
        let r_at = |t: usize, k: usize, a: usize, m: usize| (((t * k_n + k) * a_n + a) * m_n) + m;
        let mut precision = vec![-1.0f64; t_n * r_n * k_n * a_n * m_n];
        let mut recall = vec![-1.0f64; t_n * k_n * a_n * m_n];
        let max_det = *MAX_DETS.last().expect("three limits");

        for (k, &cat) in categories.iter().enumerate() {
            // evaluateImg for every image and area range.
            let mut evals: Vec<Vec<Option<ImageEval>>> = (0..a_n).map(|_| Vec::new()).collect();
            for &img in &image_ids {
                let no_gt = Vec::new();
                let no_dt = Vec::new();
                let g = gts.get(&(img, cat)).unwrap_or(&no_gt);
                let d = dts.get(&(img, cat)).unwrap_or(&no_dt);
                if g.is_empty() && d.is_empty() {
                    for e in &mut evals {
                        e.push(None);
                    }
                    continue;
                }
                let mut order: Vec<usize> = (0..d.len()).collect();
                order.sort_by(|&a, &b| d[b].score.total_cmp(&d[a].score));
                order.truncate(max_det);
                let dt: Vec<&Detection> = order.iter().map(|&i| &d[i]).collect();
                let ious: Vec<Vec<f64>> = dt
                    .iter()
                    .map(|d| g.iter().map(|g| d.rle.iou(&g.rle, g.crowd)).collect())
                    .collect();
                for (a, &(lo, hi)) in AREA_RANGES.iter().enumerate() {
                    evals[a].push(Some(evaluate_image(g, &dt, &ious, lo, hi, &thresholds)));
                }
            }
            // accumulate.
            for (a, evals) in evals.iter().enumerate() {
                for (m, &limit) in MAX_DETS.iter().enumerate() {
                    let mut rows: Vec<(f64, usize, usize)> = Vec::new(); // score, image, detection
                    let mut counted = 0;
                    for (i, e) in evals.iter().enumerate() {
                        let Some(e) = e else { continue };
                        counted += e.counted;
                        rows.extend(
                            e.scores
                                .iter()
                                .take(limit)
                                .enumerate()
                                .map(|(j, &s)| (s, i, j)),
                        );
                    }
                    if counted == 0 {
                        continue;
                    }
                    rows.sort_by(|x, y| y.0.total_cmp(&x.0));
                    for t in 0..t_n {
                        let (mut tp, mut fp) = (0.0f64, 0.0f64);
                        let mut rc = Vec::with_capacity(rows.len());
                        let mut pr = Vec::with_capacity(rows.len());
                        for &(_, i, j) in &rows {
                            let e = evals[i].as_ref().expect("rows come from evaluated images");
                            if !e.ignored[t][j] {
                                if e.matches[t][j] != 0 {
                                    tp += 1.0;
                                } else {
                                    fp += 1.0;
                                }
                            }
                            rc.push(tp / counted as f64);
                            pr.push(tp / (fp + tp + f64::EPSILON));
                        }
                        recall[r_at(t, k, a, m)] = rc.last().copied().unwrap_or(0.0);
                        for i in (1..pr.len()).rev() {
                            if pr[i] > pr[i - 1] {
                                pr[i - 1] = pr[i];
                            }
                        }
                        for (r, &point) in recall_points.iter().enumerate() {
                            let at = rc.partition_point(|&v| v < point);
                            precision[p_at(t, r, k, a, m)] = pr.get(at).copied().unwrap_or(0.0);
                        }
                    }
                }
            }
        }

        let mean = |v: &mut dyn Iterator<Item = f64>| {
            let (mut sum, mut n) = (0.0, 0usize);
            for x in v.filter(|&x| x > -1.0) {
                sum += x;
                n += 1;
            }
            (n > 0).then(|| sum / n as f64)
        };
        let ap = |t: Option<usize>, a: usize, ks: &[usize]| {
            let ts: Vec<usize> = t.map_or((0..t_n).collect(), |t| vec![t]);
            let mut it = ts
                .iter()
                .flat_map(|&t| (0..r_n).flat_map(move |r| ks.iter().map(move |&k| (t, r, k))))
                .map(|(t, r, k)| precision[p_at(t, r, k, a, 2)]);
            mean(&mut it)
        };
        let all: Vec<usize> = (0..k_n).collect();
        let ar = |a: usize, m: usize| {
            let mut it = (0..t_n)
                .flat_map(|t| (0..k_n).map(move |k| (t, k)))
                .map(|(t, k)| recall[r_at(t, k, a, m)]);
            mean(&mut it)
        };
        let t_of = |v: f64| thresholds.iter().position(|&t| t == v);
        let names: HashMap<i64, &str> = self
            .categories
            .iter()
            .map(|c| (c.0, c.1.as_str()))
            .collect();
        CocoMetrics {
            images: image_ids.len(),
            detections: self.detections as usize,
            ground_truth: self.ground_truth,
            ap: ap(None, 0, &all),
            ap50: t_of(0.5).and_then(|t| ap(Some(t), 0, &all)),
            ap75: t_of(0.75).and_then(|t| ap(Some(t), 0, &all)),
            ap_small: ap(None, 1, &all),
            ap_medium: ap(None, 2, &all),
            ap_large: ap(None, 3, &all),
            ar1: ar(0, 0),
            ar10: ar(0, 1),
            ar100: ar(0, 2),
            ar_small: ar(1, 2),
            ar_medium: ar(2, 2),
            ar_large: ar(3, 2),
            per_category: categories
                .iter()
                .enumerate()
                .map(|(k, &id)| CategoryAp {
                    id,
                    name: names.get(&id).copied().unwrap_or_default().to_owned(),
                    ap: ap(None, 0, &[k]),
                    ap50: t_of(0.5).and_then(|t| ap(Some(t), 0, &[k])),
                })
                .collect(),
        }
    }
}

/// COCOeval's `evaluateImg` for one image, category and area range; `dt` in score order,
/// `ious[d][g]` against the ground truth in its original order.
fn evaluate_image(
    gt: &[GtObject],
    dt: &[&Detection],
    ious: &[Vec<f64>],
    lo: f64,
    hi: f64,
    thresholds: &[f64],
) -> ImageEval {
    let outside = |area: f64| area < lo || area > hi;
    let gt_ignore: Vec<bool> = gt.iter().map(|g| g.crowd || outside(g.area)).collect();
    // Not-ignored ground truth first, otherwise in order (a stable sort).
    let mut gt_order: Vec<usize> = (0..gt.len()).collect();
    gt_order.sort_by_key(|&g| gt_ignore[g]);
    let (t_n, d_n) = (thresholds.len(), dt.len());
    let mut matches = vec![vec![0i64; d_n]; t_n];
    let mut ignored = vec![vec![false; d_n]; t_n];
    let mut gt_matched = vec![vec![0i64; gt.len()]; t_n];
    for (t, &threshold) in thresholds.iter().enumerate() {
        for (d, det) in dt.iter().enumerate() {
            let mut best = threshold.min(1.0 - 1e-10);
            let mut m: Option<usize> = None;
            for (gi, &g) in gt_order.iter().enumerate() {
                if gt_matched[t][gi] > 0 && !gt[g].crowd {
                    continue;
                }
                if let Some(mi) = m {
                    if !gt_ignore[gt_order[mi]] && gt_ignore[g] {
                        break;
                    }
                }
                if ious[d][g] < best {
                    continue;
                }
                best = ious[d][g];
                m = Some(gi);
            }
            let Some(mi) = m else { continue };
            let g = gt_order[mi];
            ignored[t][d] = gt_ignore[g];
            matches[t][d] = gt[g].id;
            gt_matched[t][mi] = det.id;
        }
    }
    for t in 0..t_n {
        for (d, det) in dt.iter().enumerate() {
            if matches[t][d] == 0 && outside(det.area) {
                ignored[t][d] = true;
            }
        }
    }
    ImageEval {
        matches,
        ignored,
        scores: dt.iter().map(|d| d.score).collect(),
        counted: gt_ignore.iter().filter(|&&i| !i).count(),
    }
}

impl std::fmt::Display for CocoMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = |x: Option<f64>| x.map_or("-1.000".to_string(), |x| format!("{x:.3}"));
        writeln!(
            f,
            "{:>6} {:<20} {:>7} {:>7}",
            "id", "category", "AP", "AP50"
        )?;
        for c in &self.per_category {
            writeln!(
                f,
                "{:>6} {:<20} {:>7} {:>7}",
                c.id,
                c.name,
                v(c.ap),
                v(c.ap50)
            )?;
        }
        let rows = [
            ("Average Precision", "0.50:0.95", "all", 100, self.ap),
            ("Average Precision", "0.50", "all", 100, self.ap50),
            ("Average Precision", "0.75", "all", 100, self.ap75),
            (
                "Average Precision",
                "0.50:0.95",
                "small",
                100,
                self.ap_small,
            ),
            (
                "Average Precision",
                "0.50:0.95",
                "medium",
                100,
                self.ap_medium,
            ),
            (
                "Average Precision",
                "0.50:0.95",
                "large",
                100,
                self.ap_large,
            ),
            ("Average Recall", "0.50:0.95", "all", 1, self.ar1),
            ("Average Recall", "0.50:0.95", "all", 10, self.ar10),
            ("Average Recall", "0.50:0.95", "all", 100, self.ar100),
            ("Average Recall", "0.50:0.95", "small", 100, self.ar_small),
            ("Average Recall", "0.50:0.95", "medium", 100, self.ar_medium),
            ("Average Recall", "0.50:0.95", "large", 100, self.ar_large),
        ];
        for (what, iou, area, dets, value) in rows {
            writeln!(
                f,
                " {what:<18} (mask) @[ IoU={iou:<9} | area={area:>6} | maxDets={dets:>3} ] = {}",
                v(value)
            )?;
        }
        write!(
            f,
            "{} images, {} ground-truth objects, {} detections",
            self.images, self.ground_truth, self.detections
        )
    }
}
