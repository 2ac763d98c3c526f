//! Convention `detections` (Mask R-CNN): boxes, labels, scores and masks per image, decoded
//! into `Instance`s in frame coordinates.
//!
//! Two mask layouts: torchvision's own export gives masks already pasted at the input size
//! (`[N,1,H,W]` probabilities); raw exports give `[N,1|C,28,28]` maps that are pasted here
//! (see `instance::paste`). Either way boxes and masks end up in frame pixels, whether the
//! model saw the frame itself, a padded or stretched copy, or one slice of it.

use std::borrow::Cow;

use ort::session::SessionOutputs;

use super::labels::integers;
use super::model::MasksFormat;
use super::scores::floats;
use crate::instance::paste::{
    crop_threshold, paste, resize_threshold, resized_window, set_window, Window,
};
use crate::instance::{Instance, Mask};

/// What is wrong with the model's declared masks output `described` for `classes` classes.
pub fn check_masks(
    described: &str,
    format: MasksFormat,
    shape: &[i64],
    classes: usize,
    problems: &mut Vec<String>,
) {
    let n = classes as i64;
    let ok = match (format, shape) {
        (MasksFormat::Pasted, [_, c, _, _]) => *c == 1 || *c < 0,
        (MasksFormat::Raw, [_, c, h, w]) => {
            (*c < 0 || *c == 1 || *c == n) && (*h < 0 || *w < 0 || h == w)
        }
        _ => false,
    };
    if !ok {
        let (kind, expected) = match format {
            MasksFormat::Raw => ("raw", format!("[N, 1 or {n}, m, m]")),
            MasksFormat::Pasted => ("pasted", "[N, 1, H, W]".to_string()),
        };
        problems.push(format!(
            "output {described} does not hold {kind} masks (expected {expected})"
        ));
    }
}

/// The output names of a detection model.
pub struct Names<'a> {
    pub boxes: &'a str,
    pub labels: &'a str,
    pub scores: &'a str,
    pub masks: &'a str,
}

/// One image's detection outputs read from a session run (borrowed where the types allow).
pub struct Read<'a> {
    boxes: Cow<'a, [f32]>,
    labels: Cow<'a, [i64]>,
    scores: Cow<'a, [f32]>,
    masks: Cow<'a, [f32]>,
    mask_shape: [usize; 4],
}

impl Read<'_> {
    pub fn outputs(&self) -> DetOutputs<'_> {
        DetOutputs {
            boxes: &self.boxes,
            labels: &self.labels,
            scores: &self.scores,
            masks: &self.masks,
            mask_shape: self.mask_shape,
        }
    }
}

/// Reads the four outputs of one image from `outputs`.
pub fn read<'a>(outputs: &'a SessionOutputs<'_>, names: &Names<'_>) -> Result<Read<'a>, String> {
    let get = |output: &str| {
        outputs
            .get(output)
            .ok_or_else(|| format!("output {output:?} missing from the results"))
    };
    let text = |e: ort::Error| e.to_string();
    let (_, boxes) = floats(get(names.boxes)?).map_err(text)?;
    let (_, scores) = floats(get(names.scores)?).map_err(text)?;
    let (mask_shape, masks) = floats(get(names.masks)?).map_err(text)?;
    let (_, labels) = integers(get(names.labels)?).map_err(text)?;
    let mask_shape: [usize; 4] = match mask_shape[..] {
        [n, c, h, w] => [n as usize, c as usize, h as usize, w as usize],
        [n, h, w] => [n as usize, 1, h as usize, w as usize],
        _ => {
            return Err(format!(
                "output {:?} has shape {mask_shape:?} (expected [N, C, h, w])",
                names.masks
            ))
        }
    };
    Ok(Read {
        boxes,
        labels,
        scores,
        masks,
        mask_shape,
    })
}

/// One image's raw detection outputs, as the model gives them.
pub struct DetOutputs<'a> {
    /// `[N, 4]` x1, y1, x2, y2 in model input pixels.
    pub boxes: &'a [f32],
    /// `[N]` class indices.
    pub labels: &'a [i64],
    /// `[N]` confidences.
    pub scores: &'a [f32],
    /// `[N, C, h, w]` mask probabilities.
    pub masks: &'a [f32],
    /// The shape of `masks`.
    pub mask_shape: [usize; 4],
}

