//! A synthetic driving scene with its exact label map: ground truth without a data set.
//!
//! `[source] type = "synthetic", width = 640, height = 360, frames = 300, seed = 7`
//!
//! Road with moving lane dashes, sidewalks, terrain, buildings with windows, sky, trees,
//! poles with signs, cars driving across and pedestrians walking, drawn back to front. Every
//! pixel's colour and its Cityscapes train id are written together, so the truth is exact;
//! cars and pedestrians are things, and each pixel of one also records which object it is,
//! so the frame carries its true instances too (`Frame::truth_instances`: exact masks after
//! occlusion, in drawing order). Seeded and deterministic: the same seed and frame index
//! always give the same picture.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::component::{BuildContext, CheckContext, Component, SourceComponent};
use crate::config::Problems;
use crate::frame::{Facet, Facets, Frame, Instance, LabelMap, Mask, RgbImage};
use crate::runtime::{BoxError, Output, Source};

/// Cityscapes train ids used by the scene.
pub mod class {
    pub const ROAD: u8 = 0;
    pub const SIDEWALK: u8 = 1;
    pub const BUILDING: u8 = 2;
    pub const POLE: u8 = 5;
    pub const TRAFFIC_SIGN: u8 = 7;
    pub const VEGETATION: u8 = 8;
    pub const TERRAIN: u8 = 9;
    pub const SKY: u8 = 10;
    pub const PERSON: u8 = 11;
    pub const CAR: u8 = 13;
}

/// SplitMix64: small, seedable, good enough for scene parameters.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

struct Canvas {
    w: i32,
    h: i32,
    rgb: Vec<u8>,
    labels: Vec<u8>,
    /// Per pixel, the object drawn there: 0 for stuff, else its number from 1.
    objects: Vec<u8>,
    /// The object now being drawn (0 while drawing stuff) and its class.
    object: u8,
    things: Vec<u8>,
    seed: u64,
}

impl Canvas {
    /// Paints pixel (x, y) with `colour` (plus a little texture) and `label`.
    fn put(&mut self, x: i32, y: i32, colour: [u8; 3], label: u8) {
        if x < 0 || y < 0 || x >= self.w || y >= self.h {
            return;
        }
        let i = (y * self.w + x) as usize;
        // Per-pixel texture, fixed per position so surfaces look still as objects move.
        let n =
            (x as u64).wrapping_mul(73_856_093) ^ (y as u64).wrapping_mul(19_349_663) ^ self.seed;
        let noise = (Rng(n).next() % 17) as i16 - 8;
        for (dst, &v) in self.rgb[i * 3..i * 3 + 3].iter_mut().zip(&colour) {
            *dst = (v as i16 + noise).clamp(0, 255) as u8;
        }
        self.labels[i] = label;
        self.objects[i] = self.object;
    }

    /// Starts a new thing of `class`: what is drawn until the next call belongs to it.
    fn begin_thing(&mut self, class: u8) {
        self.things.push(class);
        self.object = self.things.len() as u8;
    }

    /// Each thing's exact mask (what is left of it after occlusion) and its pixel box;
    /// things hidden entirely are left out.
    fn instances(&self) -> Vec<Instance> {
        let n = self.things.len();
        let (mut x0, mut y0) = (vec![i32::MAX; n], vec![i32::MAX; n]);
        let (mut x1, mut y1) = (vec![-1i32; n], vec![-1i32; n]);
        for y in 0..self.h {
            for x in 0..self.w {
                let o = self.objects[(y * self.w + x) as usize] as usize;
                if o > 0 {
                    let k = o - 1;
                    x0[k] = x0[k].min(x);
                    y0[k] = y0[k].min(y);
                    x1[k] = x1[k].max(x);
                    y1[k] = y1[k].max(y);
                }
            }
        }
        (0..n)
            .filter(|&k| x1[k] >= 0)
            .map(|k| {
                let (width, height) = ((x1[k] - x0[k] + 1) as u32, (y1[k] - y0[k] + 1) as u32);
                let mut data = Vec::with_capacity((width * height) as usize);
                for y in y0[k]..=y1[k] {
                    let row = (y * self.w) as usize;
                    data.extend(
                        self.objects[row + x0[k] as usize..=row + x1[k] as usize]
                            .iter()
                            .map(|&o| u8::from(o as usize == k + 1)),
                    );
                }
                Instance {
                    class: self.things[k] as u32,
                    score: 1.0,
                    bbox: [
                        x0[k] as f32,
                        y0[k] as f32,
                        x1[k] as f32 + 1.0,
                        y1[k] as f32 + 1.0,
                    ],
                    mask: Mask {
                        x: x0[k] as u32,
                        y: y0[k] as u32,
                        width,
                        height,
                        data,
                    },
                    id: k as u32 + 1,
                }
            })
            .collect()
    }

