//! Mask pasting as torchvision does it, computed only where the result can be non-zero.
//!
//! `let mask = paste(&probs, 28, [x1, y1, x2, y2], 1920, 1080);`
//!
//! Mask R-CNN predicts a small (28x28) probability map per detection, relative to its box.
//! torchvision's `paste_masks_in_image` pads it by one pixel to 30x30, scales the box by
//! 30/28 about its centre, truncates the box to integers, resizes the padded map bilinearly
//! (half-pixel centres, `align_corners=False`) to the box's size and places it in the image;
//! the caller thresholds at 0.5. Here the same arithmetic (in `f32`, in PyTorch's order of
//! operations) runs only over the part of the box inside the frame, and the threshold is
//! fused, so a mask costs its box's area, not the frame's.

use super::Mask;

/// Mask probabilities above this are foreground (torchvision's convention: `mask > 0.5`).
pub const THRESHOLD: f32 = 0.5;

/// Pastes an `m`x`m` map of mask probabilities (row-major) into a `frame_width` x
/// `frame_height` frame for the box `[x1, y1, x2, y2]` (frame pixels). The result's window
/// is the part of the (expanded, integer) box inside the frame; it is empty when the box
/// lies outside the frame.
pub fn paste(probs: &[f32], m: usize, bbox: [f32; 4], frame_width: u32, frame_height: u32) -> Mask {
    assert_eq!(probs.len(), m * m, "mask probabilities must be m*m values");
    assert!(m > 0, "mask size must be at least 1");
    // expand_masks: one pixel of zeros on every side.
    let p = m + 2;
    let mut padded = vec![0f32; p * p];
    for (row, src) in padded[p + 1..].chunks_mut(p).zip(probs.chunks_exact(m)) {
        row[..m].copy_from_slice(src);
    }
    let scale = (p as f64 / m as f64) as f32;
    // expand_boxes, in float32 as torchvision computes it, then `.to(torch.int64)`
    // (truncation toward zero).
    let [x1, y1, x2, y2] = bbox;
    let w_half = (x2 - x1) * 0.5 * scale;
    let h_half = (y2 - y1) * 0.5 * scale;
    let x_c = (x2 + x1) * 0.5;
    let y_c = (y2 + y1) * 0.5;
    let bx0 = (x_c - w_half) as i64;
    let by0 = (y_c - h_half) as i64;
    let bx1 = (x_c + w_half) as i64;
    let by1 = (y_c + h_half) as i64;
    // paste_mask_in_image: TO_REMOVE = 1.
    let w = (bx1 - bx0 + 1).max(1);
    let h = (by1 - by0 + 1).max(1);
    let x0 = bx0.max(0);
    let x1 = (bx1 + 1).min(frame_width as i64);
    let y0 = by0.max(0);
    let y1 = (by1 + 1).min(frame_height as i64);
    if x1 <= x0 || y1 <= y0 {
        return Mask::empty();
    }
    // The window, in the resized box's own coordinates.
    let window = Window {
        x: (x0 - bx0) as u32,
        y: (y0 - by0) as u32,
        width: (x1 - x0) as u32,
        height: (y1 - y0) as u32,
    };
    let data = resize_threshold(&padded, p, p, w as u32, h as u32, window);
    Mask {
        x: x0 as u32,
        y: y0 as u32,
        width: window.width,
        height: window.height,
        data,
    }
}

/// A rectangle of output pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Source index pair and weights of one output coordinate, as PyTorch's CPU kernel computes
/// them (`area_pixel_compute_source_index`, `guard_index_and_lambda`).
#[derive(Clone, Copy)]
struct Tap {
    i0: usize,
    i1: usize,
    l0: f32,
    l1: f32,
}

