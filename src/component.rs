//! What every source, transform and sink config implements. A component is one file that
//! holds its settings (deserialized from its table in the pipeline file), checks them, says
//! what it needs from the frames reaching it and what it adds, and builds the running stage.
//! The registry (`crate::registry`) lists them by `type`; the pipeline check and build
//! (`crate::pipeline`) only ever see these traits.

use std::any::Any;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Problems;
use crate::frame::{Classes, Facet, Facets};
use crate::runtime::{BoxError, OrderedStep, QueueConfig, Source, Stage};

/// What frames reaching a component must carry, and what to say when none do.
#[derive(Clone, Debug)]
pub struct Need {
    /// The facets; `all` says whether every one is needed or any one of them will do.
    pub facets: Facets,
    pub all: bool,
    /// The key the need comes from (`masks`), when one setting asks for it.
    pub key: Option<&'static str>,
    /// The problem when nothing upstream gives it (`refine needs an infer transform before it`).
    pub missing: String,
}

impl Need {
    /// Needs `facet`.
    pub fn one(facet: Facet, missing: impl Into<String>) -> Need {
        Need::all(facet.into(), missing)
    }

    /// Needs every one of `facets`.
    pub fn all(facets: Facets, missing: impl Into<String>) -> Need {
        Need {
            facets,
            all: true,
            key: None,
            missing: missing.into(),
        }
    }

    /// Needs at least one of `facets`.
    pub fn any(facets: Facets, missing: impl Into<String>) -> Need {
        Need {
            all: false,
            ..Need::all(facets, missing)
        }
    }

    /// The need comes from setting `key`.
    pub fn from_key(mut self, key: &'static str) -> Need {
        self.key = Some(key);
        self
    }

    /// Whether frames carrying `available` meet it.
    pub fn met_by(&self, available: Facets) -> bool {
        if self.all {
            available.covers(self.facets)
        } else {
            available.intersects(self.facets)
        }
    }
}

/// What a component's check may look at.
pub struct CheckContext<'a> {
    /// The pipeline file.
    pub pipeline: &'a Path,
    /// Relative paths in the file resolve against this folder (the file's own).
    pub base: &'a Path,
}

impl CheckContext<'_> {
    /// A path from the pipeline file, resolved against its folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        crate::config::resolve(self.base, path)
    }
}

/// The part every component shares.
pub trait Component: Debug + Send + Sync + Any {
    /// Checks the settings, pushing every problem with its key relative to this component
    /// (`alpha`, `tiling.scale`); resolves relative paths with `cx` and loads what the
    /// component will need to build (a model config). Nothing heavy: no model session.
    fn check(&mut self, cx: &CheckContext<'_>, problems: &mut Problems);

    /// What frames reaching the component must carry.
    fn needs(&self) -> Vec<Need> {
        Vec::new()
    }

    /// What the component adds to every frame it passes on.
    fn gives(&self) -> Facets {
        Facets::NONE
    }

    /// Why frames leaving it lack `facet` although the component could be expected to give
    /// it, as a clause for `consumer`'s problem (`refine cannot follow a tiled infer (...)`);
    /// `here` is the component's key (`transforms[1]`). A facet it withholds is removed from
    /// what earlier stages gave.
    fn withholds(&self, _facet: Facet, _consumer: &str, _here: &str) -> Option<String> {
        None
    }

    /// Checks that need the component's heavy resources (a model session): `validate`
    /// runs them so it refuses what `run` would, without running a frame.
    fn probe(&self, _problems: &mut Problems) {}

    /// Adds the class names (and colours) its model knows.
    fn classes(&self, _classes: &mut Classes) {}

    /// For commands that adjust a component (bench swaps the model of an infer).
    fn as_any(&self) -> &dyn Any;
}

/// Everything a build may need to know about the run.
pub struct BuildContext<'a> {
    /// Some source is live: queues drop the oldest frame by default.
    pub live: bool,
    /// Overrides every infer stage's thread count (`--threads`).
    pub threads: Option<usize>,
    /// Model sessions in the whole pipeline that share the cores (every transform's
    /// `sessions_sharing_cores`): two infer stages of `threads = 0` get half the cores each
    /// rather than all of them twice over.
    pub sharing: usize,
    /// Stop each source after this many frames (`--frames`).
    pub frames: Option<u64>,
    /// The class names of the pipeline's models.
    pub classes: &'a Arc<Classes>,
    /// What stages after this one need: a stage may keep what it would otherwise drop
    /// (infer keeps class scores only when a later stage reads them).
    pub wanted: Facets,
    /// The one file the pipeline reads, when it reads a single video file (video sinks
    /// copy its audio).
    pub input_file: Option<PathBuf>,
    /// Of a source of many inputs, the stream ids to run (a shard, less what is done).
    pub chosen: Option<&'a std::collections::BTreeSet<u32>>,
}

