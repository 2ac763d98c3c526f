//! Boxes `[x1, y1, x2, y2]` in frame pixels and how much two of them overlap: one home for
//! the geometry that merging, tracking and drawing share.

/// How two boxes are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchMetric {
    /// Intersection over union.
    Iou,
    /// Intersection over the smaller box's area.
    Ios,
}

fn area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

/// The match score of two boxes under `metric`, 0 when they do not overlap.
pub fn overlap(a: &[f32; 4], b: &[f32; 4], metric: MatchMetric) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let denom = match metric {
        MatchMetric::Iou => area(a) + area(b) - inter,
        MatchMetric::Ios => area(a).min(area(b)),
    };
    if denom <= 0.0 {
        0.0
    } else {
        inter / denom
    }
}

/// Intersection over union of two boxes, 0 when they do not overlap.
pub fn box_iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    overlap(a, b, MatchMetric::Iou)
}

/// Intersection over the smaller box's area, 0 when they do not overlap.
pub fn box_ios(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    overlap(a, b, MatchMetric::Ios)
}
