//! Merging detections from overlapping slices (SAHI-style): class-wise greedy matching on
//! boxes, with the masks and boxes of matched detections united.
//!
//! `let merged = merge(detections, MatchMetric::Ios, 0.5);`
//!
//! An object cut by a slice border is seen whole by one slice and in part by its
//! neighbour; the part's box lies mostly inside the whole one, so intersection over the
//! smaller box (`ios`) matches them where intersection over union would not. Detections are
//! visited by descending score; each one not yet merged absorbs every later detection of
//! its class that matches it: the box becomes the union of both boxes, the mask the union
//! of both masks, and the score stays the higher one.

use crate::frame::{overlap, Instance, Mask, MatchMetric};

/// Merges matching detections of the same class (`overlap > threshold`), highest score
/// first. The result is sorted by descending score.
pub fn merge(mut detections: Vec<Instance>, metric: MatchMetric, threshold: f32) -> Vec<Instance> {
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut merged = vec![false; detections.len()];
    let mut out = Vec::with_capacity(detections.len());
    for i in 0..detections.len() {
        if merged[i] {
            continue;
        }
        let mut keep = detections[i].clone();
        // Match against the keeper's original box, as greedy NMS does, so a chain of
        // neighbours cannot grow one detection across the frame.
        let anchor = detections[i].bbox;
        for j in i + 1..detections.len() {
            let other = &detections[j];
            if merged[j]
                || other.class != keep.class
                || overlap(&anchor, &other.bbox, metric) <= threshold
            {
                continue;
            }
            merged[j] = true;
            keep.bbox = [
                keep.bbox[0].min(other.bbox[0]),
                keep.bbox[1].min(other.bbox[1]),
                keep.bbox[2].max(other.bbox[2]),
                keep.bbox[3].max(other.bbox[3]),
            ];
            keep.mask = union(&keep.mask, &other.mask);
        }
        out.push(keep);
    }
    out
}

/// The union of two masks, in the smallest window holding both.
pub fn union(a: &Mask, b: &Mask) -> Mask {
    if a.width == 0 || a.height == 0 {
        return b.clone();
    }
    if b.width == 0 || b.height == 0 {
        return a.clone();
    }
    let x = a.x.min(b.x);
    let y = a.y.min(b.y);
    let width = (a.x + a.width).max(b.x + b.width) - x;
    let height = (a.y + a.height).max(b.y + b.height) - y;
    let mut data = vec![0u8; width as usize * height as usize];
    for m in [a, b] {
        for (r, row) in m.data.chunks_exact(m.width as usize).enumerate() {
            let start = (m.y - y + r as u32) as usize * width as usize + (m.x - x) as usize;
            for (o, &v) in data[start..start + row.len()].iter_mut().zip(row) {
                *o |= v;
            }
        }
    }
    Mask {
        x,
        y,
        width,
        height,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: u32, score: f32, bbox: [f32; 4]) -> Instance {
        Instance::solid(class, score, bbox)
    }

    #[test]
    fn overlaps() {
        let a = [0.0, 0.0, 10.0, 10.0];
        let b = [5.0, 0.0, 15.0, 10.0];
        assert!((overlap(&a, &b, MatchMetric::Iou) - 50.0 / 150.0).abs() < 1e-6);
        assert!((overlap(&a, &b, MatchMetric::Ios) - 0.5).abs() < 1e-6);
        let inner = [2.0, 2.0, 4.0, 4.0];
        assert_eq!(overlap(&a, &inner, MatchMetric::Ios), 1.0);
        assert_eq!(
            overlap(&a, &[20.0, 20.0, 30.0, 30.0], MatchMetric::Iou),
            0.0
        );
        assert_eq!(overlap(&a, &[3.0, 3.0, 3.0, 3.0], MatchMetric::Ios), 0.0);
    }

    #[test]
    fn a_cut_object_merges_with_its_whole_view_and_masks_unite() {
        let whole = det(3, 0.9, [10.0, 10.0, 30.0, 20.0]);
        let part = det(3, 0.6, [20.0, 8.0, 34.0, 20.0]);
        let other_class = det(1, 0.8, [10.0, 10.0, 30.0, 20.0]);
        let far = det(3, 0.7, [100.0, 100.0, 110.0, 110.0]);
        let out = merge(
            vec![
                part.clone(),
                far.clone(),
                whole.clone(),
                other_class.clone(),
            ],
            MatchMetric::Ios,
            0.5,
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].score, 0.9);
        assert_eq!(out[0].bbox, [10.0, 8.0, 34.0, 20.0]);
        assert_eq!(out[0].mask.area(), 20 * 10 + 14 * 12 - 10 * 10);
        assert!(out[0].mask.get(33, 8) && out[0].mask.get(10, 19) && !out[0].mask.get(10, 8));
        assert_eq!(out[1], other_class);
        assert_eq!(out[2], far);
        // Under IoU (100 / 368) the two views stay apart.
        assert_eq!(merge(vec![whole, part], MatchMetric::Iou, 0.5).len(), 2);
    }

    #[test]
    fn union_with_an_empty_mask_is_the_other_mask() {
        let m = det(0, 1.0, [1.0, 2.0, 4.0, 6.0]).mask;
        assert_eq!(union(&Mask::empty(), &m), m);
        assert_eq!(union(&m, &Mask::empty()), m);
    }
}
