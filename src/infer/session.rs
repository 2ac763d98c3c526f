//! ONNX Runtime: loading the shared library, creating sessions with the execution providers
//! the user asked for (each one must register, or it is an error), and checking that a model
//! agrees with its config.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProviderDispatch};
use ort::memory::DeviceType;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::{Outlet, TensorElementType, ValueType};

use super::model::{Model, OutputConfig, SizePolicy};
use super::{detections, labels, scores, InferError};
use crate::frame::Upsampling;

/// Where the ONNX Runtime shared library is looked for, in order.
pub fn library_candidates() -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        c.push(PathBuf::from(p));
        return c;
    }
    if let Some(home) = std::env::var_os("SEGSTREAM_HOME") {
        c.push(PathBuf::from(home).join("onnxruntime/libonnxruntime.so"));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(cache) = cache {
        c.push(cache.join("segstream/onnxruntime/libonnxruntime.so"));
    }
    c
}

/// The process-wide ONNX Runtime environment, loaded on first use.
pub fn environment() -> Result<&'static Environment, InferError> {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let candidates = library_candidates();
        let Some(lib) = candidates.iter().find(|p| p.is_file()) else {
            return Err(format!(
                "ONNX Runtime library not found (looked for {}; run scripts/setup or set \
                 ORT_DYLIB_PATH)",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        ort::init_from(lib)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", lib.display()))?
            .with_name("segstream")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    })
    .as_ref()
    .map_err(|e| InferError::Runtime(e.clone()))
}

fn provider(config: &ProviderConfig) -> Option<ExecutionProviderDispatch> {
    match config {
        // CPU is always there; registering it explicitly would only change its allocator.
        ProviderConfig::Cpu => None,
        ProviderConfig::Cuda {
            device_id,
            conv_algo_search,
            memory_limit_mb,
        } => {
            let search = match conv_algo_search.as_str() {
                "heuristic" => ep::cuda::ConvAlgorithmSearch::Heuristic,
                "default" => ep::cuda::ConvAlgorithmSearch::Default,
                _ => ep::cuda::ConvAlgorithmSearch::Exhaustive,
            };
            let mut cuda = ep::CUDA::default()
                .with_device_id(*device_id)
                .with_conv_algorithm_search(search);
            if let Some(mb) = memory_limit_mb {
                cuda = cuda.with_memory_limit(mb << 20);
            }
            Some(cuda.build().error_on_failure())
        }
        // A plugin EP: it goes through the device API (`with_openvino`), not `ort::ep`.
        ProviderConfig::Openvino { .. } => None,
        ProviderConfig::Tensorrt {
            device_id,
            fp16,
            engine_cache_dir,
            workspace_mb,
        } => {
            let mut trt = ep::TensorRT::default()
                .with_device_id(*device_id)
                .with_fp16(*fp16);
            if let Some(dir) = engine_cache_dir {
                trt = trt
                    .with_engine_cache(true)
                    .with_engine_cache_path(dir.display());
            }
            if let Some(mb) = workspace_mb {
                trt = trt.with_max_workspace_size(mb << 20);
            }
            Some(trt.build().error_on_failure())
        }
    }
}

pub fn provider_name(config: &ProviderConfig) -> &'static str {
    match config {
        ProviderConfig::Cpu => "CPU",
        ProviderConfig::Cuda { .. } => "CUDA",
        ProviderConfig::Tensorrt { .. } => "TensorRT",
        ProviderConfig::Openvino { .. } => "OpenVINO",
    }
}

/// The OpenVINO plugin library: the config's `library`, else `SEGSTREAM_OPENVINO_EP`, else
/// where scripts/setup puts it.
pub fn openvino_library(configured: Option<&Path>) -> PathBuf {
    if let Some(p) = configured {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("SEGSTREAM_OPENVINO_EP") {
        return PathBuf::from(p);
    }
    let dir = library_candidates()
        .into_iter()
        .next()
        .and_then(|lib| lib.parent().and_then(Path::parent).map(Path::to_path_buf))
        .unwrap_or_default();
    dir.join("openvino/libonnxruntime_providers_openvino_plugin.so")
}

/// Registers the OpenVINO plugin library with the environment, once per path.
fn register_openvino(env: &Environment, library: &Path) -> Result<(), String> {
    static DONE: Mutex<Vec<(PathBuf, Result<(), String>)>> = Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, r)) = done.iter().find(|(p, _)| p == library) {
        return r.clone();
    }
    let r = if !library.is_file() {
        Err(format!(
            "plugin library {} not found (run scripts/setup, or set `library` or \
             SEGSTREAM_OPENVINO_EP)",
            library.display()
        ))
    } else {
        env.register_ep_library("OpenVINO", library)
            .map_err(|e| format!("cannot register {}: {e}", library.display()))
    };
    done.push((library.to_path_buf(), r.clone()));
    r
}

