//! Pre- and post-processing as ONNX graphs on the session's device (`pre_post = "graph"`):
//! the frame goes in as `uint8` RGB pixels and the labels come back as `uint8` class
//! indices, so on a GPU a frame crosses the bus once each way, 19 times smaller than the
//! scores.
//!
//! Two small graphs are chained to the model's session and run on its execution providers:
//! `pre` (`uint8 [N, H, W, 3]`, or the decoder's NV12 planes, to the model's input: colour order, scale, mean and std,
//! layout, then the size policy's padding or bilinear resize, then the input's element
//! type) and `post` (the model's scores to labels: bilinear up-sampling with half-pixel
//! centres to the model input's size, the crop back to the frame, ArgMax, `uint8`). They
//! compute what the host path computes (`preprocess`, `frame::argmax_scores`), in the same
//! order, so the labels agree but for float rounding at near-ties.
//!
//! The graphs are built at model load with ONNX Runtime's model editor (`ort::editor`):
//! no ONNX files to ship or keep in step with the model configs, no protobuf code, and the
//! user's model file is never rewritten (its opset, external data and size stay its own);
//! the graphs use opset 17 whatever the model's.

use ort::editor::{Graph, Model as OnnxModel, Node, Opset, ONNX_DOMAIN};
use ort::memory::Allocator;
use ort::operator::Attribute;
use ort::session::builder::SessionBuilder;
use ort::session::Session;
use ort::value::{
    Outlet, PrimitiveTensorElementType, Shape, SymbolicDimensions, Tensor, TensorElementType,
    ValueType,
};

use super::model::{ColorOrder, InputConfig, InputType, Layout, SizePolicy};
use crate::frame::YuvColour;

/// The opset of the generated graphs.
const OPSET: u32 = 17;

/// ONNX `TensorProto.DataType` codes for `Cast`.
const FLOAT: i64 = 1;
const UINT8: i64 = 2;
const FLOAT16: i64 = 10;

/// Names of the graphs' inputs and outputs.
pub const FRAME: &str = "frame";
pub const LUMA: &str = "luma";
pub const CHROMA: &str = "chroma";
pub const PADS: &str = "pads";
pub const SIZES: &str = "sizes";
pub const IMAGE: &str = "image";
pub const SCORES: &str = "scores";
pub const ENDS: &str = "ends";
pub const LABELS: &str = "labels";

/// A graph under construction: nodes are numbered, each writes one named output.
struct Builder {
    graph: Graph,
    nodes: usize,
}

impl Builder {
    fn new(inputs: Vec<Outlet>, outputs: Vec<Outlet>) -> ort::Result<Self> {
        let mut graph = Graph::new()?;
        graph.set_inputs(inputs)?;
        graph.set_outputs(outputs)?;
        Ok(Builder { graph, nodes: 0 })
    }

    /// Adds `op` on `inputs`; returns the name of its output.
    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attributes: Vec<Attribute>,
    ) -> ort::Result<String> {
        self.nodes += 1;
        let output = format!("{}_{}", op.to_lowercase(), self.nodes);
        let name = format!("node_{}", self.nodes);
        self.graph.add_node(Node::new(
            op,
            ONNX_DOMAIN,
            name,
            inputs,
            [output.as_str()],
            attributes,
        )?)?;
        Ok(output)
    }

    /// Names `last` as the graph output `name`.
    fn finish(&mut self, last: &str, name: &str) -> ort::Result<()> {
        self.nodes += 1;
        let node = format!("node_{}", self.nodes);
        self.graph.add_node(Node::new(
            "Identity",
            ONNX_DOMAIN,
            node,
            [last],
            [name],
            [],
        )?)
    }

    /// A constant tensor.
    fn constant<T: PrimitiveTensorElementType + Copy + std::fmt::Debug>(
        &mut self,
        name: &str,
        shape: &[i64],
        values: &[T],
    ) -> ort::Result<String> {
        let mut tensor = Tensor::<T>::new(&Allocator::default(), shape.to_vec())?;
        tensor.extract_tensor_mut().1.copy_from_slice(values);
        self.graph.add_initializer(name, tensor, false)?;
        Ok(name.to_string())
    }

    fn session(self, options: &SessionBuilder) -> ort::Result<Session> {
        let mut model = OnnxModel::new([Opset::new(ONNX_DOMAIN, OPSET)?])?;
        model.set_graph(self.graph)?;
        model.into_session(options)
    }
}