/// The workers of a transform stage.
pub struct Workers {
    /// One stage per worker thread; results keep frame order.
    pub stages: Vec<Box<dyn Stage>>,
    /// Most frames handed to one `process_batch` call.
    pub batch: usize,
    /// Run on each output frame in order, after the workers.
    pub ordered: Option<OrderedStep>,
}

impl Workers {
    pub fn one(stage: Box<dyn Stage>) -> Workers {
        Workers {
            stages: vec![stage],
            batch: 1,
            ordered: None,
        }
    }
}

/// One input of a source of many: a stream of its own that ends during the run.
#[derive(Clone, Debug, PartialEq)]
pub struct ManyInput {
    /// Its stream id: its place in the whole list (the same in every shard).
    pub id: u32,
    /// What its outputs are called (`{name}`).
    pub name: String,
    /// The input as given (a path or a URI), for messages.
    pub input: String,
}

/// Where frames come from.
pub trait SourceComponent: Component {
    /// The source a command-line `--input` names, if it is of this type (`rtsp://...`,
    /// `test:ball`); an error when it is of this type but malformed.
    fn from_input(_input: &str) -> Option<Result<Self, String>>
    where
        Self: Sized,
    {
        None
    }

    /// Called on the source a command-line `--input` made, with the pipeline file's own
    /// source: a source of the same type keeps the file's settings of how to read (decoder
    /// threads, frame size, ...) and takes only what the input names.
    fn keep_settings_of(&mut self, _file: &dyn SourceComponent) {}

    /// Produces frames on its own clock (queues then drop rather than wait).
    fn is_live(&self) -> bool;

    /// A short name of the input for messages (`assets/sample.mp4`, `test:ball`).
    fn describe(&self) -> String;

    /// The files it reads, so no sink may write over them.
    fn inputs(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// The inputs of a source of many (a folder, a glob, a list), each one stream that ends
    /// during the run; `None` for a source of one stream.
    fn many(&self) -> Option<Vec<ManyInput>> {
        None
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, BoxError>;
}

/// A stage between the sources and the sinks.
pub trait TransformComponent: Component {
    fn queue(&self) -> QueueConfig;

    /// Model sessions it runs with their thread count left to the machine (`threads = 0`):
    /// the pipeline shares the cores among all of them ([`BuildContext::sharing`]).
    fn sessions_sharing_cores(&self) -> usize {
        0
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Workers, BoxError>;
}

/// Where results go; every sink gets every frame.
pub trait SinkComponent: Component {
    fn queue(&self) -> QueueConfig;

    /// The file or folder it writes, if any (`{stream}` expands per stream).
    fn output(&self) -> Option<&Path> {
        None
    }

    /// Redirects the output (`--output`); false when the sink writes no file.
    fn set_output(&mut self, _path: PathBuf) -> bool {
        false
    }

    /// Whether its output is one file or folder (not a series of them, like segments), so a
    /// batch can write it under a temporary name and rename it when complete.
    fn whole_output(&self) -> bool {
        true
    }

    /// One output may hold every stream (each record names its stream), so `{stream}` is
    /// optional with several sources.
    fn shared_by_streams(&self) -> bool {
        false
    }

    /// The running sink, writing to `output` (this sink's output with `{stream}` expanded).
    fn build(
        &self,
        cx: &BuildContext<'_>,
        output: Option<&Path>,
    ) -> Result<Box<dyn Stage>, BoxError>;
}
