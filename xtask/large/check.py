"""LiteRT loads qlite's model over 2 GiB (constants after the flatbuffer) and agrees with qlite.

usage: check.py MODEL X.npy QLITE_Y.npy
"""
import os
import sys
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

model, x_path, y_path = sys.argv[1:4]
size = os.path.getsize(model)
assert size > 2**31, f"{model} is {size} bytes, not over 2 GiB"
x = np.load(x_path)
ours = np.load(y_path)
for name, resolver in [("reference", OpResolverType.BUILTIN_REF), ("default", OpResolverType.AUTO)]:
    t = time.time()
    it = Interpreter(model_path=model, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    y = it.get_tensor(it.get_output_details()[0]["index"])
    err = float(np.max(np.abs(y - ours)) / max(float(np.max(np.abs(y))), 1e-30))
    print(f"LiteRT {name}: loaded and ran the {size / 2**30:.2f} GiB model in {time.time() - t:.1f} s; "
          f"max relative difference from qlite {err:.2e}")
    assert y.shape == ours.shape, (y.shape, ours.shape)
    assert err <= 1e-5, f"LiteRT {name} differs from qlite by {err:.2e}"
    del it
print("large-model: ok")