/// A tensor type whose dimensions are named where they vary (`""` for fixed ones).
fn tensor(ty: TensorElementType, dims: &[(i64, &str)]) -> ValueType {
    ValueType::Tensor {
        ty,
        shape: Shape::new(dims.iter().map(|d| d.0)),
        dimension_symbols: SymbolicDimensions::new(dims.iter().map(|d| d.1.to_string())),
    }
}

fn cast(to: i64) -> ort::Result<Vec<Attribute>> {
    Ok(vec![Attribute::new("to", to)?])
}

fn bilinear() -> ort::Result<Vec<Attribute>> {
    Ok(vec![
        Attribute::new("mode", "linear".to_string())?,
        Attribute::new("coordinate_transformation_mode", "half_pixel".to_string())?,
    ])
}

/// The frames a `pre` graph takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FrameFormat {
    /// `frame`: `uint8 [N, H, W, 3]`, RGB.
    Rgb,
    /// `luma` (`uint8 [N, H, W]`) and `chroma` (`uint8 [N, ceil(H/2), ceil(W/2), 2]`, U and
    /// V interleaved): NV12 planes, encoded as the colour says.
    Nv12(YuvColour),
}

/// The pre-processing graph for `input` and frames in `format`: the frames and, by the
/// size policy, `pads` (`int64 [8]`, NCHW: only the bottom and right ones non-zero) or
/// `sizes` (`int64 [4]`, NCHW) in; `image`, the model's input, out.
pub fn pre(
    input: &InputConfig,
    format: FrameFormat,
    options: &SessionBuilder,
) -> ort::Result<Session> {
    let (ty, cast_to) = match input.dtype {
        InputType::Float32 => (TensorElementType::Float32, None),
        InputType::Float16 => (TensorElementType::Float16, Some(FLOAT16)),
    };
    let out_dims: &[(i64, &str)] = match input.layout {
        Layout::NCHW => &[(-1, "N"), (3, ""), (-1, "h"), (-1, "w")],
        Layout::NHWC => &[(-1, "N"), (-1, "h"), (-1, "w"), (3, "")],
        Layout::CHW => &[(3, ""), (-1, "h"), (-1, "w")],
    };
    let size_input = match input.size {
        SizePolicy::Pad { .. } => Outlet::new(PADS, tensor(TensorElementType::Int64, &[(8, "")])),
        SizePolicy::Stretch { .. } => {
            Outlet::new(SIZES, tensor(TensorElementType::Int64, &[(4, "")]))
        }
    };
    let u8 = TensorElementType::Uint8;
    let mut inputs = match format {
        FrameFormat::Rgb => vec![Outlet::new(
            FRAME,
            tensor(u8, &[(-1, "N"), (-1, "H"), (-1, "W"), (3, "")]),
        )],
        FrameFormat::Nv12(_) => vec![
            Outlet::new(LUMA, tensor(u8, &[(-1, "N"), (-1, "H"), (-1, "W")])),
            Outlet::new(
                CHROMA,
                tensor(u8, &[(-1, "N"), (-1, "h2"), (-1, "w2"), (2, "")]),
            ),
        ],
    };
    inputs.push(size_input);
    let mut g = Builder::new(inputs, vec![Outlet::new(IMAGE, tensor(ty, out_dims))])?;
    let mut x = match format {
        FrameFormat::Rgb => rgb_planes(&mut g, input.color)?,
        FrameFormat::Nv12(colour) => nv12_planes(&mut g, colour, input.color)?,
    };
    // As `preprocess::normalize`: v * 1 / (scale * std) - mean / std, per channel, as one
    // inference-mode BatchNormalization (mean 0, variance + epsilon exactly 1 in f32): one
    // pass over the planes where a Mul and an Add make two (5 ms against 2 at 1920x1080 on
    // the CPU). Epsilon is ONNX's default because cuDNN raises smaller ones to its minimum.
    let a: Vec<f32> = (0..3).map(|k| 1.0 / (input.scale * input.std[k])).collect();
    let b: Vec<f32> = (0..3).map(|k| -input.mean[k] / input.std[k]).collect();
    let a = g.constant("multiplier", &[3], &a)?;
    let b = g.constant("offset", &[3], &b)?;
    let zero = g.constant("no_mean", &[3], &[0f32; 3])?;
    const EPSILON: f32 = 1e-5;
    let one = g.constant("unit_variance", &[3], &[1.0 - EPSILON; 3])?;
    x = g.node(
        "BatchNormalization",
        &[&x, &a, &b, &zero, &one],
        vec![Attribute::new("epsilon", EPSILON)?],
    )?;
    x = match input.size {
        // Zeros after normalization: the mean colour, as the host path pads.
        SizePolicy::Pad { .. } => g.node("Pad", &[&x, PADS], vec![])?,
        SizePolicy::Stretch { .. } => g.node("Resize", &[&x, "", "", SIZES], bilinear()?)?,
    };
    match input.layout {
        Layout::NCHW => {}
        Layout::NHWC => {
            x = g.node(
                "Transpose",
                &[&x],
                vec![Attribute::new("perm", vec![0i64, 2, 3, 1])?],
            )?
        }
        Layout::CHW => {
            let axis = g.constant("batch_axis", &[1], &[0i64])?;
            x = g.node("Squeeze", &[&x, &axis], vec![])?;
        }
    }
    if let Some(to) = cast_to {
        x = g.node("Cast", &[&x], cast(to)?)?;
    }
    g.finish(&x, IMAGE)?;
    g.session(options)
}

