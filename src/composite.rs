//! composite: class colours blended over the frame.
//!
//! `[[transforms]] type = "composite", alpha = 0.5`

use std::sync::Arc;

use opencv::core::{self, Mat, Vec3b};
use opencv::imgproc;

use crate::frame::{Frame, LabelMap, RgbImage};
use crate::runtime::{BoxError, Output, Stage};

pub struct Composite {
    alpha: f64,
    /// 256 RGB colours, one per possible class index, for `cv::LUT`.
    palette: Vec<Vec3b>,
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
        }
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
        if let Some(labels) = &frame.labels {
            frame.overlay = Some(Arc::new(self.blend(&frame.image, labels)?));
        }
        out.send(frame)?;
        Ok(())
    }
}
