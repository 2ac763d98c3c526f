//! Object instances (Mask R-CNN): one binary mask, box, class and score per object.
//!
//! Masks are kept inside their pixel bounding window rather than at frame size, so a frame
//! with a hundred small objects costs a hundred small buffers, not a hundred frames.

/// A binary mask stored within a pixel-aligned window of the frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mask {
    /// Left column of the window in the frame.
    pub x: u32,
    /// Top row of the window in the frame.
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// Row-major `width * height` values, 0 or 1.
    pub data: Vec<u8>,
}

impl Mask {
    /// An empty mask (no pixels set), as for a box that falls outside the frame.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Number of pixels set.
    pub fn area(&self) -> usize {
        self.data.iter().map(|&v| v as usize).sum()
    }

    /// Whether frame pixel (`x`, `y`) is set.
    pub fn get(&self, x: u32, y: u32) -> bool {
        x >= self.x
            && y >= self.y
            && x < self.x + self.width
            && y < self.y + self.height
            && self.data[((y - self.y) * self.width + (x - self.x)) as usize] != 0
    }
}

/// One detected object, in frame coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// Class index into the model's class names.
    pub class: u32,
    pub score: f32,
    /// `[x1, y1, x2, y2]` in frame pixels, continuous coordinates as the model gives them.
    pub bbox: [f32; 4],
    pub mask: Mask,
    /// Identity that stays the same from frame to frame for the same object (0 = unassigned).
    pub id: u32,
}

impl Instance {
    /// An untracked instance whose mask fills its box (rounded down to whole pixels).
    pub fn solid(class: u32, score: f32, bbox: [f32; 4]) -> Instance {
        let (x, y) = (bbox[0] as u32, bbox[1] as u32);
        let (w, h) = ((bbox[2] - bbox[0]) as u32, (bbox[3] - bbox[1]) as u32);
        Instance {
            class,
            score,
            bbox,
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
}
