//! Images and label maps: tightly packed pixel buffers.

/// A tightly packed 8-bit RGB image (`width * height * 3` bytes, no row padding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Self {
        assert_eq!(
            data.len(),
            width as usize * height as usize * 3,
            "RGB buffer size"
        );
        Self {
            width,
            height,
            data,
        }
    }

    pub fn pixels(&self) -> usize {
        self.width as usize * self.height as usize
    }
}

/// One class index per pixel (`width * height` bytes); models have at most 256 classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelMap {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl LabelMap {
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Self {
        assert_eq!(
            data.len(),
            width as usize * height as usize,
            "label buffer size"
        );
        Self {
            width,
            height,
            data,
        }
    }
}
