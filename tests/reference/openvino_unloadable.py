"""Writes a copy of a Mask R-CNN export that OpenVINO cannot load and ONNX Runtime's CPU
provider runs as before: its batched-NMS `If` then-branches go back to the empty int64
Constant torchvision exports (see export_models.empty_nms_from_input, which replaced them).
The tests use it to see which provider really ran a session.

    python tests/reference/openvino_unloadable.py IN.onnx OUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def main(src: str, dst: str) -> int:
    m = onnx.load(src)
    restored = 0
    for node in m.graph.node:
        if node.op_type != "If":
            continue
        then = next(a.g for a in node.attribute if a.name == "then_branch")
        if len(then.node) == 1 and then.node[0].op_type == "Identity":
            out = then.output[0].name
            del then.node[:]
            empty = numpy_helper.from_array(np.zeros((0,), np.int64))
            then.node.append(helper.make_node("Constant", [], [out], value=empty))
            restored += 1
    if restored == 0:
        print(f"{src}: no batched-NMS branch to restore", file=sys.stderr)
        return 1
    onnx.save(m, dst)
    print(restored)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