fn taps(in_len: usize, out_len: u32, from: u32, count: u32) -> Vec<Tap> {
    let scale = in_len as f32 / out_len as f32;
    (from..from + count)
        .map(|d| {
            let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(in_len - 1);
            let l1 = (src - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < in_len - 1 { i0 + 1 } else { i0 };
            Tap {
                i0,
                i1,
                l0: 1.0 - l1,
                l1,
            }
        })
        .collect()
}

/// Resizes the `sw`x`sh` map `src` to `dw`x`dh` like
/// `F.interpolate(mode="bilinear", align_corners=False)`, evaluates only the output pixels in
/// `window`, and returns them thresholded (`> 0.5` gives 1), row-major.
///
/// Rows are interpolated first along x for every source row the window needs, then each
/// output row is the y-weighted sum of two of those rows; this is PyTorch's order of
/// operations (`(a*wx0 + b*wx1)*wy0 + (c*wx0 + d*wx1)*wy1`) and vectorizes.
pub fn resize_threshold(
    src: &[f32],
    sw: usize,
    sh: usize,
    dw: u32,
    dh: u32,
    window: Window,
) -> Vec<u8> {
    let (ww, wh) = (window.width as usize, window.height as usize);
    let mut out = vec![0u8; ww * wh];
    if ww == 0 || wh == 0 {
        return out;
    }
    let xs = taps(sw, dw, window.x, window.width);
    let ys = taps(sh, dh, window.y, window.height);
    let r0 = ys.iter().map(|t| t.i0).min().expect("window has rows");
    let r1 = ys.iter().map(|t| t.i1).max().expect("window has rows");
    // Every needed source row, interpolated along x over the window's columns.
    let mut rows = vec![0f32; (r1 - r0 + 1) * ww];
    for (r, row) in (r0..=r1).zip(rows.chunks_exact_mut(ww)) {
        let s = &src[r * sw..(r + 1) * sw];
        for (v, t) in row.iter_mut().zip(&xs) {
            *v = s[t.i0] * t.l0 + s[t.i1] * t.l1;
        }
    }
    for (line, t) in out.chunks_exact_mut(ww).zip(&ys) {
        let a = &rows[(t.i0 - r0) * ww..(t.i0 - r0 + 1) * ww];
        let b = &rows[(t.i1 - r0) * ww..(t.i1 - r0 + 1) * ww];
        for ((o, &a), &b) in line.iter_mut().zip(a).zip(b) {
            *o = (a * t.l0 + b * t.l1 > THRESHOLD) as u8;
        }
    }
    out
}

/// The frame window whose pixels can come out set when a `sw`x`sh` map is resized to
/// `dw`x`dh` and only source pixels in `set` (a window of the map) exceed the threshold:
/// bilinear weights are convex, so an output pixel above 0.5 has a source neighbour above it.
pub fn resized_window(sw: usize, sh: usize, dw: u32, dh: u32, set: Window) -> Window {
    let axis = |in_len: usize, out_len: u32, lo: u32, len: u32| -> (u32, u32) {
        // Output d reads source indices floor(s(d)) and floor(s(d)) + 1 with
        // s(d) = (d + 0.5) * in/out - 0.5: keep every d whose taps can touch [lo, lo+len).
        let k = out_len as f64 / in_len as f64;
        let first = (((lo as f64 - 1.0 + 0.5) * k - 0.5).floor() - 1.0).max(0.0) as u32;
        let last = ((((lo + len) as f64 + 0.5) * k - 0.5).ceil() + 1.0).min(out_len as f64) as u32;
        (first.min(out_len), last.max(first.min(out_len)))
    };
    let (x0, x1) = axis(sw, dw, set.x, set.width);
    let (y0, y1) = axis(sh, dh, set.y, set.height);
    Window {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    }
}

/// The smallest window of the `w`x`h` map (row-major) holding every value above the
/// threshold, or `None` when there is none.
pub fn set_window(map: &[f32], w: usize, h: usize) -> Option<Window> {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for (y, row) in map.chunks_exact(w).take(h).enumerate() {
        let Some(first) = row.iter().position(|&v| v > THRESHOLD) else {
            continue;
        };
        let last = row
            .iter()
            .rposition(|&v| v > THRESHOLD)
            .expect("first exists");
        x0 = x0.min(first);
        x1 = x1.max(last + 1);
        y0 = y0.min(y);
        y1 = y + 1;
    }
    (x1 > x0).then(|| Window {
        x: x0 as u32,
        y: y0 as u32,
        width: (x1 - x0) as u32,
        height: (y1 - y0) as u32,
    })
}

/// Thresholds the `window` of a `w`-wide map into a mask placed at frame position
/// (`window.x + dx`, `window.y + dy`).
pub fn crop_threshold(map: &[f32], w: usize, window: Window, dx: u32, dy: u32) -> Mask {
    let (ww, wh) = (window.width as usize, window.height as usize);
    let mut data = Vec::with_capacity(ww * wh);
    for y in window.y as usize..window.y as usize + wh {
        let row = &map[y * w + window.x as usize..y * w + window.x as usize + ww];
        data.extend(row.iter().map(|&v| (v > THRESHOLD) as u8));
    }
    Mask {
        x: window.x + dx,
        y: window.y + dy,
        width: window.width,
        height: window.height,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct per-pixel evaluation of the same formula over a whole frame, for cross-checks.
    fn resize_full(src: &[f32], sw: usize, sh: usize, dw: u32, dh: u32) -> Vec<u8> {
        resize_threshold(
            src,
            sw,
            sh,
            dw,
            dh,
            Window {
                x: 0,
                y: 0,
                width: dw,
                height: dh,
            },
        )
    }

    #[test]
    fn windows_are_parts_of_the_full_resize() {
        let src: Vec<f32> = (0..7 * 5).map(|i| ((i * 37) % 11) as f32 / 10.0).collect();
        let full = resize_full(&src, 7, 5, 23, 17);
        let win = Window {
            x: 4,
            y: 3,
            width: 11,
            height: 9,
        };
        let part = resize_threshold(&src, 7, 5, 23, 17, win);
        for y in 0..9 {
            for x in 0..11 {
                assert_eq!(part[y * 11 + x], full[(y + 3) * 23 + x + 4]);
            }
        }
    }

    #[test]
    fn resized_window_holds_every_set_pixel() {
        for (sw, sh, dw, dh) in [(40, 30, 97, 61), (64, 48, 20, 15), (30, 30, 30, 30)] {
            let mut src = vec![0f32; sw * sh];
            for y in 10..14 {
                for x in 5..9 {
                    src[y * sw + x] = 1.0;
                }
            }
            let set = set_window(&src, sw, sh).unwrap();
            assert_eq!(
                set,
                Window {
                    x: 5,
                    y: 10,
                    width: 4,
                    height: 4
                }
            );
            let win = resized_window(sw, sh, dw, dh, set);
            let full = resize_full(&src, sw, sh, dw, dh);
            let inside: usize = resize_threshold(&src, sw, sh, dw, dh, win)
                .iter()
                .map(|&v| v as usize)
                .sum();
            let all: usize = full.iter().map(|&v| v as usize).sum();
            assert!(all > 0);
            assert_eq!(inside, all, "{sw}x{sh} -> {dw}x{dh}: window {win:?}");
        }
    }

    #[test]
    fn boxes_outside_the_frame_give_empty_masks() {
        let probs = vec![1.0f32; 28 * 28];
        assert_eq!(
            paste(&probs, 28, [200.0, 10.0, 260.0, 40.0], 100, 80),
            Mask::empty()
        );
        assert_eq!(
            paste(&probs, 28, [-90.0, -60.0, -30.0, -20.0], 100, 80),
            Mask::empty()
        );
    }

    #[test]
    fn set_window_of_an_empty_map_is_none() {
        assert_eq!(set_window(&[0.0; 12], 4, 3), None);
    }
}
