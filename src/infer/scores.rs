//! Convention `logits` / `probabilities`: one `[N, classes, h, w]` float tensor of class
//! scores per batch. Checks the model's output against it and reads it back (half precision
//! widened, single precision borrowed from ONNX Runtime).

use std::borrow::Cow;

use half::f16;
use ort::value::{DynValue, TensorElementType, ValueType};

/// A batch of class scores, `[n, classes, h, w]`.
pub struct Scores<'a> {
    pub data: Cow<'a, [f32]>,
    pub classes: usize,
    pub h: usize,
    pub w: usize,
}

impl Scores<'_> {
    /// Item `k` of the batch, `[classes, h, w]`.
    pub fn item(&self, k: usize) -> &[f32] {
        let len = self.classes * self.h * self.w;
        &self.data[k * len..(k + 1) * len]
    }
}

/// What is wrong with the model's declared output `described` (type `ty`, shape `shape`)
/// for a config naming `classes` classes.
pub fn check(
    described: &str,
    ty: TensorElementType,
    shape: &[i64],
    classes: usize,
    problems: &mut Vec<String>,
) {
    if shape.len() != 4 {
        problems.push(format!(
            "output {described} has rank {} (expected 4: [N, classes, h, w])",
            shape.len()
        ));
    } else if shape[1] >= 0 && shape[1] as usize != classes {
        problems.push(format!(
            "output {described} has {} classes, but the config names {classes}",
            shape[1]
        ));
    }
    if !matches!(ty, TensorElementType::Float32 | TensorElementType::Float16) {
        problems.push(format!(
            "output {described} is {ty}, expected float32 or float16"
        ));
    }
}

/// Reads the scores of `items` images with `classes` classes from `value`.
pub fn read(value: &DynValue, classes: usize, items: usize) -> Result<Scores<'_>, String> {
    let (shape, data) = floats(value).map_err(|e| e.to_string())?;
    match shape[..] {
        [b, c, h, w] if c as usize == classes && h > 0 && w > 0 && b as usize >= items => {
            Ok(Scores {
                data,
                classes,
                h: h as usize,
                w: w as usize,
            })
        }
        _ => Err(format!("unexpected shape {shape:?}")),
    }
}

/// A float tensor's shape and values, half precision widened.
pub fn floats(value: &DynValue) -> Result<(Vec<i64>, Cow<'_, [f32]>), ort::Error> {
    if let ValueType::Tensor {
        ty: TensorElementType::Float16,
        ..
    } = value.dtype()
    {
        let (s, d) = value.try_extract_tensor::<f16>()?;
        return Ok((
            s.to_vec(),
            Cow::Owned(d.iter().map(|v| v.to_f32()).collect()),
        ));
    }
    let (s, d) = value.try_extract_tensor::<f32>()?;
    Ok((s.to_vec(), Cow::Borrowed(d)))
}
