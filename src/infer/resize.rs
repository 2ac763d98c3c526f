//! A semantic model's final bilinear Resize of its class scores (the `UpsamplingBilinear2d`
//! or `interpolate` that ends most segmentation heads: DeepLabV3+'s x4), taken off the graph
//! when the session is made (`fuse_resize = true`, the default) and done by the argmax
//! instead ([`crate::frame::argmax_upsampled`]). ONNX Runtime then never writes the score
//! volume at the input's size (19 planes of 640x368 floats, 17.9 MB, for the demo's frames)
//! and the argmax never reads it back: it reads the model's own 16 times smaller output and
//! interpolates only where a class boundary passes. The labels are the Resize's and then
//! the argmax's but for float rounding at near-ties.
//!
//! Taken off only where the argmax computes exactly what the Resize did: a `Resize` of the
//! default domain (opset 11 or later) in mode `linear` with `align_corners`, `half_pixel` or
//! `pytorch_half_pixel` coordinates, no antialias and no `axes`, by constant scales
//! `[1, 1, sh, sw]` of whole factors, whose output is the model's scores output and feeds no
//! other node; in a model whose weights are inside its file (the edited model is loaded from
//! memory) and whose graph has no subgraphs. Anything else keeps the model whole, as do
//! tiling, in-graph pre- and post-processing and a stretched input. Scores a later stage
//! reads (refine) are then the Resize's input, with its up-sampling beside them
//! (`ClassScores::upsampling`), and refine reads them through it. The model's file is never
//! rewritten.

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::{DataLocation, DataType};
use onnx_protobuf::{type_proto, GraphProto, ModelProto, NodeProto, TensorProto};
use protobuf::Message;

use crate::frame::{Alignment, Upsampling};

/// `bytes` (an ONNX model) without the final Resize that writes `output`, and that Resize's
/// up-sampling; `None` where the model ends otherwise (see the module's conditions). The
/// value the Resize read is renamed `output`, with its height and width left unknown.
pub fn cut_final_resize(
    bytes: &[u8],
    output: &str,
) -> Result<Option<(Vec<u8>, Upsampling)>, String> {
    let mut model =
        ModelProto::parse_from_bytes(bytes).map_err(|e| format!("not an ONNX model: {e}"))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(0, |o| o.version);
    let Some(graph) = model.graph.as_mut() else {
        return Ok(None);
    };
    if opset < 11 || external_or_nested(graph) {
        return Ok(None);
    }
    let Some(at) = graph
        .node
        .iter()
        .position(|n| n.output.iter().any(|o| o == output))
    else {
        return Ok(None);
    };
    let Some(up) = upsampling(graph, &graph.node[at]) else {
        return Ok(None);
    };
    let x = graph.node[at].input[0].clone();
    let read_elsewhere = graph
        .node
        .iter()
        .any(|n| n.input.iter().any(|i| i == output));
    let made_by_a_node = graph.node.iter().any(|n| n.output.contains(&x));
    let an_output_itself = graph.output.iter().any(|o| o.name == x);
    if read_elsewhere || !made_by_a_node || an_output_itself {
        return Ok(None);
    }
    let resize = graph.node.remove(at);
    remove_unread(graph, &resize.input[1..]);
    for n in graph.node.iter_mut() {
        for name in n.input.iter_mut().chain(n.output.iter_mut()) {
            if *name == x {
                *name = output.to_owned();
            }
        }
    }
    graph.value_info.retain(|v| v.name != x && v.name != output);
    for v in graph.output.iter_mut().filter(|v| v.name == output) {
        let tensor = v.type_.as_mut().and_then(|t| t.value.as_mut());
        if let Some(type_proto::Value::TensorType(t)) = tensor {
            if let Some(shape) = t.shape.as_mut() {
                for d in shape.dim.iter_mut().skip(2) {
                    d.value = None;
                }
            }
        }
    }
    let bytes = model
        .write_to_bytes()
        .map_err(|e| format!("cannot write the edited model: {e}"))?;
    Ok(Some((bytes, up)))
}

/// Whether a tensor's data lies in another file, or a node holds a subgraph (which may read
/// the renamed value by name).
fn external_or_nested(graph: &GraphProto) -> bool {
    let outside = |t: &TensorProto| t.data_location.enum_value() == Ok(DataLocation::EXTERNAL);
    graph.initializer.iter().any(outside)
        || graph.node.iter().flat_map(|n| &n.attribute).any(|a| {
            a.t.as_ref().is_some_and(outside)
                || matches!(
                    a.type_.enum_value(),
                    Ok(AttributeType::GRAPH | AttributeType::GRAPHS)
                )
        })
}

