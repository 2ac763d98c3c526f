//! `eval`: scores every frame's labels against the source's ground truth as frames pass,
//! a sink of its own so it never slows the others; the run's summary ends with the figures.
//!
//! `[eval]` in a pipeline file (or `run --eval`), `ignore = 255` by default.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::{Confusion, RunEval};
use crate::component::{BuildContext, CheckContext, Component, Need, SinkComponent};
use crate::config::Problems;
use crate::frame::{Facet, Frame};
use crate::runtime::{BoxError, Output, QueueConfig, Stage, Summary};

/// Accuracy measured inside a run, on sources that carry ground truth (`synthetic`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Ground-truth value of pixels not to count.
    #[serde(default = "default_ignore")]
    pub ignore: u8,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            ignore: default_ignore(),
        }
    }
}

fn default_ignore() -> u8 {
    255
}

impl Component for EvalConfig {
    fn check(&mut self, _cx: &CheckContext<'_>, _p: &mut Problems) {}

    fn needs(&self) -> Vec<Need> {
        vec![
            Need::one(
                Facet::Labels,
                "eval needs a semantic infer transform to score",
            ),
            Need::one(
                Facet::Truth,
                "source {source} carries no ground truth (expected type = \"synthetic\")",
            ),
        ]
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SinkComponent for EvalConfig {
    fn queue(&self) -> QueueConfig {
        QueueConfig::default()
    }

    fn build(
        &self,
        cx: &BuildContext<'_>,
        _output: Option<&Path>,
    ) -> Result<Box<dyn Stage>, BoxError> {
        let classes = &cx.classes;
        let count = classes.semantic.len().max(classes.palette.len());
        let (sink, _) = EvalSink::new(count, classes.semantic.clone(), self.ignore);
        Ok(Box::new(sink))
    }
}

/// The pipeline stage behind `run --eval`: a sink that adds each frame's label map and
/// true label map to a confusion matrix shared with whoever reports the run.
pub struct EvalSink {
    ignore: u8,
    state: Arc<Mutex<(Confusion, u64, u64)>>,
    handle: EvalHandle,
}

impl EvalSink {
    /// A sink for `classes` classes (named by `names`), and the handle to read it with.
    pub fn new(classes: usize, names: Vec<String>, ignore: u8) -> (EvalSink, EvalHandle) {
        let state = Arc::new(Mutex::new((Confusion::new(classes), 0, 0)));
        let handle = EvalHandle { state, names };
        (
            EvalSink {
                ignore,
                state: handle.state.clone(),
                handle: handle.clone(),
            },
            handle,
        )
    }
}

/// Reads what an `EvalSink` accumulated.
#[derive(Clone)]
pub struct EvalHandle {
    state: Arc<Mutex<(Confusion, u64, u64)>>,
    names: Vec<String>,
}

impl EvalHandle {
    pub fn result(&self) -> RunEval {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        RunEval {
            frames: state.1,
            unscored: state.2,
            metrics: state.0.metrics(&self.names),
        }
    }
}

impl Stage for EvalSink {
    fn process(&mut self, frame: Frame, _out: &mut Output) -> Result<(), BoxError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(labels), Some(truth)) = (&frame.labels, &frame.truth) else {
            state.2 += 1;
            return Ok(());
        };
        if (labels.width, labels.height) != (truth.width, truth.height) {
            return Err(format!(
                "eval: frame {} has {}x{} labels but {}x{} ground truth (expected the same size)",
                frame.seq, labels.width, labels.height, truth.width, truth.height
            )
            .into());
        }
        state.0.add(&truth.data, &labels.data, self.ignore);
        state.1 += 1;
        Ok(())
    }

    fn summary(&self) -> Option<Summary> {
        let result = self.handle.result();
        Some(Summary {
            key: "accuracy",
            text: result.to_string(),
            value: serde_json::to_value(&result).ok()?,
        })
    }
}