/// Where the model input sits in the frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    pub frame_width: u32,
    pub frame_height: u32,
    /// Model input size (width, height).
    pub model: (u32, u32),
    /// The part of the model input holding image content, from its top-left (the rest is
    /// padding).
    pub region: (u32, u32),
    /// Frame position of the model input's top-left (a slice's offset).
    pub offset: (u32, u32),
    /// True when the frame was resized to the model input (not padded, not sliced).
    pub stretched: bool,
}

impl Placement {
    /// Frame pixels per model pixel along x and y, computed as torchvision's
    /// `resize_boxes` does (float32 `original / resized`).
    fn ratio(&self) -> (f32, f32) {
        if self.stretched {
            (
                self.frame_width as f32 / self.model.0 as f32,
                self.frame_height as f32 / self.model.1 as f32,
            )
        } else {
            (1.0, 1.0)
        }
    }
}

/// What to keep.
#[derive(Clone, Debug)]
pub struct DetectParams {
    pub format: MasksFormat,
    pub score_threshold: f32,
    /// By class index; `None` keeps every class.
    pub keep: Option<Vec<bool>>,
    pub num_classes: usize,
}

/// Decodes one image's outputs into instances in frame coordinates, dropping detections
/// below the score threshold or of unwanted classes. Order is the model's (by score).
pub fn decode(
    out: &DetOutputs<'_>,
    place: &Placement,
    params: &DetectParams,
) -> Result<Vec<Instance>, String> {
    let n = out.scores.len();
    if out.boxes.len() != n * 4 || out.labels.len() != n {
        return Err(format!(
            "{n} scores but {} box values and {} labels (expected [N,4] boxes and [N] labels)",
            out.boxes.len(),
            out.labels.len()
        ));
    }
    let [mn, mc, mh, mw] = out.mask_shape;
    if mn != n || out.masks.len() != mn * mc * mh * mw || mc == 0 {
        return Err(format!(
            "masks have shape {:?} for {n} detections (expected [N, 1 or classes, h, w])",
            out.mask_shape
        ));
    }
    match params.format {
        MasksFormat::Pasted
            if mc != 1 || mh < place.region.1 as usize || mw < place.region.0 as usize =>
        {
            return Err(format!(
                "pasted masks have shape {:?} (expected [N, 1, {}, {}], the input size)",
                out.mask_shape, place.model.1, place.model.0
            ));
        }
        MasksFormat::Raw if mh != mw || (mc != 1 && mc != params.num_classes) => {
            return Err(format!(
                "raw masks have shape {:?} (expected [N, 1 or {}, m, m])",
                out.mask_shape, params.num_classes
            ));
        }
        _ => {}
    }
    let (rx, ry) = place.ratio();
    let (ox, oy) = (place.offset.0 as f32, place.offset.1 as f32);
    let (rw, rh) = (place.region.0 as f32, place.region.1 as f32);
    let (fw, fh) = (place.frame_width, place.frame_height);
    let mut instances = Vec::new();
    for i in 0..n {
        let score = out.scores[i];
        let label = out.labels[i];
        // NaN scores fail this too.
        if score.is_nan() || score < params.score_threshold {
            continue;
        }
        if label < 0 || label as usize >= params.num_classes {
            return Err(format!(
                "label {label} is outside the config's {} classes",
                params.num_classes
            ));
        }
        if params.keep.as_ref().is_some_and(|k| !k[label as usize]) {
            continue;
        }
        let b = &out.boxes[i * 4..i * 4 + 4];
        // Boxes never reach into padding; then model pixels to frame pixels.
        let bbox = [
            b[0].clamp(0.0, rw) * rx + ox,
            b[1].clamp(0.0, rh) * ry + oy,
            b[2].clamp(0.0, rw) * rx + ox,
            b[3].clamp(0.0, rh) * ry + oy,
        ];
        let plane = mh * mw;
        let mask = match params.format {
            MasksFormat::Raw => {
                let c = if mc == 1 { 0 } else { label as usize };
                let start = (i * mc + c) * plane;
                paste(&out.masks[start..start + plane], mw, bbox, fw, fh)
            }
            MasksFormat::Pasted => {
                let map = &out.masks[i * plane..(i + 1) * plane];
                pasted_mask(map, mw, place)
            }
        };
        instances.push(Instance {
            class: label as u32,
            score,
            bbox,
            mask,
            id: 0,
        });
    }
    Ok(instances)
}

