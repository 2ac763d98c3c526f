//! The one list of components: every `type` a pipeline file may name. A new source,
//! transform or sink is one file beside its kind and one line here; nothing else in
//! segstream names a concrete component.

use serde::de::DeserializeOwned;
use toml::de::DeTable;
use toml::Spanned;

use crate::component::{SinkComponent, SourceComponent, TransformComponent};
use crate::{composite, delay, eval, infer, refine, sink, source};

/// Deserializes a component's table (without its `type` key), keeping positions.
pub fn de<T: DeserializeOwned>(table: Spanned<DeTable<'_>>) -> Result<T, toml::de::Error> {
    T::deserialize(toml::de::Deserializer::from(table))
}

/// Parses a component table into its config.
pub type ParseFn<T> = for<'a> fn(Spanned<DeTable<'a>>) -> Result<Box<T>, toml::de::Error>;

/// A transform or sink type.
pub struct Entry<T: ?Sized> {
    pub name: &'static str,
    pub parse: ParseFn<T>,
}

/// Recognizes a command-line `--input` as this source (`None`: not this kind of input).
pub type FromInputFn = fn(&str) -> Option<Result<Box<dyn SourceComponent>, String>>;

/// A source type, and how it recognizes a command-line `--input`.
pub struct SourceEntry {
    pub name: &'static str,
    pub parse: ParseFn<dyn SourceComponent>,
    pub from_input: FromInputFn,
}

macro_rules! source {
    ($name:literal, $t:ty) => {
        SourceEntry {
            name: $name,
            parse: |t| Ok(Box::new(de::<$t>(t)?)),
            from_input: |s| {
                <$t as SourceComponent>::from_input(s)
                    .map(|r| r.map(|c| Box::new(c) as Box<dyn SourceComponent>))
            },
        }
    };
}

macro_rules! entry {
    ($name:literal, $t:ty) => {
        Entry {
            name: $name,
            parse: |t| Ok(Box::new(de::<$t>(t)?)),
        }
    };
}

/// Sources; a command-line `--input` is the first of these that recognizes it, so `file`,
/// which takes anything, comes last.
pub static SOURCES: &[SourceEntry] = &[
    source!("rtsp", source::rtsp::RtspConfig),
    source!("camera", source::camera::CameraConfig),
    source!("synthetic", source::synthetic::SyntheticConfig),
    source!("test", source::test::TestConfig),
    source!("uri", source::uri::UriConfig),
    source!("file", source::file::FileConfig),
];

pub static TRANSFORMS: &[Entry<dyn TransformComponent>] = &[
    entry!("infer", infer::InferConfig),
    entry!("refine", refine::RefineConfig),
    entry!("composite", composite::CompositeConfig),
    entry!("delay", delay::DelayConfig),
];

/// Sinks; `eval` is also what an `[eval]` table (or `run --eval`) adds.
pub static SINKS: &[Entry<dyn SinkComponent>] = &[
    entry!("mp4", sink::mp4::Mp4Config),
    entry!("mkv", sink::mkv::MkvConfig),
    entry!("png", sink::png::PngConfig),
    entry!("jsonl", sink::jsonl::JsonlConfig),
    entry!("coco_truth", sink::coco::CocoTruthConfig),
    entry!("mqtt", sink::mqtt::MqttConfig),
    entry!("nats", sink::nats::NatsConfig),
    entry!("null", sink::null::NullConfig),
    entry!("display", sink::display::DisplayConfig),
    entry!("rtsp", sink::rtsp::RtspSinkConfig),
    entry!("eval", eval::sink::EvalConfig),
];

/// The source a command-line `--input` names.
pub fn source_from_input(input: &str) -> Result<(&'static str, Box<dyn SourceComponent>), String> {
    for entry in SOURCES {
        if let Some(found) = (entry.from_input)(input) {
            return found.map(|c| (entry.name, c));
        }
    }
    Err(format!("{input}: not an input segstream can open"))
}
