//! Refinement of one instance mask: a two-label CRF (object, background) in the mask's
//! window, widened by a margin so the boundary can move outwards too.

use super::crf::{mean_field, CrfParams};
use crate::frame::{RgbImage, ScoreKind};
use crate::instance::{Instance, Mask};

/// Probability of "object" that the unrefined mask gives its set pixels (and one minus it
/// to the rest): confident, but not so much that the image cannot overrule it.
const CONFIDENCE: f32 = 0.7;

/// The instance's mask, refined to follow the image's edges, with DeepLab's parameters.
pub fn refine_mask(image: &RgbImage, instance: &Instance) -> Mask {
    refine_mask_with(image, instance, &CrfParams::default())
}

/// [`refine_mask`] with given CRF parameters. The result covers the mask's window widened
/// by a tenth of its size on each side (clipped to the frame); an empty mask stays empty.
pub fn refine_mask_with(image: &RgbImage, instance: &Instance, params: &CrfParams) -> Mask {
    let m = &instance.mask;
    if m.area() == 0 || m.x >= image.width || m.y >= image.height {
        return m.clone();
    }
    let margin = (m.width.max(m.height) / 10).max(2);
    let x0 = m.x.saturating_sub(margin);
    let y0 = m.y.saturating_sub(margin);
    let x1 = (m.x + m.width + margin).min(image.width);
    let y1 = (m.y + m.height + margin).min(image.height);
    let (w, h) = (x1 - x0, y1 - y0);
    let n = (w * h) as usize;
    let mut crop = Vec::with_capacity(n * 3);
    for y in y0..y1 {
        let row = (y * image.width + x0) as usize * 3;
        crop.extend_from_slice(&image.data[row..row + w as usize * 3]);
    }
    let crop = RgbImage::new(w, h, crop);
    // Planes: background, then object.
    let mut probs = vec![0f32; 2 * n];
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) as usize;
            let p = if m.get(x0 + x, y0 + y) {
                CONFIDENCE
            } else {
                1.0 - CONFIDENCE
            };
            probs[n + i] = p;
            probs[i] = 1.0 - p;
        }
    }
    match mean_field(&crop, &probs, 2, ScoreKind::Probabilities, params, &|| {
        false
    }) {
        Ok(r) => Mask {
            x: x0,
            y: y0,
            width: w,
            height: h,
            data: r.labels,
        },
        // Only absurd kernel sizes fail; the mask is then better left as it was.
        Err(_) => m.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sloppy_mask_snaps_to_the_object() {
        // A dark disc of radius 20 on a bright, slightly textured background.
        let (w, h) = (120u32, 100u32);
        let (cx, cy, r) = (60.0f32, 50.0f32, 20.0f32);
        let inside = |x: u32, y: u32| {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            dx * dx + dy * dy <= r * r
        };
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let t = ((x * 7 + y * 13) % 11) as u8;
                let v = if inside(x, y) { 40 + t } else { 200 + t };
                data.extend([v, v, v / 2]);
            }
        }
        let image = RgbImage::new(w, h, data);
        // The mask is the disc's bounding square, shifted by 4 pixels: too big and off.
        let (mx, my, size) = (44u32, 34u32, 40u32);
        let mask = Mask {
            x: mx,
            y: my,
            width: size,
            height: size,
            data: vec![1; (size * size) as usize],
        };
        let instance = Instance {
            class: 0,
            score: 0.9,
            bbox: [44.0, 34.0, 84.0, 74.0],
            mask,
            id: 0,
        };
        let iou = |m: &Mask| {
            let (mut both, mut any) = (0, 0);
            for y in 0..h {
                for x in 0..w {
                    let (a, b) = (m.get(x, y), inside(x, y));
                    both += (a && b) as u32;
                    any += (a || b) as u32;
                }
            }
            both as f64 / any as f64
        };
        let refined = refine_mask(&image, &instance);
        let (before, after) = (iou(&instance.mask), iou(&refined));
        assert!(
            after > 0.9 && after > before + 0.1,
            "IoU {before} -> {after}"
        );
    }

    #[test]
    fn an_empty_mask_stays_empty() {
        let image = RgbImage::new(8, 8, vec![0; 192]);
        let instance = Instance {
            class: 0,
            score: 1.0,
            bbox: [0.0; 4],
            mask: Mask::empty(),
            id: 0,
        };
        assert_eq!(refine_mask(&image, &instance), Mask::empty());
    }
}
