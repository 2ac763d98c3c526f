//! `uri`: anything GStreamer opens by URI (`file://`, `http://`, `rtsp://`, ...).
//!
//! `[source] type = "uri", uri = "http://camera.local/stream.mjpg"`

use serde::Deserialize;

use super::gst::{Decode, Input};
use crate::component::{BuildContext, CheckContext, Component, SourceComponent};
use crate::config::Problems;
use crate::runtime::{BoxError, Source};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UriConfig {
    pub uri: String,
}

impl Component for UriConfig {
    fn check(&mut self, _cx: &CheckContext<'_>, p: &mut Problems) {
        if !self.uri.contains("://") {
            p.push(
                "uri",
                format!("{:?} is not a URI (expected scheme://...)", self.uri),
            );
        } else if let Some(path) = self.uri.strip_prefix("file://") {
            if !std::path::Path::new(path).exists() {
                p.push("uri", format!("input {} does not exist", self.uri));
            }
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SourceComponent for UriConfig {
    fn from_input(input: &str) -> Option<Result<Self, String>> {
        input.contains("://").then(|| {
            Ok(UriConfig {
                uri: input.to_owned(),
            })
        })
    }

    fn is_live(&self) -> bool {
        self.uri.starts_with("rtsp") || self.uri.starts_with("udp")
    }

    fn describe(&self) -> String {
        self.uri.clone()
    }

    fn inputs(&self) -> Vec<std::path::PathBuf> {
        self.uri
            .strip_prefix("file://")
            .map(Into::into)
            .into_iter()
            .collect()
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, BoxError> {
        let input = Input::Uri {
            uri: self.uri.clone(),
        };
        Ok(Box::new(Decode::new(input, cx.frames)))
    }
}