/// The up-sampling `node` does, if it is a Resize the argmax reproduces exactly.
fn upsampling(graph: &GraphProto, node: &NodeProto) -> Option<Upsampling> {
    let ours = node.domain.is_empty() || node.domain == "ai.onnx";
    if node.op_type != "Resize" || !ours || node.input.len() < 3 {
        return None;
    }
    let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
    let string =
        |name: &str, default: &str| attr(name).map_or(default.as_bytes().to_vec(), |a| a.s.clone());
    let int = |name: &str| attr(name).map_or(0, |a| a.i);
    if string("mode", "nearest") != b"linear"
        || int("antialias") != 0
        || int("exclude_outside") != 0
        || attr("axes").is_some()
    {
        return None;
    }
    let alignment = match &string("coordinate_transformation_mode", "half_pixel")[..] {
        b"align_corners" => Alignment::Corners,
        b"half_pixel" | b"pytorch_half_pixel" => Alignment::HalfPixel,
        _ => return None,
    };
    if node.input.get(3).is_some_and(|s| !s.is_empty()) {
        return None;
    }
    let scales = constant_floats(graph, &node.input[2])?;
    let whole = |s: f32| (s >= 1.0 && s.fract() == 0.0 && s <= 64.0).then_some(s as u32);
    match scales[..] {
        [1.0, 1.0, sh, sw] => Some(Upsampling {
            factor: (whole(sh)?, whole(sw)?),
            alignment,
        }),
        _ => None,
    }
}

/// The values of float tensor `name`, an initializer or a `Constant` node's output.
fn constant_floats(graph: &GraphProto, name: &str) -> Option<Vec<f32>> {
    let tensor = graph
        .initializer
        .iter()
        .find(|t| t.name == name)
        .or_else(|| {
            let node = graph
                .node
                .iter()
                .find(|n| n.op_type == "Constant" && n.output.iter().any(|o| o == name))?;
            node.attribute
                .iter()
                .find(|a| a.name == "value")
                .and_then(|a| a.t.as_ref())
        })?;
    if tensor.data_type != DataType::FLOAT as i32 {
        return None;
    }
    if !tensor.float_data.is_empty() {
        return Some(tensor.float_data.clone());
    }
    let raw = &tensor.raw_data;
    (raw.len() % 4 == 0).then(|| {
        raw.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    })
}