/// A mask already at model input size (`stride` wide), brought to the frame.
fn pasted_mask(map: &[f32], stride: usize, place: &Placement) -> Mask {
    let (rw, rh) = (place.region.0 as usize, place.region.1 as usize);
    let Some(set) = set_window_in(map, stride, rw, rh) else {
        return Mask::empty();
    };
    if !place.stretched {
        return crop_threshold(map, stride, set, place.offset.0, place.offset.1);
    }
    // Resized like `F.interpolate(masks, size=frame)`, only near the set pixels.
    let (mw, mh) = (place.model.0 as usize, place.model.1 as usize);
    let (fw, fh) = (place.frame_width, place.frame_height);
    let window = resized_window(mw, mh, fw, fh, set);
    let data = resize_threshold(&map[..mw * mh], mw, mh, fw, fh, window);
    Mask {
        x: window.x,
        y: window.y,
        width: window.width,
        height: window.height,
        data,
    }
}

/// `set_window` over the top-left `w`x`h` part of a `stride`-wide map.
fn set_window_in(map: &[f32], stride: usize, w: usize, h: usize) -> Option<Window> {
    if stride == w {
        return set_window(&map[..w * h], w, h);
    }
    let part: Vec<f32> = map
        .chunks_exact(stride)
        .take(h)
        .flat_map(|row| &row[..w])
        .copied()
        .collect();
    set_window(&part, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(format: MasksFormat) -> DetectParams {
        DetectParams {
            format,
            score_threshold: 0.5,
            keep: None,
            num_classes: 3,
        }
    }

    #[test]
    fn no_detections_is_an_empty_frame() {
        let out = DetOutputs {
            boxes: &[],
            labels: &[],
            scores: &[],
            masks: &[],
            mask_shape: [0, 1, 28, 28],
        };
        let place = Placement {
            frame_width: 64,
            frame_height: 48,
            model: (64, 48),
            region: (64, 48),
            offset: (0, 0),
            stretched: false,
        };
        assert!(decode(&out, &place, &params(MasksFormat::Raw))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn slices_and_stretches_map_to_frame_pixels() {
        // One detection whose pasted mask covers model pixels 2..6 x 1..3.
        let (mw, mh) = (8usize, 4usize);
        let mut masks = vec![0f32; mw * mh];
        for y in 1..3 {
            for x in 2..6 {
                masks[y * mw + x] = 0.9;
            }
        }
        let out = DetOutputs {
            boxes: &[2.0, 1.0, 6.0, 3.0],
            labels: &[1],
            scores: &[0.8],
            masks: &masks,
            mask_shape: [1, 1, mh, mw],
        };
        let sliced = Placement {
            frame_width: 100,
            frame_height: 50,
            model: (8, 4),
            region: (8, 4),
            offset: (40, 20),
            stretched: false,
        };
        let d = decode(&out, &sliced, &params(MasksFormat::Pasted)).unwrap();
        assert_eq!(d[0].bbox, [42.0, 21.0, 46.0, 23.0]);
        assert_eq!((d[0].mask.x, d[0].mask.y, d[0].mask.area()), (42, 21, 8));
        let stretched = Placement {
            frame_width: 16,
            frame_height: 8,
            offset: (0, 0),
            stretched: true,
            ..sliced
        };
        let d = decode(&out, &stretched, &params(MasksFormat::Pasted)).unwrap();
        assert_eq!(d[0].bbox, [4.0, 2.0, 12.0, 6.0]);
        // Doubling a 4x2 block with half-pixel centres: 7x3 output pixels exceed 0.5
        // (values ramp over one output pixel at each edge).
        assert!(d[0].mask.get(4, 2) && d[0].mask.get(11, 5) && !d[0].mask.get(3, 2));
        // Below the threshold, or filtered by class: dropped.
        let mut p = params(MasksFormat::Pasted);
        p.keep = Some(vec![true, false, true]);
        assert!(decode(&out, &stretched, &p).unwrap().is_empty());
        p.keep = None;
        p.score_threshold = 0.81;
        assert!(decode(&out, &stretched, &p).unwrap().is_empty());
    }

    #[test]
    fn labels_outside_the_classes_are_an_error() {
        let out = DetOutputs {
            boxes: &[0.0, 0.0, 1.0, 1.0],
            labels: &[7],
            scores: &[0.9],
            masks: &[0.0; 4],
            mask_shape: [1, 1, 2, 2],
        };
        let place = Placement {
            frame_width: 2,
            frame_height: 2,
            model: (2, 2),
            region: (2, 2),
            offset: (0, 0),
            stretched: false,
        };
        let e = decode(&out, &place, &params(MasksFormat::Pasted)).unwrap_err();
        assert!(e.contains("label 7"), "{e}");
    }
}