    fn rect(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, colour: [u8; 3], label: u8) {
        for y in y0.round() as i32..y1.round() as i32 {
            for x in x0.round() as i32..x1.round() as i32 {
                self.put(x, y, colour, label);
            }
        }
    }

    fn circle(&mut self, cx: f32, cy: f32, r: f32, colour: [u8; 3], label: u8) {
        for y in (cy - r).floor() as i32..=(cy + r).ceil() as i32 {
            for x in (cx - r).floor() as i32..=(cx + r).ceil() as i32 {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                if dx * dx + dy * dy <= r * r {
                    self.put(x, y, colour, label);
                }
            }
        }
    }
}

/// Renders frame `t` of the scene for `seed`: the picture and its label map.
pub fn render(width: u32, height: u32, seed: u64, t: u64) -> (RgbImage, LabelMap) {
    let scene = render_scene(width, height, seed, t);
    (scene.image, scene.labels)
}

/// One rendered frame and its truth.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    pub image: RgbImage,
    /// Cityscapes train id per pixel.
    pub labels: LabelMap,
    /// The visible cars and pedestrians: class (train id), score 1, pixel box, exact mask,
    /// and `id` the object's number in the scene (the same object keeps it from frame to
    /// frame while it stays in view).
    pub instances: Vec<Instance>,
}

