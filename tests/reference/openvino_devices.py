"""Independent reference for where OpenVINO can run here: ONNX Runtime's Python API.

Registers ONNX Runtime's OpenVINO plugin EP and prints the type of each hardware device it
offers, one per line (CPU, GPU, NPU). On an AMD EPYC the plugin offered none and this
printed nothing; segstream must then refuse `kind = "openvino"` by name.

    python openvino_devices.py LIBRARY
"""

import sys

import onnxruntime as ort


def main() -> None:
    ort.register_execution_provider_library("OpenVINO", sys.argv[1])
    for d in ort.get_ep_devices():
        if d.ep_name == "OpenVINOExecutionProvider":
            print(d.device.type.name)


if __name__ == "__main__":
    main()