/// OpenVINO's inference precision hint for a config's `precision`. INT8 models (QDQ) run
/// their quantized operators in INT8 whatever the hint; the rest stays FP32.
fn openvino_hint(precision: &str) -> &'static str {
    match precision {
        "BF16" => "bf16",
        "FP16" => "f16",
        _ => "f32",
    }
}

fn with_openvino(
    builder: ort::session::builder::SessionBuilder,
    env: &'static Environment,
    config: &ProviderConfig,
    threads: usize,
) -> Result<ort::session::builder::SessionBuilder, String> {
    let ProviderConfig::Openvino {
        device,
        precision,
        library,
    } = config
    else {
        return Ok(builder);
    };
    register_openvino(env, &openvino_library(library.as_deref()))?;
    let want = match device.as_str() {
        "GPU" => DeviceType::GPU,
        "NPU" => DeviceType::NPU,
        _ => DeviceType::CPU,
    };
    let openvino = || {
        env.devices()
            .filter(|d| d.ep().is_ok_and(|ep| ep == "OpenVINOExecutionProvider"))
    };
    let chosen: Vec<_> = openvino()
        .filter(|d| d.hardware_device().ty() == want)
        .collect();
    if chosen.is_empty() {
        let have: Vec<String> = openvino()
            .map(|d| format!("{:?}", d.hardware_device().ty()))
            .collect();
        return Err(format!(
            "no OpenVINO {device} device on this machine (OpenVINO sees: {})",
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        ));
    }
    let mut settings = serde_json::Map::new();
    settings.insert(
        "INFERENCE_PRECISION_HINT".into(),
        openvino_hint(precision).into(),
    );
    if threads > 0 {
        settings.insert("INFERENCE_NUM_THREADS".into(), threads.into());
    }
    let load_config = serde_json::json!({ device.as_str(): settings }).to_string();
    let options = [
        (
            "OpenVINOExecutionProvider.load_config".to_string(),
            load_config,
        ),
        // Compile for each concrete input shape (a stream's frames share one) instead of
        // one dynamic-shape network: 4% and 27% faster in two A/B runs here.
        (
            "OpenVINOExecutionProvider.disable_dynamic_shapes".to_string(),
            "true".to_string(),
        ),
    ];
    builder
        .with_devices(chosen, Some(&options))
        .map_err(|e| ort::Error::<()>::from(e).to_string())
}

/// Creates a session for `model`; every provider in `providers` must be usable.
pub fn open_session(
    model: &Model,
    providers: &[ProviderConfig],
    threads: usize,
) -> Result<Session, InferError> {
    session_builder(model, providers, threads)?
        .commit_from_file(&model.onnx_path)
        .map_err(|e| InferError::Session {
            model: format!("{} ({})", model.name, model.onnx_path.display()),
            reason: e.to_string(),
        })
}

/// [`open_session`], with the model's final Resize of its scores taken off its graph when
/// `fuse` and the model ends in one the argmax reproduces exactly (`super::resize`): the
/// session, and the up-sampling the argmax then does.
pub fn open_session_fused(
    model: &Model,
    providers: &[ProviderConfig],
    threads: usize,
    fuse: bool,
) -> Result<(Session, Option<Upsampling>), InferError> {
    let failed = |reason: String| InferError::Session {
        model: format!("{} ({})", model.name, model.onnx_path.display()),
        reason,
    };
    if fuse {
        let bytes = std::fs::read(&model.onnx_path).map_err(|e| failed(e.to_string()))?;
        let output = model.config.output.names()[0];
        let cut = super::resize::cut_final_resize(&bytes, output);
        // The file's bytes go before ONNX Runtime makes its own copy of the edited model.
        drop(bytes);
        match cut {
            Ok(Some((edited, up))) => {
                match session_builder(model, providers, threads)?.commit_from_memory(&edited) {
                    Ok(session) => return Ok((session, Some(up))),
                    // The whole model is what the user gave: it still runs.
                    Err(e) => tracing::warn!(
                        model = %model.name,
                        "the model without its final Resize did not load ({e}); running it whole"
                    ),
                }
            }
            Ok(None) => {}
            // ONNX Runtime may still read what the protobuf messages do not; it says so if not.
            Err(e) => tracing::debug!(model = %model.name, "final Resize left in the graph: {e}"),
        }
    }
    Ok((open_session(model, providers, threads)?, None))
}

