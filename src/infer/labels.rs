//! Convention `labels`: the model does its own argmax and gives `[N, h, w]` (or
//! `[N, 1, h, w]`) class indices as int64 or int32. Checks the model's output against it and
//! reads it back.

use std::borrow::Cow;

use ort::value::{DynValue, TensorElementType, ValueType};

/// A batch of class indices, `[n, h, w]`.
pub struct Labels<'a> {
    pub data: Cow<'a, [i64]>,
    pub h: usize,
    pub w: usize,
}

impl Labels<'_> {
    /// Item `k` of the batch, `[h, w]`.
    pub fn item(&self, k: usize) -> &[i64] {
        &self.data[k * self.h * self.w..(k + 1) * self.h * self.w]
    }
}

/// What is wrong with the model's declared output `described` for this convention.
pub fn check(described: &str, ty: TensorElementType, shape: &[i64], problems: &mut Vec<String>) {
    if !(shape.len() == 3 || shape.len() == 4 && (shape[1] == 1 || shape[1] < 0)) {
        problems.push(format!(
            "output {described} should be [N, h, w] or [N, 1, h, w] class indices"
        ));
    }
    if !matches!(ty, TensorElementType::Int64 | TensorElementType::Int32) {
        problems.push(format!(
            "output {described} is {ty}, expected int64 or int32"
        ));
    }
}

/// Reads the class indices of `items` images from `value`.
pub fn read(value: &DynValue, items: usize) -> Result<Labels<'_>, String> {
    let (shape, data) = integers(value).map_err(|e| e.to_string())?;
    match shape[..] {
        [b, h, w] | [b, 1, h, w] if h > 0 && w > 0 && b as usize >= items => Ok(Labels {
            data,
            h: h as usize,
            w: w as usize,
        }),
        _ => Err(format!("unexpected shape {shape:?}")),
    }
}

/// An integer tensor's shape and values, int32 widened.
pub fn integers(value: &DynValue) -> Result<(Vec<i64>, Cow<'_, [i64]>), ort::Error> {
    if let ValueType::Tensor {
        ty: TensorElementType::Int32,
        ..
    } = value.dtype()
    {
        let (s, d) = value.try_extract_tensor::<i32>()?;
        return Ok((
            s.to_vec(),
            Cow::Owned(d.iter().map(|&v| v as i64).collect()),
        ));
    }
    let (s, d) = value.try_extract_tensor::<i64>()?;
    Ok((s.to_vec(), Cow::Borrowed(d)))
}
