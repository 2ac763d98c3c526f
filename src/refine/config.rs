//! The `refine` transform's settings.
//!
//! `[[transforms]] type = "refine", iterations = 5, scale = 2, workers = 2, budget_ms = 80`
//! (`settle = 1` for exact mean field)

use serde::Deserialize;

use super::{CrfParams, Refine, RefineOptions};
use crate::component::{BuildContext, CheckContext, Component, Need, TransformComponent, Workers};
use crate::config::Problems;
use crate::frame::{Facet, Facets};
use crate::refine::crf::{Appearance, Smooth};
use crate::runtime::{BoxError, QueueConfig};

/// Refines the labels with a fully connected CRF over the model's class scores, so they
/// follow the image's edges (needs an infer transform before it, untiled, with a logits
/// or probabilities model); with `masks`, also each instance's mask inside its box.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefineConfig {
    /// Mean-field iterations.
    #[serde(default = "default_iterations")]
    pub iterations: usize,
    /// Smoothness kernel on position: `{ sxy, weight }`.
    #[serde(default)]
    pub smooth: Smooth,
    /// Appearance kernel on position and colour: `{ sxy, srgb, weight }`.
    #[serde(default)]
    pub appearance: Appearance,
    /// A pixel whose largest probability exceeds this after an iteration keeps its
    /// probabilities for the iterations left, which skip it; 1 computes every pixel in
    /// every iteration (exact mean field).
    #[serde(default = "default_settle")]
    pub settle: f32,
    /// Run the CRF at 1/scale of the frame's resolution (1, 2 or 4) and up-sample the
    /// refined probabilities; kernel sizes stay in frame pixels.
    #[serde(default = "one_u32")]
    pub scale: u32,
    /// Frames refined in parallel; results keep frame order.
    #[serde(default = "one")]
    pub workers: usize,
    /// Threads each worker splits one frame's CRF over; 0 uses a pool of all cores shared
    /// by the workers.
    #[serde(default)]
    pub threads: usize,
    /// Most milliseconds spent refining one frame; past it the frame passes through
    /// unrefined, counted in the summary. No limit when absent.
    #[serde(default)]
    pub budget_ms: Option<u64>,
    /// Also refine every instance's mask with a two-label CRF (object, background) in
    /// its box; with only an instance infer before it, refine does just that.
    #[serde(default)]
    pub masks: bool,
    #[serde(default)]
    pub queue: QueueConfig,
}

fn default_iterations() -> usize {
    CrfParams::default().iterations
}
fn default_settle() -> f32 {
    CrfParams::default().settle
}
fn one() -> usize {
    1
}
fn one_u32() -> u32 {
    1
}

impl RefineConfig {
    /// What the stage runs with.
    pub fn options(&self) -> RefineOptions {
        RefineOptions {
            params: CrfParams {
                iterations: self.iterations,
                smooth: self.smooth,
                appearance: self.appearance,
                settle: self.settle,
            },
            scale: self.scale,
            threads: self.threads,
            budget: self.budget_ms.map(std::time::Duration::from_millis),
            masks: self.masks,
            keep_scores: true,
        }
    }
}

impl Component for RefineConfig {
    fn check(&mut self, _cx: &CheckContext<'_>, p: &mut Problems) {
        p.range("iterations", self.iterations, 1, 100);
        p.range("smooth.sxy", self.smooth.sxy, 0.1, 1000.0);
        p.range("smooth.weight", self.smooth.weight, 0.0, 1000.0);
        p.range("appearance.sxy", self.appearance.sxy, 0.1, 1000.0);
        p.range("appearance.srgb", self.appearance.srgb, 0.1, 1000.0);
        p.range("appearance.weight", self.appearance.weight, 0.0, 1000.0);
        p.range("settle", self.settle, 0.5, 1.0);
        if ![1, 2, 4].contains(&self.scale) {
            p.push("scale", format!("{} is not one of 1, 2, 4", self.scale));
        }
        p.range("workers", self.workers, 1, 64);
        self.threads = crate::infer::cap_threads("refine", self.threads, p);
        if let Some(b) = self.budget_ms {
            p.range("budget_ms", b, 1, 600_000);
        }
    }

    fn needs(&self) -> Vec<Need> {
        let missing = "refine needs an infer transform before it";
        if !self.masks {
            return vec![Need::one(Facet::Scores, missing)];
        }
        // Masks alone need no class scores; with scores, the labels are refined too.
        vec![
            Need::any(Facet::Scores | Facet::Instances, missing),
            Need::one(
                Facet::Instances,
                "refining masks needs an instance infer transform before it",
            )
            .from_key("masks"),
        ]
    }

    fn gives(&self) -> Facets {
        Facets::NONE
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl TransformComponent for RefineConfig {
    fn queue(&self) -> QueueConfig {
        self.queue
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Workers, BoxError> {
        let options = RefineOptions {
            keep_scores: cx.wanted.contains(Facet::Scores),
            ..self.options()
        };
        Ok(Workers {
            stages: (0..self.workers)
                .map(|_| Box::new(Refine::new(options)) as Box<dyn crate::runtime::Stage>)
                .collect(),
            batch: 1,
            ordered: None,
        })
    }
}
