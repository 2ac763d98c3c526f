//! infer: runs a semantic segmentation model on every frame and attaches its label map.
//!
//! `[[transforms]] type = "infer", model = "deeplabv3plus_mobilenet_v2"`
//!
//! One ONNX Runtime session per stage, created on the stage's thread.

mod postprocess;
mod preprocess;
mod session;

pub use postprocess::{argmax_scores, resample_labels};
pub use preprocess::{preprocess, Geometry};
pub use session::{check_model, environment, library_candidates, open_session, provider_name};

use std::sync::Arc;

use ort::session::Session;
use ort::value::{Tensor, TensorElementType, ValueType};

use crate::config::{Model, OutputConfig, ProviderConfig};
use crate::frame::{Frame, LabelMap, RgbImage};
use crate::runtime::{BoxError, Output, Stage};

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("{0}")]
    Runtime(String),
    #[error("execution provider {provider} was requested but cannot be used: {reason}")]
    Provider {
        provider: &'static str,
        reason: String,
    },
    #[error("cannot load model {model}: {reason}")]
    Session { model: String, reason: String },
    #[error("model {model} ({onnx}) does not match its config {config}: {}", problems.join("; "))]
    Mismatch {
        model: String,
        onnx: String,
        config: String,
        problems: Vec<String>,
    },
    #[error("model {model}: inference failed: {reason}")]
    Run { model: String, reason: String },
    #[error("model {model}: pre-processing failed: {0}", .source)]
    Preprocess {
        model: String,
        source: opencv::Error,
    },
}

/// A model ready to segment frames.
pub struct Segmenter {
    model: Model,
    session: Session,
}

impl Segmenter {
    /// Opens a session and checks that the model agrees with its config.
    pub fn new(
        model: Model,
        providers: &[ProviderConfig],
        threads: usize,
    ) -> Result<Self, InferError> {
        let session = open_session(&model, providers, threads)?;
        let problems = check_model(&session, &model);
        if !problems.is_empty() {
            return Err(InferError::Mismatch {
                model: model.name.clone(),
                onnx: model.onnx_path.display().to_string(),
                config: model.config_path.display().to_string(),
                problems,
            });
        }
        Ok(Segmenter { model, session })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Segments one image into a label map of the same size.
    pub fn segment(&mut self, image: &RgbImage) -> Result<LabelMap, InferError> {
        let name = &self.model.name;
        let run_err = |e: ort::Error| InferError::Run {
            model: name.clone(),
            reason: e.to_string(),
        };
        let (input, geometry) = preprocess(image, &self.model.config.input).map_err(|source| {
            InferError::Preprocess {
                model: name.clone(),
                source,
            }
        })?;
        let input = Tensor::from_array(input).map_err(run_err)?;
        let input_name = self.model.config.input.name.as_str();
        let outputs = self
            .session
            .run(ort::inputs![input_name => input])
            .map_err(run_err)?;
        let output_name = self.model.config.output.names()[0];
        let value = outputs.get(output_name).ok_or_else(|| InferError::Run {
            model: name.clone(),
            reason: format!("output {output_name:?} missing from the results"),
        })?;
        let shape_err = |shape: &[i64]| InferError::Run {
            model: name.clone(),
            reason: format!("output {output_name:?} has unexpected shape {shape:?}"),
        };
        match &self.model.config.output {
            OutputConfig::Logits { .. } | OutputConfig::Probabilities { .. } => {
                let (shape, scores) = value.try_extract_tensor::<f32>().map_err(run_err)?;
                let [_, c, h, w] = shape[..] else {
                    return Err(shape_err(shape));
                };
                if c as usize != self.model.num_classes() || h <= 0 || w <= 0 {
                    return Err(shape_err(shape));
                }
                Ok(argmax_scores(
                    scores, c as usize, h as usize, w as usize, &geometry,
                ))
            }
            OutputConfig::Labels { .. } => {
                let ty = match value.dtype() {
                    ValueType::Tensor { ty, .. } => *ty,
                    _ => TensorElementType::Int64,
                };
                let (shape, indices): (Vec<i64>, Vec<i64>) = if ty == TensorElementType::Int32 {
                    let (s, d) = value.try_extract_tensor::<i32>().map_err(run_err)?;
                    (
                        s.iter().copied().collect(),
                        d.iter().map(|&v| v as i64).collect(),
                    )
                } else {
                    let (s, d) = value.try_extract_tensor::<i64>().map_err(run_err)?;
                    (s.iter().copied().collect(), d.to_vec())
                };
                let (h, w) = match shape[..] {
                    [_, h, w] | [_, 1, h, w] => (h as usize, w as usize),
                    _ => return Err(shape_err(&shape)),
                };
                resample_labels(&indices, h, w, &geometry).map_err(|v| InferError::Run {
                    model: name.clone(),
                    reason: format!("class index {v} is outside 0..=255"),
                })
            }
            OutputConfig::Detections { .. } => Err(InferError::Run {
                model: name.clone(),
                reason: "instance models are not semantic segmenters".into(),
            }),
        }
    }
}

/// The infer stage.
pub struct Infer {
    model: Model,
    providers: Vec<ProviderConfig>,
    threads: usize,
    segmenter: Option<Segmenter>,
}

impl Infer {
    pub fn new(model: Model, providers: Vec<ProviderConfig>, threads: usize) -> Self {
        Infer {
            model,
            providers,
            threads,
            segmenter: None,
        }
    }
}

impl Stage for Infer {
    fn start(&mut self) -> Result<(), BoxError> {
        let segmenter = Segmenter::new(self.model.clone(), &self.providers, self.threads)?;
        let used: Vec<&str> = self.providers.iter().map(provider_name).collect();
        tracing::info!(
            stage = "infer",
            model = %self.model.name,
            providers = %if used.is_empty() { "CPU".into() } else { used.join(",") },
            "Model loaded."
        );
        self.segmenter = Some(segmenter);
        Ok(())
    }

    fn process(&mut self, mut frame: Frame, out: &mut Output) -> Result<(), BoxError> {
        let segmenter = self.segmenter.as_mut().expect("start() ran");
        frame.labels = Some(Arc::new(segmenter.segment(&frame.image)?));
        out.send(frame)?;
        Ok(())
    }
}
