"""Real-size ONNX files from the `onnx` wheel's light ImageNet CNNs.

The light models make their weights at load time (ConstantOfShape of a constant shape), so the
files are a few KB. For memory and speed measurements at real size, each ConstantOfShape is
replaced by an initializer of that shape holding seeded random values (BatchNorm variances made
positive), stored inline as raw data, as exporters write real models.

usage: onnx_real_size.py OUT_DIR NAME...   (NAME: resnet50, densenet121, vgg19, ...)
Prints one line per model: `<path> bytes=<size>`.
"""

import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def real_size(src, dst, seed):
    m = onnx.load(src)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    rng = np.random.default_rng(seed)
    # BatchNorm variances must stay positive: their tensors get |values|.
    positive = {n.input[4] for n in g.node if n.op_type == "BatchNormalization" and len(n.input) > 4}
    keep = []
    made = []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in inits:
            shape = [int(d) for d in numpy_helper.to_array(inits[n.input[0]])]
            v = (rng.standard_normal(shape) * 0.05).astype(np.float32)
            if n.output[0] in positive:
                v = np.abs(v) + 0.5
            made.append(numpy_helper.from_array(v, n.output[0]))
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(made)
    used = {i for n in g.node for i in n.input}
    for i in list(g.initializer):
        if i.name not in used:
            g.initializer.remove(i)
    # The shapes were also listed as graph inputs (initializers-as-inputs, old exporters).
    gone = {i for i in inits if i not in used}
    for i in list(g.input):
        if i.name in gone:
            g.input.remove(i)
    onnx.save(m, dst)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    data = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    for k, name in enumerate(sys.argv[2:]):
        dst = os.path.join(out, f"{name}.onnx")
        if not os.path.exists(dst):
            real_size(os.path.join(data, f"light_{name}.onnx"), dst, k)
        print(f"{dst} bytes={os.path.getsize(dst)}")


if __name__ == "__main__":
    main()
