//! `camera`: a V4L2 camera.
//!
//! `[source] type = "camera", device = "/dev/video0"`; on the command line `--input /dev/video0`.

use std::path::PathBuf;

use serde::Deserialize;

use super::gst::{Decode, Input};
use crate::component::{BuildContext, CheckContext, Component, SourceComponent};
use crate::config::Problems;
use crate::runtime::{BoxError, Source};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    #[serde(default = "default_camera")]
    pub device: PathBuf,
}

fn default_camera() -> PathBuf {
    "/dev/video0".into()
}

impl Component for CameraConfig {
    fn check(&mut self, _cx: &CheckContext<'_>, p: &mut Problems) {
        if !self.device.exists() {
            p.push(
                "device",
                format!(
                    "camera {} does not exist (expected a V4L2 device such as /dev/video0)",
                    self.device.display()
                ),
            );
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SourceComponent for CameraConfig {
    fn from_input(input: &str) -> Option<Result<Self, String>> {
        input.starts_with("/dev/video").then(|| {
            Ok(CameraConfig {
                device: input.into(),
            })
        })
    }

    fn is_live(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.device.display().to_string()
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Source>, BoxError> {
        let input = Input::Camera {
            device: self.device.clone(),
        };
        Ok(Box::new(Decode::new(input, cx.frames)))
    }
}