/// `frame` as float planes `[N, 3, H, W]` in the model's colour order.
fn rgb_planes(g: &mut Builder, color: ColorOrder) -> ort::Result<String> {
    // Planes first, while the pixels are bytes (a quarter of the memory traffic of floats).
    let mut x = g.node(
        "Transpose",
        &[FRAME],
        vec![Attribute::new("perm", vec![0i64, 3, 1, 2])?],
    )?;
    if color == ColorOrder::BGR {
        let order = g.constant("bgr", &[3], &[2i64, 1, 0])?;
        x = g.node("Gather", &[&x, &order], vec![Attribute::new("axis", 1i64)?])?;
    }
    g.node("Cast", &[&x], cast(FLOAT)?)
}

/// `luma` and `chroma` as float RGB planes `[N, 3, H, W]` (0-255, clamped as a converter
/// to bytes clamps, not rounded) in the model's colour order: each chroma sample serves the
/// 2x2 pixels it covers, then one affine map per pixel gives the colours.
fn nv12_planes(g: &mut Builder, colour: YuvColour, color: ColorOrder) -> ort::Result<String> {
    let axis = g.constant("channel_axis", &[1], &[1i64])?;
    let y = g.node("Unsqueeze", &[LUMA, &axis], vec![])?;
    let mut c = g.node(
        "Transpose",
        &[CHROMA],
        vec![Attribute::new("perm", vec![0i64, 3, 1, 2])?],
    )?;
    let twice = g.constant("chroma_scales", &[4], &[1f32, 1.0, 2.0, 2.0])?;
    c = g.node(
        "Resize",
        &[&c, "", &twice],
        vec![
            Attribute::new("mode", "nearest".to_string())?,
            Attribute::new("coordinate_transformation_mode", "asymmetric".to_string())?,
            Attribute::new("nearest_mode", "floor".to_string())?,
        ],
    )?;
    // An odd height or width: the last chroma row or column serves one pixel, not two.
    let shape = g.node("Shape", &[LUMA], vec![])?;
    let (first, last) = (
        g.constant("size_first", &[1], &[1i64])?,
        g.constant("size_last", &[1], &[3i64])?,
    );
    let size = g.node("Slice", &[&shape, &first, &last], vec![])?;
    let starts = g.constant("chroma_starts", &[2], &[0i64, 0])?;
    let axes = g.constant("chroma_axes", &[2], &[2i64, 3])?;
    c = g.node("Slice", &[&c, &starts, &size, &axes], vec![])?;
    let mut x = g.node("Concat", &[&y, &c], vec![Attribute::new("axis", 1i64)?])?;
    x = g.node("Cast", &[&x], cast(FLOAT)?)?;
    let (m, offset) = colour.to_rgb();
    let order: [usize; 3] = match color {
        ColorOrder::RGB => [0, 1, 2],
        ColorOrder::BGR => [2, 1, 0],
    };
    let weights: Vec<f32> = order.iter().flat_map(|&k| m[k]).collect();
    let bias: Vec<f32> = order.iter().map(|&k| offset[k]).collect();
    // The map as a matrix product over the flattened planes, [3, 3] x [N, 3, H W]: a 1x1
    // Conv does the same, but the CPU provider reorders its input and output into blocked
    // layouts, which took 33 of the graph's 48 ms at 1920x1080.
    let weights = g.constant("yuv_to_rgb", &[3, 3], &weights)?;
    let bias = g.constant("yuv_to_rgb_offset", &[3, 1], &bias)?;
    let planes = g.node("Shape", &[&x], vec![])?;
    let flat = g.constant("flat_planes", &[3], &[0i64, 3, -1])?;
    x = g.node("Reshape", &[&x, &flat], vec![])?;
    x = g.node("MatMul", &[&weights, &x], vec![])?;
    x = g.node("Add", &[&x, &bias], vec![])?;
    x = g.node("Reshape", &[&x, &planes], vec![])?;
    let (lo, hi) = (
        g.constant("black", &[], &[0f32])?,
        g.constant("white", &[], &[255f32])?,
    );
    g.node("Clip", &[&x, &lo, &hi], vec![])
}

