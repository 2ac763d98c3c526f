//! Frame buffers reused between frames, and copying a sample's pixels into one.

use std::sync::Arc;

use gstreamer as gst;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use super::yuv::{self, Chroma, Colour, Layout};
use crate::frame::{Nv12Image, RgbImage};
use yuvutils_rs::{YuvRange, YuvStandardMatrix};

/// Frame buffers the pipeline has finished with, reused for the next frames: a long run
/// does not allocate (and fault in) a frame-sized buffer per frame.
#[derive(Default)]
pub(super) struct ImagePool {
    /// Images sent downstream, oldest first; one whose only owner is the pool is free.
    sent: std::collections::VecDeque<Arc<RgbImage>>,
}

/// Free buffers kept at most; more would only hold memory.
const POOL_FREE: usize = 3;

impl ImagePool {
    /// A free buffer, if there is one, with its old contents (to be overwritten: a frame of
    /// the same size then needs no clearing).
    pub(super) fn take(&mut self) -> Vec<u8> {
        let free = self.sent.iter().position(|a| Arc::strong_count(a) == 1);
        free.and_then(|i| self.sent.remove(i))
            .and_then(|a| Arc::try_unwrap(a).ok())
            .map(|image| image.data)
            .unwrap_or_default()
    }

    /// Remembers an image sent downstream; lets go of the oldest free ones beyond a few.
    pub(super) fn sent(&mut self, image: Arc<RgbImage>) {
        self.sent.push_back(image);
        let mut free = self
            .sent
            .iter()
            .filter(|a| Arc::strong_count(a) == 1)
            .count();
        while free > POOL_FREE {
            if let Some(i) = self.sent.iter().position(|a| Arc::strong_count(a) == 1) {
                self.sent.remove(i);
            }
            free -= 1;
        }
    }
}

/// Copies a sample's pixels into `data` (reused; its contents are overwritten) as a tightly packed RGB image:
/// RGB rows as they are (GStreamer pads rows to 4 bytes), the decoder's I420 or NV12
/// (or JPEG's Y42B, Y444) converted by [`super::yuv`] with the colorimetry its caps state.
/// With `nv12`, the decoder's 4:2:0 planes are also kept as they are, packed
/// ([`yuv::to_nv12`]).
pub(super) fn to_image(
    sample: &gst::Sample,
    mut data: Vec<u8>,
    nv12: bool,
) -> Result<Decoded, String> {
    let caps = sample.caps().ok_or("sample without caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| e.to_string())?;
    let buffer = sample.buffer().ok_or("sample without buffer")?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|_| "cannot map video buffer".to_string())?;
    let (w, h) = (info.width() as usize, info.height() as usize);
    let plane = |i: u32| -> Result<(&[u8], usize), String> {
        let data = frame.plane_data(i).map_err(|e| e.to_string())?;
        Ok((data, frame.plane_stride()[i as usize] as usize))
    };
    let mut yuv_planes = None;
    match info.format() {
        format @ (gst_video::VideoFormat::I420
        | gst_video::VideoFormat::Y42b
        | gst_video::VideoFormat::Y444) => {
            let chroma = match format {
                gst_video::VideoFormat::I420 => Chroma::Half,
                gst_video::VideoFormat::Y42b => Chroma::HalfWidth,
                _ => Chroma::Full,
            };
            let layout = Layout::Planar {
                y: plane(0)?,
                u: plane(1)?,
                v: plane(2)?,
                chroma,
            };
            yuv::to_rgb(layout, w, h, colour(&info), &mut data)?;
            if nv12 {
                yuv_planes = yuv::to_nv12(layout, w, h, colour(&info));
            }
        }
        gst_video::VideoFormat::Nv12 => {
            let layout = Layout::Nv12 {
                y: plane(0)?,
                uv: plane(1)?,
            };
            yuv::to_rgb(layout, w, h, colour(&info), &mut data)?;
            if nv12 {
                yuv_planes = yuv::to_nv12(layout, w, h, colour(&info));
            }
        }
        gst_video::VideoFormat::Rgb => {
            let (plane, stride) = plane(0)?;
            data.clear();
            data.reserve(w * h * 3);
            for row in 0..h {
                data.extend_from_slice(&plane[row * stride..row * stride + w * 3]);
            }
        }
        other => {
            return Err(format!(
                "unexpected pixel format {other:?} from the decoder"
            ))
        }
    }
    let fps = info.fps();
    // A rate above 1000 fps is a placeholder, not a rate: H.264 from encoders that were told
    // "variable" (framerate 0/1) carries 1000000000/1 in its timing info.
    let plausible =
        fps.numer() > 0 && fps.denom() > 0 && fps.numer() as f64 / fps.denom() as f64 <= 1000.0;
    let rate = plausible.then(|| (fps.numer(), fps.denom()));
    Ok(Decoded {
        image: RgbImage::new(w as u32, h as u32, data),
        nv12: yuv_planes,
        rate,
    })
}

/// One sample's pixels.
pub(super) struct Decoded {
    pub image: RgbImage,
    /// The decoder's planes as NV12, when asked for and the format has them (4:2:0).
    pub nv12: Option<Nv12Image>,
    /// The stream's frame rate, when it states a plausible one.
    pub rate: Option<(i32, i32)>,
}

/// The matrix and range the caps state (GStreamer fills in its defaults by frame size when
/// the stream says nothing: BT.601 for SD, BT.709 for HD).
fn colour(info: &gst_video::VideoInfo) -> Colour {
    use gst_video::{VideoColorMatrix as M, VideoColorRange as R};
    let c = info.colorimetry();
    let matrix = match c.matrix() {
        M::Bt709 => YuvStandardMatrix::Bt709,
        M::Bt2020 => YuvStandardMatrix::Bt2020,
        M::Smpte240m => YuvStandardMatrix::Smpte240,
        M::Fcc => YuvStandardMatrix::Custom(0.30, 0.11),
        M::Bt601 => YuvStandardMatrix::Bt601,
        _ if info.height() >= 720 => YuvStandardMatrix::Bt709,
        _ => YuvStandardMatrix::Bt601,
    };
    let range = match c.range() {
        R::Range0_255 => YuvRange::Full,
        _ => YuvRange::Limited,
    };
    Colour { matrix, range }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_buffers_the_pipeline_let_go_of() {
        let mut pool = ImagePool::default();
        let a = Arc::new(RgbImage::new(2, 1, vec![1; 6]));
        let ptr = a.data.as_ptr();
        pool.sent(a.clone());
        // Still held downstream: not free.
        assert!(pool.take().is_empty() && pool.take().capacity() == 0);
        drop(a);
        let reused = pool.take();
        assert_eq!((reused.len(), reused.as_ptr()), (6, ptr));
        // Free buffers beyond a few are let go.
        for _ in 0..10 {
            pool.sent(Arc::new(RgbImage::new(2, 1, vec![0; 6])));
        }
        assert_eq!(pool.sent.len(), POOL_FREE);
    }
}
