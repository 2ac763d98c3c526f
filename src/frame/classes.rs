//! The class names (and colours) a pipeline's models use.

/// The 19 Cityscapes training classes by train id: the label space of the synthetic
/// scene's truth (`Frame::truth`, `Frame::truth_instances`).
pub const CITYSCAPES: [&str; 19] = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
];

/// Class names of a pipeline's semantic and instance models.
#[derive(Clone, Debug, Default)]
pub struct Classes {
    pub semantic: Vec<String>,
    pub instance: Vec<String>,
    /// Colours of the semantic classes, by class index.
    pub palette: Vec<[u8; 3]>,
}

impl Classes {
    /// The instance model's name for `class`, or `"class N"` for an index it does not name.
    pub fn instance_name(&self, class: u32) -> String {
        self.instance
            .get(class as usize)
            .cloned()
            .unwrap_or_else(|| format!("class {class}"))
    }

    /// For each instance class, the semantic class of the same name (case-insensitive):
    /// how Mask R-CNN's things land in DeepLabV3+'s label space.
    pub fn thing_classes(&self) -> Vec<Option<u8>> {
        self.instance
            .iter()
            .map(|name| {
                self.semantic
                    .iter()
                    .position(|s| s.eq_ignore_ascii_case(name))
                    .and_then(|i| u8::try_from(i).ok())
            })
            .collect()
    }
}
