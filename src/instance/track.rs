//! Instance ids that persist across frames, so an object keeps its id (in JSONL) and its
//! colour (in the overlay) from frame to frame.

use crate::frame::{box_iou, Instance};

/// Box IoU from which an instance is taken to be the previous frame's same-class object.
pub const TRACK_IOU: f32 = 0.3;

/// Gives instances ids that persist across frames: each instance takes the id of the
/// previous frame's instance of the same class with the highest box IoU (at least
/// [`TRACK_IOU`]), greedily from the best pair down; the rest get new ids.
#[derive(Debug, Default)]
pub struct Tracker {
    next: u32,
    previous: Vec<(u32, u32, [f32; 4])>,
}

impl Tracker {
    pub fn assign(&mut self, instances: &mut [Instance]) {
        let mut pairs = Vec::new();
        for (i, inst) in instances.iter().enumerate() {
            for (j, (_, class, bbox)) in self.previous.iter().enumerate() {
                let iou = box_iou(&inst.bbox, bbox);
                if *class == inst.class && iou >= TRACK_IOU {
                    pairs.push((iou, i, j));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut taken = vec![false; self.previous.len()];
        let mut ids = vec![0u32; instances.len()];
        for (_, i, j) in pairs {
            if ids[i] == 0 && !taken[j] {
                ids[i] = self.previous[j].0;
                taken[j] = true;
            }
        }
        for (inst, id) in instances.iter_mut().zip(ids) {
            inst.id = if id != 0 {
                id
            } else {
                self.next += 1;
                self.next
            };
        }
        self.previous = instances.iter().map(|i| (i.id, i.class, i.bbox)).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(class: u32, bbox: [f32; 4]) -> Instance {
        Instance::solid(class, 0.9, bbox)
    }

    #[test]
    fn tracker_keeps_ids_of_moving_objects() {
        let mut t = Tracker::default();
        let mut a = vec![
            inst(3, [10.0, 10.0, 50.0, 50.0]),
            inst(1, [100.0, 10.0, 120.0, 60.0]),
        ];
        t.assign(&mut a);
        assert_eq!((a[0].id, a[1].id), (1, 2));
        // Both move a little and swap order; a new car appears; the person changes class.
        let mut b = vec![
            inst(1, [103.0, 12.0, 123.0, 62.0]),
            inst(3, [14.0, 10.0, 54.0, 50.0]),
            inst(3, [200.0, 200.0, 220.0, 220.0]),
        ];
        t.assign(&mut b);
        assert_eq!((b[0].id, b[1].id, b[2].id), (2, 1, 3));
        let mut c = vec![inst(3, [103.0, 12.0, 123.0, 62.0])];
        t.assign(&mut c);
        assert_eq!(c[0].id, 4);
    }
}
