//! `eval`: scores every frame's labels against the source's ground truth as frames pass,
//! a sink of its own so it never slows the others; the run's summary ends with the figures.
//! With an instance model on a source that knows its instances, it also gathers every
//! frame's detections and true objects and ends with mask AP (COCOeval's figures, as
//! `eval --instances` computes them).
//!
//! `[eval]` in a pipeline file (or `run --eval`), `ignore = 255` by default.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::coco::{truth_categories, warn_unnamed, Scorer};
use super::{Confusion, RunEval};
use crate::component::{BuildContext, CheckContext, Component, Need, SinkComponent};
use crate::config::Problems;
use crate::frame::{Classes, Facet, Frame};
use crate::instance::rle;
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
            Need::any(
                Facet::Labels | Facet::Instances,
                "eval needs an infer transform to score",
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
        let (sink, _) = EvalSink::new(cx.classes, self.ignore);
        Ok(Box::new(sink))
    }
}

/// The pipeline stage behind `run --eval`: a sink that adds each frame's label map and
/// true label map to a confusion matrix, and its detections and true objects to a COCO
/// scorer, shared with whoever reports the run.
pub struct EvalSink {
    ignore: u8,
    /// COCO category per true instance class (see `truth_categories`).
    categories: Vec<Option<(u32, &'static str)>>,
    state: Arc<Mutex<State>>,
    handle: EvalHandle,
}

struct State {
    confusion: Confusion,
    /// Mask AP, when the pipeline has an instance model.
    scorer: Option<Scorer>,
    frames: u64,
    unscored: u64,
    /// Truth classes already warned about.
    warned: std::collections::BTreeSet<u32>,
}

impl EvalSink {
    /// A sink for the pipeline's `classes`, and the handle to read it with.
    pub fn new(classes: &Classes, ignore: u8) -> (EvalSink, EvalHandle) {
        let count = classes.semantic.len().max(classes.palette.len());
        let categories = truth_categories(classes);
        let scorer = (!classes.instance.is_empty()).then(|| {
            Scorer::new(
                categories
                    .iter()
                    .flatten()
                    .map(|&(id, name)| (id as i64, name.to_owned())),
            )
        });
        let state = Arc::new(Mutex::new(State {
            confusion: Confusion::new(count),
            scorer,
            frames: 0,
            unscored: 0,
            warned: Default::default(),
        }));
        let handle = EvalHandle {
            state,
            names: classes.semantic.clone(),
        };
        (
            EvalSink {
                ignore,
                categories,
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
    state: Arc<Mutex<State>>,
    names: Vec<String>,
}

impl EvalHandle {
    pub fn result(&self) -> RunEval {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        RunEval {
            frames: state.frames,
            unscored: state.unscored,
            metrics: state.confusion.metrics(&self.names),
            instances: state.scorer.as_ref().map(Scorer::metrics),
        }
    }
}

impl Stage for EvalSink {
    fn process(&mut self, frame: Frame, _out: &mut Output) -> Result<(), BoxError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *state;
        let mut scored = false;
        if let (Some(labels), Some(truth)) = (&frame.labels, &frame.truth) {
            if (labels.width, labels.height) != (truth.width, truth.height) {
                return Err(format!(
                    "eval: frame {} has {}x{} labels but {}x{} ground truth (expected the same size)",
                    frame.seq, labels.width, labels.height, truth.width, truth.height
                )
                .into());
            }
            state.confusion.add(&truth.data, &labels.data, self.ignore);
            scored = true;
        }
        if let (Some(scorer), Some(found), Some(truth)) = (
            state.scorer.as_mut(),
            &frame.instances,
            &frame.truth_instances,
        ) {
            // Every scored frame is an image of its own, whatever its stream.
            let image = state.frames as i64;
            let (w, h) = (frame.image.width, frame.image.height);
            scorer.add_image(image);
            for t in truth.iter() {
                match self.categories.get(t.class as usize) {
                    Some(&Some((category, _))) => {
                        scorer.add_truth(image, category as i64, rle::encode(&t.mask, w, h))
                    }
                    // Left out, as coco_truth leaves it out.
                    _ => warn_unnamed("eval", t.class, &mut state.warned),
                }
            }
            for d in found.iter() {
                let mask = rle::encode(&d.mask, w, h);
                scorer.add_detection(image, d.class as i64, d.score as f64, mask);
            }
            scored = true;
        }
        if scored {
            state.frames += 1;
        } else {
            state.unscored += 1;
        }
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
