//! Frame-sized maps made from instances: instance ids, and panoptic labels that join a
//! semantic label map (stuff) with instances (things).

pub use crate::frame::Classes;
use crate::frame::{Instance, LabelMap};

/// Panoptic value of void pixels (no class, or a thing class with no instance on it).
pub const VOID: u16 = u16::MAX;
/// Instances per class a panoptic value can tell apart (`class * 1000 + instance`).
pub const MAX_PANOPTIC_INSTANCES: usize = 999;

/// Instance indices from lowest to highest score, so painting in this order leaves the
/// highest-scoring instance on top where masks overlap.
fn paint_order(instances: &[Instance]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..instances.len()).collect();
    order.sort_by(|&a, &b| instances[a].score.total_cmp(&instances[b].score));
    order
}

/// Paints `value(i)` over instance `i`'s mask for every instance, highest score on top.
fn paint(
    out: &mut [u16],
    width: u32,
    instances: &[Instance],
    mut value: impl FnMut(usize) -> Option<u16>,
) {
    let height = (out.len() / width.max(1) as usize) as u32;
    for i in paint_order(instances) {
        let Some(v) = value(i) else { continue };
        let m = &instances[i].mask;
        // Masks are built inside the frame; clipping here only guards against odd callers.
        let len = (m.x + m.width).min(width).saturating_sub(m.x) as usize;
        let y1 = (m.y + m.height).min(height);
        if len == 0 {
            continue;
        }
        for y in m.y..y1 {
            let src = &m.data[((y - m.y) * m.width) as usize..][..len];
            let dst = &mut out[(y * width + m.x) as usize..][..len];
            for (d, &s) in dst.iter_mut().zip(src) {
                if s != 0 {
                    *d = v;
                }
            }
        }
    }
}

/// Row-major 16-bit map: 0 for background, else the instance's id, or its index + 1 when
/// instances are untracked (`id == 0`).
pub fn instance_ids(width: u32, height: u32, instances: &[Instance]) -> Vec<u16> {
    let mut out = vec![0u16; width as usize * height as usize];
    paint(&mut out, width, instances, |i| {
        let id = if instances[i].id != 0 {
            instances[i].id
        } else {
            i as u32 + 1
        };
        Some(id.min(u16::MAX as u32) as u16)
    });
    out
}

/// Row-major 16-bit panoptic map, Cityscapes-style: `class * 1000` for stuff pixels,
/// `class * 1000 + k` for the k-th instance (by score, from 1) of a thing class, and
/// [`VOID`] where a thing class has no instance. `things[c]` maps instance class `c` to its
/// semantic class; instances of unmapped classes are left out.
pub fn panoptic(labels: &LabelMap, instances: &[Instance], things: &[Option<u8>]) -> Vec<u16> {
    let mut is_thing = [false; 256];
    for t in things.iter().flatten() {
        is_thing[*t as usize] = true;
    }
    let mut out: Vec<u16> = labels
        .data
        .iter()
        .map(|&c| {
            if is_thing[c as usize] {
                VOID
            } else {
                c as u16 * 1000
            }
        })
        .collect();
    // Number each thing class's instances from 1, highest score first.
    let mut by_score: Vec<usize> = (0..instances.len()).collect();
    by_score.sort_by(|&a, &b| instances[b].score.total_cmp(&instances[a].score));
    let mut number = vec![0usize; instances.len()];
    let mut next = [0usize; 256];
    for i in by_score {
        if let Some(Some(c)) = things.get(instances[i].class as usize) {
            let n = &mut next[*c as usize];
            if *n < MAX_PANOPTIC_INSTANCES {
                *n += 1;
                number[i] = *n;
            }
        }
    }
    paint(&mut out, labels.width, instances, |i| {
        let c = (*things.get(instances[i].class as usize)?)?;
        (number[i] > 0).then(|| c as u16 * 1000 + number[i] as u16)
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::Mask;

    fn inst(class: u32, score: f32, x: u32, y: u32, w: u32, h: u32) -> Instance {
        Instance {
            class,
            score,
            bbox: [x as f32, y as f32, (x + w) as f32, (y + h) as f32],
            mask: Mask {
                x,
                y,
                width: w,
                height: h,
                data: vec![1; (w * h) as usize],
            },
            id: 0,
        }
    }

    #[test]
    fn higher_score_wins_overlaps() {
        let a = inst(1, 0.9, 0, 0, 2, 2);
        let b = inst(1, 0.5, 1, 1, 2, 2);
        let ids = instance_ids(3, 3, &[b, a]);
        assert_eq!(ids, vec![2, 2, 0, 2, 2, 1, 0, 1, 1]);
    }

    #[test]
    fn panoptic_joins_stuff_and_things() {
        let classes = Classes {
            semantic: vec!["road".into(), "car".into()],
            instance: vec!["__background__".into(), "person".into(), "car".into()],
            ..Classes::default()
        };
        let things = classes.thing_classes();
        assert_eq!(things, vec![None, None, Some(1)]);
        // Semantic: left column road, the rest car.
        let labels = LabelMap::new(3, 2, vec![0, 1, 1, 0, 1, 1]);
        let car = inst(2, 0.8, 1, 0, 1, 2);
        let person = inst(1, 0.9, 0, 0, 3, 1);
        let map = panoptic(&labels, &[car, person], &things);
        assert_eq!(map, vec![0, 1001, VOID, 0, 1001, VOID]);
    }
}