/// The post-processing graph for `[N, classes, h, w]` scores of element type `scores`:
/// `scores`, `sizes` (`int64 [4]`: the size to up-sample to, NCHW; only with `resize`) and
/// `ends` (`int64 [2]`: the frame's height and width) in; `labels` (`uint8 [N, H, W]`) out.
/// Without `resize`, the scores are already at the model input's size.
pub fn post(
    scores: TensorElementType,
    classes: usize,
    resize: bool,
    options: &SessionBuilder,
) -> ort::Result<Session> {
    let dims = [(-1, "N"), (classes as i64, ""), (-1, "h"), (-1, "w")];
    let mut inputs = vec![Outlet::new(SCORES, tensor(scores, &dims))];
    if resize {
        inputs.push(Outlet::new(
            SIZES,
            tensor(TensorElementType::Int64, &[(4, "")]),
        ));
    }
    inputs.push(Outlet::new(
        ENDS,
        tensor(TensorElementType::Int64, &[(2, "")]),
    ));
    let labels = tensor(TensorElementType::Uint8, &[(-1, "N"), (-1, "H"), (-1, "W")]);
    let mut g = Builder::new(inputs, vec![Outlet::new(LABELS, labels)])?;
    let mut x = SCORES.to_string();
    // The host path widens half-precision scores before interpolating; so does this.
    if scores == TensorElementType::Float16 {
        x = g.node("Cast", &[&x], cast(FLOAT)?)?;
    }
    if resize {
        x = g.node("Resize", &[&x, "", "", SIZES], bilinear()?)?;
    }
    // Ties go to the lowest class, as NumPy's argmax and the host path. The crop comes
    // after, on bytes: cheaper than cropping the scores, though padding rows are argmaxed.
    x = g.node(
        "ArgMax",
        &[&x],
        vec![
            Attribute::new("axis", 1i64)?,
            Attribute::new("keepdims", 0i64)?,
        ],
    )?;
    x = g.node("Cast", &[&x], cast(UINT8)?)?;
    let starts = g.constant("starts", &[2], &[0i64, 0])?;
    let axes = g.constant("axes", &[2], &[1i64, 2])?;
    x = g.node("Slice", &[&x, &starts, ENDS, &axes], vec![])?;
    g.finish(&x, LABELS)?;
    g.session(options)
}