/// Renders frame `t` of the scene for `seed`, with its instances.
pub fn render_scene(width: u32, height: u32, seed: u64, t: u64) -> Scene {
    let (w, h) = (width as f32, height as f32);
    let mut c = Canvas {
        w: width as i32,
        h: height as i32,
        rgb: vec![0; (width * height * 3) as usize],
        labels: vec![0; (width * height) as usize],
        objects: vec![0; (width * height) as usize],
        object: 0,
        things: Vec::new(),
        seed,
    };
    let mut rng = Rng(seed ^ 0x5EED);
    let horizon = h * rng.range(0.40, 0.48);
    let t = t as f32;

    // Sky: a vertical gradient.
    for y in 0..horizon.ceil() as i32 {
        let f = y as f32 / horizon.max(1.0);
        let colour = [
            (90.0 + 80.0 * f) as u8,
            (140.0 + 60.0 * f) as u8,
            (210.0 + 30.0 * f) as u8,
        ];
        for x in 0..c.w {
            c.put(x, y, colour, class::SKY);
        }
    }
    // Buildings along the horizon, with windows.
    let mut x = -rng.range(0.0, 0.1) * w;
    while x < w {
        let bw = w * rng.range(0.08, 0.2);
        let top = horizon * rng.range(0.15, 0.7);
        let shade = rng.range(70.0, 170.0);
        let colour = [shade as u8, (shade * 0.95) as u8, (shade * 0.9) as u8];
        c.rect(x, top, x + bw, horizon + h * 0.04, colour, class::BUILDING);
        let (win_w, win_h) = (bw / 7.0, (horizon - top) / 9.0);
        for row in 0..4 {
            for col in 0..3 {
                let wx = x + win_w * (1.0 + 2.0 * col as f32);
                let wy = top + win_h * (1.0 + 2.0 * row as f32);
                if wy + win_h < horizon {
                    c.rect(
                        wx,
                        wy,
                        wx + win_w,
                        wy + win_h,
                        [40, 50, 70],
                        class::BUILDING,
                    );
                }
            }
        }
        x += bw + w * rng.range(0.0, 0.03);
    }
    // Ground: terrain, then sidewalks and the road as trapezoids towards a vanishing point.
    let vanish = w * rng.range(0.45, 0.55);
    for y in horizon.ceil() as i32..c.h {
        let f = (y as f32 - horizon) / (h - horizon); // 0 at the horizon, 1 at the bottom
        let road = (vanish - f * w * 0.42, vanish + f * w * 0.42);
        let walk = (road.0 - f * w * 0.12, road.1 + f * w * 0.12);
        for x in 0..c.w {
            let xf = x as f32 + 0.5;
            let (colour, label) = if xf >= road.0 && xf < road.1 {
                ([90, 90, 95], class::ROAD)
            } else if xf >= walk.0 && xf < walk.1 {
                ([175, 165, 160], class::SIDEWALK)
            } else {
                ([110, 150, 70], class::TERRAIN)
            };
            c.put(x, y, colour, label);
        }
        // Lane dashes move towards the viewer (they are road).
        let phase = ((f * 12.0 + t * 0.15) % 2.0) < 1.0;
        if phase {
            let half = (f * w * 0.008).max(0.5);
            c.rect(
                vanish - half,
                y as f32,
                vanish + half,
                y as f32 + 1.0,
                [235, 235, 225],
                class::ROAD,
            );
        }
    }
    // Poles with signs, and trees, along both sidewalks.
    for side in [-1.0f32, 1.0] {
        for k in 0..3 {
            let f = 0.25 + 0.25 * k as f32 + rng.range(-0.05, 0.05);
            let base_y = horizon + f * (h - horizon);
            let base_x = vanish + side * f * w * 0.48;
            let scale = f * h;
            if k % 2 == 0 {
                let pw = (scale * 0.015).max(1.0);
                c.rect(
                    base_x - pw,
                    base_y - scale * 0.6,
                    base_x + pw,
                    base_y,
                    [120, 120, 120],
                    class::POLE,
                );
                let s = scale * 0.07;
                c.rect(
                    base_x - s,
                    base_y - scale * 0.6,
                    base_x + s,
                    base_y - scale * 0.6 + s * 1.2,
                    [230, 200, 20],
                    class::TRAFFIC_SIGN,
                );
            } else {
                let tw = (scale * 0.03).max(1.0);
                c.rect(
                    base_x - tw,
                    base_y - scale * 0.35,
                    base_x + tw,
                    base_y,
                    [100, 70, 40],
                    class::VEGETATION,
                );
                let shade = rng.range(80.0, 130.0) as u8;
                c.circle(
                    base_x,
                    base_y - scale * 0.45,
                    scale * 0.16,
                    [40, shade, 35],
                    class::VEGETATION,
                );
            }
        }
    }
    // Cars driving across at different depths, wrapping around.
    for lane in 0..3 {
        let f = 0.3 + 0.3 * lane as f32;
        let y = horizon + f * (h - horizon);
        let (cw, ch) = (f * w * 0.22, f * h * 0.16);
        let speed = rng.range(1.5, 4.0) * f * (if lane % 2 == 0 { 1.0 } else { -1.0 });
        let span = w + cw;
        let x = (rng.range(0.0, span) + speed * t).rem_euclid(span) - cw;
        let body = [
            rng.range(30.0, 220.0) as u8,
            rng.range(30.0, 220.0) as u8,
            rng.range(30.0, 220.0) as u8,
        ];
        c.begin_thing(class::CAR);
        c.rect(x, y - ch, x + cw, y - ch * 0.35, body, class::CAR);
        c.rect(
            x + cw * 0.2,
            y - ch * 1.35,
            x + cw * 0.8,
            y - ch * 0.95,
            body,
            class::CAR,
        );
        c.rect(
            x + cw * 0.25,
            y - ch * 1.3,
            x + cw * 0.75,
            y - ch,
            [60, 80, 100],
            class::CAR,
        );
        for wx in [x + cw * 0.2, x + cw * 0.8] {
            c.circle(wx, y - ch * 0.3, ch * 0.28, [25, 25, 25], class::CAR);
        }
    }
    // Pedestrians walking along the sidewalks.
    for side in [-1.0f32, 1.0] {
        let f = rng.range(0.45, 0.85);
        let base_y = horizon + f * (h - horizon);
        let scale = f * h;
        let walk = ((t * 0.004 * scale / h + rng.range(0.0, 1.0)) % 1.0) * 0.1;
        let x = vanish + side * (f * w * (0.44 + walk));
        let shirt = [
            rng.range(60.0, 230.0) as u8,
            rng.range(30.0, 120.0) as u8,
            rng.range(30.0, 200.0) as u8,
        ];
        c.begin_thing(class::PERSON);
        c.rect(
            x - scale * 0.03,
            base_y - scale * 0.28,
            x + scale * 0.03,
            base_y - scale * 0.12,
            shirt,
            class::PERSON,
        );
        c.rect(
            x - scale * 0.025,
            base_y - scale * 0.12,
            x + scale * 0.025,
            base_y,
            [40, 40, 70],
            class::PERSON,
        );
        c.circle(
            x,
            base_y - scale * 0.31,
            scale * 0.028,
            [225, 185, 150],
            class::PERSON,
        );
    }
    let instances = c.instances();
    Scene {
        image: RgbImage::new(width, height, c.rgb),
        labels: LabelMap::new(width, height, c.labels),
        instances,
    }
}

