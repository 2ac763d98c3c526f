//! composite: class colours blended over the frame, then each instance drawn on top.
//!
//! `[[transforms]] type = "composite", alpha = 0.5`
//!
//! Semantic labels are blended through a colour look-up table. Instances get the colour of
//! their id (which infer keeps from frame to frame for the same object), then their mask is
//! blended, outlined, boxed and labelled with the class name and score.

use std::sync::Arc;

use opencv::core::{self, Mat, Point, Rect, Scalar, Vec3b, Vector};
use opencv::imgproc;
use serde::Deserialize;

use crate::component::{BuildContext, CheckContext, Component, Need, TransformComponent, Workers};
use crate::config::Problems;
use crate::frame::{Classes, Facet, Facets, Frame, Instance, LabelMap, RgbImage};
use crate::runtime::{BoxError, Output, QueueConfig, Stage};

/// Blends class colours over the frame and draws the instances.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositeConfig {
    /// Opacity of the class colours, 0 (invisible) to 1 (opaque).
    #[serde(default = "default_alpha")]
    pub alpha: f32,
    #[serde(default)]
    pub queue: QueueConfig,
}

fn default_alpha() -> f32 {
    0.5
}

impl Component for CompositeConfig {
    fn check(&mut self, _cx: &CheckContext<'_>, p: &mut Problems) {
        p.range("alpha", self.alpha, 0.0, 1.0);
    }

    fn needs(&self) -> Vec<Need> {
        vec![Need::any(
            Facet::Labels | Facet::Instances,
            "composite needs an infer transform before it",
        )]
    }