/// Session options for `model`'s sessions: optimization, threads and the providers asked for,
/// each of which must register. The in-graph pre- and post-processing sessions share them.
pub fn session_builder(
    model: &Model,
    providers: &[ProviderConfig],
    threads: usize,
) -> Result<SessionBuilder, InferError> {
    let env = environment()?;
    let ort_err = |e: ort::Error<ort::session::builder::SessionBuilder>| InferError::Session {
        model: model.name.clone(),
        reason: ort::Error::<()>::from(e).to_string(),
    };
    let mut builder = Session::builder(env)
        .map_err(|e| InferError::Session {
            model: model.name.clone(),
            reason: e.to_string(),
        })?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(ort_err)?;
    if threads > 0 {
        builder = builder.with_intra_threads(threads).map_err(ort_err)?;
    }
    for config in providers {
        if let ProviderConfig::Openvino { .. } = config {
            builder = with_openvino(builder, env, config, threads).map_err(|reason| {
                InferError::Provider {
                    provider: provider_name(config),
                    reason,
                }
            })?;
        }
        if let Some(ep) = provider(config) {
            builder = builder
                .with_execution_providers([ep])
                .map_err(|e| InferError::Provider {
                    provider: provider_name(config),
                    reason: ort::Error::<()>::from(e).to_string(),
                })?;
        }
    }
    if providers.iter().all(|p| matches!(p, ProviderConfig::Cpu)) {
        // ort turns on ONNX Runtime's automatic device selection for every session, so once
        // the OpenVINO plugin is registered in this process (an earlier session asked for
        // it), a session that names no provider is given OpenVINO's CPU device: a CPU row of
        // `bench` after an OpenVINO row ran on OpenVINO. Naming ONNX Runtime's own CPU device
        // keeps a CPU session on the CPU provider.
        let cpu: Vec<_> = env
            .devices()
            .filter(|d| d.ep().is_ok_and(|ep| ep == "CPUExecutionProvider"))
            .collect();
        if !cpu.is_empty() {
            builder = builder
                .with_devices(cpu, None)
                .map_err(|e| InferError::Provider {
                    provider: "CPU",
                    reason: ort::Error::<()>::from(e).to_string(),
                })?;
        }
    }
    Ok(builder)
}

fn describe(outlet: &Outlet) -> String {
    match outlet.dtype() {
        ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } => {
            let dims: Vec<String> = shape
                .iter()
                .zip(dimension_symbols.iter())
                .map(|(d, s)| {
                    if *d >= 0 {
                        d.to_string()
                    } else if s.is_empty() {
                        "?".into()
                    } else {
                        s.clone()
                    }
                })
                .collect();
            format!("{} [{}] {}", outlet.name(), dims.join(","), ty)
        }
        other => format!("{} {other}", outlet.name()),
    }
}

fn tensor(outlet: &Outlet) -> Option<(TensorElementType, Vec<i64>)> {
    match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.iter().copied().collect())),
        _ => None,
    }
}

