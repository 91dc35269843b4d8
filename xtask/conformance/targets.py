"""`qlite check` held to the runtimes themselves, on every model of the conformance set.

- litert: LiteRT runs every one of these models (check.py), so `--target litert` must pass
  them all.
- tflm: each model is loaded, allocated and run in TensorFlow Lite Micro (the `tflite-micro`
  wheel). qlite's verdict must be TFLM's: a model check passes must run, a model check refuses
  must fail. TFLM cannot resize inputs, so a batched test input is cut to the model's batch.

usage: targets.py QLITE CONFORMANCE_DIR
"""
import collections
import json
import os
import subprocess
import sys

import numpy as np
from tflite_micro.python.tflite_micro import runtime

qlite, root = sys.argv[1], sys.argv[2]
cases = sorted(c for c in os.listdir(root) if os.path.exists(os.path.join(root, c, "model.tflite")))
CHUNK = 400


def check(target):
    """qlite's findings per case."""
    found = {}
    for k in range(0, len(cases), CHUNK):
        part = cases[k:k + CHUNK]
        r = subprocess.run([qlite, "check", "--target", target, "--json"] +
                           [os.path.join(root, c, "model.tflite") for c in part], capture_output=True, text=True)
        if r.returncode not in (0, 1):
            sys.exit(f"qlite check --target {target} failed: {r.stderr.strip()}")
        reports = json.loads(r.stdout)
        reports = reports if isinstance(reports, list) else [reports]
        for c, rep in zip(part, reports):
            found[c] = rep["unsupported"]
    return found


litert = check("litert")
refused = [(c, f[0]) for c, f in litert.items() if f]
print(f"litert: {len(cases)} models LiteRT runs; qlite check refuses {len(refused)}")
for c, f in refused[:20]:
    print("  ", c, f"op {f['index']} {f['op']} v{f['version']}: {f['reason']}")
if refused:
    sys.exit(1)
verdict = check("tflm")


def tflm_runs(case):
    d = os.path.join(root, case)
    try:
        it = runtime.Interpreter.from_file(os.path.join(d, "model.tflite"), arena_size=64 << 20)
        i = 0
        while os.path.exists(os.path.join(d, f"input_{i}.npy")):
            x = np.load(os.path.join(d, f"input_{i}.npy"))
            want = it.get_input_details(i)["shape"]
            if x.ndim == len(want) and x.ndim > 0 and x.shape[0] != want[0] and x.shape[1:] == tuple(want[1:]):
                x = x[:want[0]]
            it.set_input(x, i)
            i += 1
        it.invoke()
        return True, ""
    except Exception as e:  # TFLM reports every refusal as a RuntimeError
        return False, str(e).splitlines()[0] if str(e) else type(e).__name__


counts = collections.Counter()
wrong = []
for c in cases:
    ok, why = tflm_runs(c)
    ours = not verdict[c]
    counts[(ours, ok)] += 1
    if ours != ok:
        wrong.append((c, "qlite: supported" if ours else f"qlite: {verdict[c][0]['reason']}",
                      "TFLM runs it" if ok else f"TFLM: {why}"))
print(f"tflm: {len(cases)} models; both run: {counts[(True, True)]}, both refuse: {counts[(False, False)]}, "
      f"qlite wrong: {len(wrong)}")
for w in wrong[:50]:
    print("  ", *w)
sys.exit(1 if wrong else 0)