/// The synthetic source: frames with their truth attached.
pub struct Synthetic {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub frames: u64,
    pub seed: u64,
    /// The scene time of the first frame.
    pub start: u64,
}

impl Source for Synthetic {
    fn run(&mut self, out: &mut Output) -> Result<(), BoxError> {
        for seq in 0..self.frames {
            if out.stop_requested() {
                break;
            }
            let scene = render_scene(self.width, self.height, self.seed, self.start + seq);
            let mut frame = Frame::new(0, seq, scene.image);
            frame.pts = Some(Duration::from_secs_f64(seq as f64 / self.fps as f64));
            frame.rate = Some((self.fps as i32, 1));
            frame.truth = Some(Arc::new(scene.labels));
            frame.truth_instances = Some(Arc::new(scene.instances));
            out.send(frame)?;
        }
        Ok(())
    }
}

/// The `synthetic` source's settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_fps")]
    pub fps: u32,
    /// Number of frames before end of stream.
    #[serde(default = "default_frames")]
    pub frames: u64,
    #[serde(default)]
    pub seed: u64,
    /// The scene time of the first frame: frame k shows what frame `start + k` of the same
    /// seed shows (sequence numbers still count from 0), so one late frame costs one.
    #[serde(default)]
    pub start: u64,
}

fn default_width() -> u32 {
    640
}
fn default_height() -> u32 {
    360
}
fn default_fps() -> u32 {
    30
}
fn default_frames() -> u64 {
    300
}

/// Frame size and rate of the generated sources (`test`, `synthetic`).
pub fn check_generated(p: &mut Problems, width: u32, height: u32, fps: u32) {
    p.range("width", width, 16, 8192);
    p.range("height", height, 16, 8192);
    p.range("fps", fps, 1, 1000);
}

impl Component for SyntheticConfig {
    fn check(&mut self, _cx: &CheckContext<'_>, p: &mut Problems) {
        check_generated(p, self.width, self.height, self.fps);
        if self.frames == 0 {
            p.push("frames", "0 is out of range (expected at least 1)");
        }
        p.range("start", self.start, 0, 1 << 40);
    }