/// Everything on which the model and its config disagree, as one message each.
pub fn check_model(session: &Session, model: &Model) -> Vec<String> {
    let mut problems = Vec::new();
    let cfg = &model.config;
    let list = |outlets: &[Outlet]| outlets.iter().map(describe).collect::<Vec<_>>().join(", ");

    match session.inputs().iter().find(|i| i.name() == cfg.input.name) {
        None => problems.push(format!(
            "input {:?} not found; the model's inputs are: {}",
            cfg.input.name,
            list(session.inputs())
        )),
        Some(input) => match tensor(input) {
            None => problems.push(format!("input {} is not a tensor", describe(input))),
            Some((ty, shape)) => {
                let layout = cfg.input.layout;
                if shape.len() != layout.rank() {
                    problems.push(format!(
                        "input {} has rank {}, but layout {:?} expects rank {}",
                        describe(input),
                        shape.len(),
                        layout,
                        layout.rank()
                    ));
                } else {
                    let (c, h, w) = layout.axes();
                    if shape[c] >= 0 && shape[c] != 3 {
                        problems.push(format!(
                            "input {} has {} channels on the {layout:?} channel axis (expected 3)",
                            describe(input),
                            shape[c]
                        ));
                    }
                    let fixed = (shape[h] >= 0 && shape[w] >= 0).then(|| (shape[w], shape[h]));
                    match (cfg.input.size, fixed) {
                        (SizePolicy::Pad { .. }, Some((fw, fh))) => problems.push(format!(
                            "input {} has a fixed size {fw}x{fh}; use size = {{ policy = \
                             \"stretch\", width = {fw}, height = {fh} }}",
                            describe(input)
                        )),
                        (SizePolicy::Stretch { width, height }, Some((fw, fh)))
                            if (fw, fh) != (width as i64, height as i64) =>
                        {
                            problems.push(format!(
                                "input {} is {fw}x{fh}, but the config stretches to {width}x{height}",
                                describe(input)
                            ))
                        }
                        _ => {}
                    }
                }
                let expected = match cfg.input.dtype {
                    super::model::InputType::Float32 => TensorElementType::Float32,
                    super::model::InputType::Float16 => TensorElementType::Float16,
                };
                if ty != expected {
                    problems.push(format!(
                        "input {} is {ty}, but the config says dtype = {:?}",
                        describe(input),
                        cfg.input.dtype
                    ));
                }
            }
        },
    }
    let named = session.inputs().iter().any(|i| i.name() == cfg.input.name);
    for extra in session
        .inputs()
        .iter()
        .filter(|i| named && i.name() != cfg.input.name)
    {
        problems.push(format!(
            "the model has another input {} that segstream cannot feed",
            describe(extra)
        ));
    }

    for name in cfg.output.names() {
        let Some(output) = session.outputs().iter().find(|o| o.name() == name) else {
            problems.push(format!(
                "output {name:?} not found; the model's outputs are: {}",
                list(session.outputs())
            ));
            continue;
        };
        let Some((ty, shape)) = tensor(output) else {
            problems.push(format!("output {} is not a tensor", describe(output)));
            continue;
        };
        let described = describe(output);
        match &cfg.output {
            OutputConfig::Logits { .. } | OutputConfig::Probabilities { .. } => {
                scores::check(&described, ty, &shape, model.num_classes(), &mut problems)
            }
            OutputConfig::Labels { .. } => labels::check(&described, ty, &shape, &mut problems),
            OutputConfig::Detections {
                masks,
                masks_format,
                ..
            } if name == masks.as_str() => detections::check_masks(
                &described,
                *masks_format,
                &shape,
                model.num_classes(),
                &mut problems,
            ),
            OutputConfig::Detections { .. } => {}
        }
    }
    problems
}

/// An ONNX Runtime execution provider.
#[derive(Clone, Debug, serde::Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderConfig {
    Cpu,
    Cuda {
        #[serde(default)]
        device_id: i32,
        /// cuDNN convolution algorithm search: `exhaustive`, `heuristic` or `default`.
        #[serde(default = "default_conv_search")]
        conv_algo_search: String,
        /// Limit of the CUDA memory arena in MiB; unlimited when absent.
        #[serde(default)]
        memory_limit_mb: Option<usize>,
    },
    Tensorrt {
        #[serde(default)]
        device_id: i32,
        /// Build FP16 engines.
        #[serde(default)]
        fp16: bool,
        /// Directory where built engines are cached between runs.
        #[serde(default)]
        engine_cache_dir: Option<PathBuf>,
        /// Builder workspace in MiB.
        #[serde(default)]
        workspace_mb: Option<usize>,
    },
    /// ONNX Runtime's OpenVINO execution provider, loaded as a plugin library.
    Openvino {
        /// `CPU`, `GPU` or `NPU`.
        #[serde(default = "default_openvino_device")]
        device: String,
        /// `FP32`, `BF16`, `FP16` (inference precision hint), or `INT8` for QDQ models.
        #[serde(default = "default_openvino_precision")]
        precision: String,
        /// The plugin library (`libonnxruntime_providers_openvino_plugin.so`).
        #[serde(default)]
        library: Option<PathBuf>,
    },
}

pub const OPENVINO_DEVICES: [&str; 3] = ["CPU", "GPU", "NPU"];
pub const OPENVINO_PRECISIONS: [&str; 4] = ["FP32", "BF16", "FP16", "INT8"];

fn default_openvino_device() -> String {
    "CPU".into()
}

fn default_openvino_precision() -> String {
    "FP32".into()
}

fn default_conv_search() -> String {
    "exhaustive".into()
}