    fn gives(&self) -> Facets {
        Facet::Overlay.into()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl TransformComponent for CompositeConfig {
    fn queue(&self) -> QueueConfig {
        self.queue
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Workers, BoxError> {
        let stage =
            Composite::new(self.alpha, &cx.classes.palette).with_classes(cx.classes.clone());
        Ok(Workers::one(Box::new(stage)))
    }
}

pub struct Composite {
    alpha: f64,
    /// 256 RGB colours, one per possible class index, for `cv::LUT`.
    palette: Vec<Vec3b>,
    classes: Arc<Classes>,
}

/// A bright colour for instance `id`, far from its neighbours' (golden-ratio hues).
pub fn instance_colour(id: u32) -> [u8; 3] {
    let hue = (id as f32 * 0.618_034).fract() * 6.0;
    let x = 1.0 - (hue % 2.0 - 1.0).abs();
    let (r, g, b) = match hue as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    let c = |v: f32| (55.0 + 200.0 * v) as u8;
    [c(r), c(g), c(b)]
}

impl Composite {
    pub fn new(alpha: f32, palette: &[[u8; 3]]) -> Self {
        let mut lut = vec![Vec3b::from([0, 0, 0]); 256];
        for (slot, c) in lut.iter_mut().zip(palette) {
            *slot = Vec3b::from(*c);
        }
        Composite {
            alpha: alpha as f64,
            palette: lut,
            classes: Arc::default(),
        }
    }

    /// Names the classes that instance labels show.
    pub fn with_classes(mut self, classes: Arc<Classes>) -> Self {
        self.classes = classes;
        self
    }

    /// Draws instances over `image` (already blended with semantic colours, if any): mask
    /// tinted in the instance's colour, its contour, its box and a "class score" label.
    pub fn draw_instances(
        &self,
        image: &mut RgbImage,
        instances: &[Instance],
    ) -> Result<(), opencv::Error> {
        let (w, h) = (image.width, image.height);
        let alpha = self.alpha as f32;
        let mut order: Vec<&Instance> = instances.iter().collect();
        order.sort_by(|a, b| a.score.total_cmp(&b.score));
        // Lines and text scale with the frame: 2 px and 0.8 at 720p.
        let thickness = ((w.min(h) as f32 / 360.0).round() as i32).max(1);
        let font_scale = 0.4 * thickness as f64;
        for inst in &order {
            let colour = instance_colour(inst.id.max(1));
            let m = &inst.mask;
            let len = (m.x + m.width).min(w).saturating_sub(m.x) as usize;
            for y in m.y..(m.y + m.height).min(h) {
                let src = &m.data[((y - m.y) * m.width) as usize..][..len];
                let row = &mut image.data[((y * w + m.x) * 3) as usize..][..len * 3];
                for (px, &on) in row.chunks_exact_mut(3).zip(src) {
                    if on != 0 {
                        for (v, c) in px.iter_mut().zip(colour) {
                            *v = (*v as f32 * (1.0 - alpha) + c as f32 * alpha + 0.5) as u8;
                        }
                    }
                }
            }
        }
        let mut frame =
            Mat::new_rows_cols_with_bytes_mut::<Vec3b>(h as i32, w as i32, &mut image.data)?;
        for inst in &order {
            let [r, g, b] = instance_colour(inst.id.max(1));
            let colour = Scalar::new(r as f64, g as f64, b as f64, 0.0);
            let m = &inst.mask;
            if m.width > 0 && m.height > 0 {
                let window =
                    Mat::new_rows_cols_with_bytes::<u8>(m.height as i32, m.width as i32, &m.data)?;
                let mut contours = Vector::<Vector<Point>>::new();
                imgproc::find_contours(
                    &window,
                    &mut contours,
                    imgproc::RETR_EXTERNAL,
                    imgproc::CHAIN_APPROX_SIMPLE,
                    Point::new(m.x as i32, m.y as i32),
                )?;
                imgproc::draw_contours(
                    &mut frame,
                    &contours,
                    -1,
                    colour,
                    thickness,
                    imgproc::LINE_8,
                    &core::no_array(),
                    i32::MAX,
                    Point::default(),
                )?;
            }
            let [x1, y1, x2, y2] = inst.bbox;
            let rect = Rect::new(
                x1.round() as i32,
                y1.round() as i32,
                ((x2 - x1).round() as i32).max(1),
                ((y2 - y1).round() as i32).max(1),
            );
            imgproc::rectangle(&mut frame, rect, colour, thickness, imgproc::LINE_8, 0)?;
            let text = format!(
                "{} {:.2}",
                self.classes.instance_name(inst.class),
                inst.score
            );
            let font = imgproc::FONT_HERSHEY_SIMPLEX;
            let mut baseline = 0;
            let size = imgproc::get_text_size(
                &text,
                font,
                font_scale,
                (thickness + 1) / 2,
                &mut baseline,
            )?;
            // Above the box when there is room, else inside its top edge.
            let top = if rect.y >= size.height + baseline + thickness {
                rect.y - size.height - baseline - thickness
            } else {
                rect.y.max(0)
            };
            let label = Rect::new(
                rect.x.max(0),
                top,
                size.width + 2 * thickness,
                size.height + baseline + thickness,
            );
            imgproc::rectangle(
                &mut frame,
                label,
                colour,
                imgproc::FILLED,
                imgproc::LINE_8,
                0,
            )?;
            imgproc::put_text(
                &mut frame,
                &text,
                Point::new(label.x + thickness, label.y + size.height + thickness / 2),
                font,
                font_scale,
                Scalar::new(0.0, 0.0, 0.0, 0.0),
                (thickness + 1) / 2,
                imgproc::LINE_AA,
                false,
            )?;
        }
        Ok(())
    }

    /// `image * (1 - alpha) + palette[labels] * alpha`.
    pub fn blend(&self, image: &RgbImage, labels: &LabelMap) -> Result<RgbImage, opencv::Error> {
        let (w, h) = (image.width as i32, image.height as i32);
        if (labels.width, labels.height) != (image.width, image.height) {
            return Err(opencv::Error::new(
                core::StsUnmatchedSizes,
                format!(
                    "label map is {}x{} but the frame is {w}x{h}",
                    labels.width, labels.height
                ),
            ));
        }
        let frame = Mat::new_rows_cols_with_bytes::<Vec3b>(h, w, &image.data)?;
        let labels = Mat::new_rows_cols_with_bytes::<u8>(h, w, &labels.data)?;
        let mut labels3 = Mat::default();
        imgproc::cvt_color_def(&labels, &mut labels3, imgproc::COLOR_GRAY2RGB)?;
        let lut = Mat::from_slice(&self.palette)?;
        let mut colours = Mat::default();
        core::lut(&labels3, &lut, &mut colours)?;
        let mut data = vec![0u8; image.data.len()];
        {
            let mut out = Mat::new_rows_cols_with_bytes_mut::<Vec3b>(h, w, &mut data)?;
            core::add_weighted_def(
                &frame,
                1.0 - self.alpha,
                &colours,
                self.alpha,
                0.0,
                &mut out,
            )?;
        }
        Ok(RgbImage::new(image.width, image.height, data))
    }
}

impl Stage for Composite {
    fn process(&mut self, mut frame: Frame, out: &mut Output) -> Result<(), BoxError> {
        let blended = match &frame.labels {
            Some(labels) => Some(self.blend(&frame.image, labels)?),
            None => None,
        };
        if let Some(instances) = frame.instances.as_mut() {
            let mut image = blended.unwrap_or_else(|| (*frame.image).clone());
            self.draw_instances(&mut image, instances)?;
            frame.overlay = Some(Arc::new(image));
        } else if let Some(image) = blended {
            frame.overlay = Some(Arc::new(image));
        }
        out.send(frame)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(class: u32, bbox: [f32; 4]) -> Instance {
        Instance::solid(class, 0.9, bbox)
    }

    #[test]
    fn instances_are_tinted_outlined_and_boxed() {
        let composite = Composite::new(0.5, &[]);
        let mut image = RgbImage::new(64, 48, vec![100; 64 * 48 * 3]);
        let mut i = inst(1, [20.0, 20.0, 40.0, 40.0]);
        i.id = 7;
        composite.draw_instances(&mut image, &[i]).unwrap();
        let px = |x: usize, y: usize| &image.data[(y * 64 + x) * 3..][..3];
        let [r, g, b] = instance_colour(7);
        let tint = |c: u8| ((100.0 * 0.5 + c as f32 * 0.5) + 0.5) as u8;
        // Inside the mask, away from the outline: tinted.
        assert_eq!(px(30, 30), &[tint(r), tint(g), tint(b)]);
        // The box's left edge is drawn in the instance's colour.
        assert_eq!(px(20, 38), &[r, g, b]);
        // Far from everything: untouched.
        assert_eq!(px(5, 45), &[100, 100, 100]);
        assert_eq!(px(60, 45), &[100, 100, 100]);
    }
}