/// Drops the `Constant` nodes and initializers (with their graph inputs, in models that list
/// initializers as inputs) named in `names` that no node reads any more.
fn remove_unread(graph: &mut GraphProto, names: &[String]) {
    for name in names.iter().filter(|n| !n.is_empty()) {
        if graph.node.iter().any(|n| n.input.iter().any(|i| i == name))
            || graph.output.iter().any(|o| o.name == *name)
        {
            continue;
        }
        graph
            .node
            .retain(|n| !(n.op_type == "Constant" && n.output.iter().any(|o| o == name)));
        graph.initializer.retain(|t| t.name != *name);
        graph.input.retain(|i| i.name != *name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
    use onnx_protobuf::{
        AttributeProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };

    fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            s: v.as_bytes().to_vec(),
            type_: AttributeType::STRING.into(),
            ..Default::default()
        }
    }

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    /// A float tensor named `name` of shape `[N, 19, H, W]`.
    fn value(name: &str) -> ValueInfoProto {
        let dims = [Some(1), Some(19), Some(64), Some(64)];
        let mut v = ValueInfoProto {
            name: name.into(),
            ..Default::default()
        };
        let mut t = type_proto::Tensor {
            elem_type: DataType::FLOAT as i32,
            ..Default::default()
        };
        t.shape = Some(TensorShapeProto {
            dim: dims
                .iter()
                .map(|d| Dimension {
                    value: d.map(dimension::Value::DimValue),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .into();
        let mut ty = TypeProto::default();
        ty.set_tensor_type(t);
        v.type_ = Some(ty).into();
        v
    }

    /// `x -> Relu -> Resize(scales) -> logits`, with `edit` applied to the Resize and the
    /// graph.
    fn model(scales: &[f32], edit: impl Fn(&mut NodeProto, &mut GraphProto)) -> Vec<u8> {
        let mut resize = node("Resize", &["r", "", "scales"], "logits");
        resize.attribute = vec![
            string("mode", "linear"),
            string("coordinate_transformation_mode", "align_corners"),
        ];
        let scales = TensorProto {
            name: "scales".into(),
            dims: vec![scales.len() as i64],
            data_type: DataType::FLOAT as i32,
            raw_data: scales.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        };
        let mut graph = GraphProto {
            node: vec![node("Relu", &["x"], "r")],
            initializer: vec![scales],
            input: vec![value("x")],
            output: vec![value("logits")],
            ..Default::default()
        };
        edit(&mut resize, &mut graph);
        graph.node.push(resize);
        let m = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                version: 17,
                ..Default::default()
            }],
            graph: Some(graph).into(),
            ..Default::default()
        };
        m.write_to_bytes().unwrap()
    }

    #[test]
    fn a_final_linear_resize_comes_off_and_its_input_takes_the_output_name() {
        let bytes = model(&[1.0, 1.0, 4.0, 4.0], |_, _| {});
        let (edited, up) = cut_final_resize(&bytes, "logits").unwrap().unwrap();
        assert_eq!(
            up,
            Upsampling {
                factor: (4, 4),
                alignment: Alignment::Corners
            }
        );
        let m = ModelProto::parse_from_bytes(&edited).unwrap();
        let g = m.graph.as_ref().unwrap();
        assert_eq!(g.node.len(), 1, "only the Relu is left");
        assert_eq!(g.node[0].output, ["logits"]);
        assert!(g.initializer.is_empty(), "the scales went with the Resize");
        let Some(type_proto::Value::TensorType(t)) = &g.output[0].type_.value else {
            panic!("the output keeps its tensor type")
        };
        let dims: Vec<_> = t.shape.dim.iter().map(|d| d.value.clone()).collect();
        assert_eq!(
            dims,
            [
                Some(dimension::Value::DimValue(1)),
                Some(dimension::Value::DimValue(19)),
                None,
                None
            ],
            "batch and classes kept, height and width now unknown"
        );
    }

    #[test]
    fn half_pixel_is_the_default_convention() {
        let bytes = model(&[1.0, 1.0, 2.0, 2.0], |r, _| {
            r.attribute.retain(|a| a.name == "mode");
        });
        let (_, up) = cut_final_resize(&bytes, "logits").unwrap().unwrap();
        assert_eq!(up.factor, (2, 2));
        assert_eq!(up.alignment, Alignment::HalfPixel);
    }

    /// What the argmax would not reproduce exactly keeps the model whole.
    #[test]
    fn other_endings_keep_the_model_whole() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "nearest",
                model(&[1.0, 1.0, 4.0, 4.0], |r, _| {
                    r.attribute[0] = string("mode", "nearest")
                }),
            ),
            (
                "asymmetric",
                model(&[1.0, 1.0, 4.0, 4.0], |r, _| {
                    r.attribute[1] = string("coordinate_transformation_mode", "asymmetric")
                }),
            ),
            (
                "a fractional factor",
                model(&[1.0, 1.0, 2.5, 2.5], |_, _| {}),
            ),
            ("scaled channels", model(&[1.0, 2.0, 4.0, 4.0], |_, _| {})),
            (
                "sizes instead of scales",
                model(&[1.0, 1.0, 4.0, 4.0], |r, _| r.input.push("sizes".into())),
            ),
            (
                "scales computed at run time",
                model(&[1.0, 1.0, 4.0, 4.0], |_, g| {
                    g.initializer.clear();
                    g.node.push(node("Shape", &["x"], "scales"));
                }),
            ),
            (
                "the output read again",
                model(&[1.0, 1.0, 4.0, 4.0], |_, g| {
                    g.node.push(node("Relu", &["logits"], "again"));
                }),
            ),
            (
                "external weights",
                model(&[1.0, 1.0, 4.0, 4.0], |_, g| {
                    g.initializer[0].data_location = DataLocation::EXTERNAL.into();
                }),
            ),
            (
                "another op",
                model(&[1.0, 1.0, 4.0, 4.0], |r, _| r.op_type = "Upsample".into()),
            ),
        ];
        for (what, bytes) in cases {
            assert!(
                cut_final_resize(&bytes, "logits").unwrap().is_none(),
                "{what}"
            );
        }
        let whole = model(&[1.0, 1.0, 4.0, 4.0], |_, _| {});
        assert!(cut_final_resize(&whole, "other").unwrap().is_none());
        assert!(cut_final_resize(b"not a model", "logits").is_err());
    }
}