    fn gives(&self) -> Facets {
        Facet::Truth.into()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SourceComponent for SyntheticConfig {
    fn from_input(input: &str) -> Option<Result<Self, String>> {
        let seed = input.strip_prefix("synthetic:")?;
        Some(
            seed.parse()
                .map(|seed| SyntheticConfig {
                    width: default_width(),
                    height: default_height(),
                    fps: default_fps(),
                    frames: default_frames(),
                    seed,
                    start: 0,
                })
                .map_err(|_| {
                    format!("{input}: {seed:?} is not a seed (expected synthetic:N, N from 0)")
                }),
        )
    }

    fn keep_settings_of(&mut self, file: &dyn SourceComponent) {
        if let Some(f) = file.as_any().downcast_ref::<SyntheticConfig>() {
            *self = SyntheticConfig {
                seed: self.seed,
                ..f.clone()
            };
        }
    }

    fn is_live(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("synthetic:{}", self.seed)
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, BoxError> {
        Ok(Box::new(Synthetic {
            width: self.width,
            height: self.height,
            fps: self.fps,
            frames: cx.frames.map_or(self.frames, |f| f.min(self.frames)),
            seed: self.seed,
            start: self.start,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_per_seed_and_frame() {
        let a = render(160, 96, 7, 3);
        assert_eq!(a, render(160, 96, 7, 3));
        assert_ne!(a.1, render(160, 96, 8, 3).1, "another seed, another scene");
        assert_ne!(a.1, render(160, 96, 7, 30).1, "things move");
    }

    #[test]
    fn the_scene_has_its_classes() {
        let (_, truth) = render(320, 180, 1, 0);
        let mut count = [0usize; 256];
        for &l in &truth.data {
            count[l as usize] += 1;
        }
        for c in [
            class::ROAD,
            class::SIDEWALK,
            class::BUILDING,
            class::SKY,
            class::CAR,
            class::PERSON,
            class::VEGETATION,
        ] {
            assert!(count[c as usize] > 0, "class {c} missing");
        }
        let allowed = [0, 1, 2, 5, 7, 8, 9, 10, 11, 13];
        assert!(truth.data.iter().all(|l| allowed.contains(l)));
    }

    /// The instances tile the thing pixels of the label map exactly: every car and person
    /// pixel belongs to exactly one instance of that class, and no other pixel to any.
    #[test]
    fn instances_cover_the_things_exactly() {
        let (mut people, mut cars) = (0, 0);
        for seed in 0..20 {
            let scene = render_scene(320, 180, seed, seed * 7);
            let labels = &scene.labels;
            let mut owner = vec![0u32; labels.data.len()];
            for inst in &scene.instances {
                assert!(inst.mask.area() > 0);
                let m = &inst.mask;
                assert_eq!(
                    inst.bbox,
                    [
                        m.x as f32,
                        m.y as f32,
                        (m.x + m.width) as f32,
                        (m.y + m.height) as f32
                    ]
                );
                for y in m.y..m.y + m.height {
                    for x in m.x..m.x + m.width {
                        if m.get(x, y) {
                            let i = (y * labels.width + x) as usize;
                            assert_eq!(owner[i], 0, "two instances on one pixel");
                            owner[i] = inst.id;
                            assert_eq!(labels.data[i] as u32, inst.class);
                        }
                    }
                }
            }
            for (i, &l) in labels.data.iter().enumerate() {
                let thing = l == class::CAR || l == class::PERSON;
                assert_eq!(thing, owner[i] != 0, "seed {seed}, pixel {i}");
            }
            people += scene
                .instances
                .iter()
                .filter(|i| i.class == class::PERSON as u32)
                .count();
            cars += scene
                .instances
                .iter()
                .filter(|i| i.class == class::CAR as u32)
                .count();
        }
        assert!(
            (36..=40).contains(&people),
            "{people} pedestrians in 20 scenes"
        );
        assert!((30..=60).contains(&cars), "{cars} cars in 20 scenes");
    }
}
