"""Published production models through qlite, held to LiteRT and to a committed table.

usage: check.py QLITE WHEEL_DIR EXPECTED [--update]

For every .tflite file in the downloaded wheels:
- `qlite inspect` must read it;
- `qlite convert` (no quantization) must write it back, and LiteRT (default resolver) must give
  on the re-export exactly what it gives on the original, when LiteRT can load the original;
- `qlite run --kernels reference` on a seeded input must match LiteRT's reference kernels on
  the re-export (float: |a - b| <= 1e-6 + 1e-5 |b|), unless the model holds ops qlite does not
  model, which `run` must then name; `qlite run` (the fast kernels, float layers as SGEMM) must
  stay within twice what LiteRT's own default path drifts from its reference kernels.
For every .onnx file:
- `qlite inspect` must read it as published (dynamic dimensions and all);
- `qlite convert --input-shape` (the shape its package feeds it, from ONNX_SHAPES) must write a
  .tflite whose `qlite run` matches onnxruntime on the original
  (|a - b| <= 1e-5 max|b| + 1e-4 |b|) and LiteRT's reference kernels on the conversion
  (|a - b| <= 1e-6 max|b| + 1e-5 |b|). A deep network amplifies float rounding: where that
  fails, the largest difference must stay within onnxruntime's own noise: twice the largest
  difference between its outputs with and without its graph optimizations;
- `qlite convert --quantize int8`, calibrated on two seeded samples, must write a file that
  LiteRT's reference kernels run to exactly qlite's bytes;
- where the package picks the width per image (ONNX_RUNTIME_WIDTH), `qlite convert
  --input-shape x=1,3,48,?` keeps it known only at run time, and at two widths `qlite run`
  must match onnxruntime and LiteRT (resized) must match qlite.
The verdicts must equal EXPECTED (one line per model); `--update` rewrites it. A model that
stops loading or running, or a new disagreement, fails CI.
"""
import glob
import os
import subprocess
import sys
import zipfile

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType


def litert(path, xs, resolver, resize=False):
    it = Interpreter(model_path=path, experimental_op_resolver_type=resolver)
    if resize:
        for d, x in zip(it.get_input_details(), xs):
            it.resize_tensor_input(d["index"], x.shape)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), xs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(o["index"]).copy() for o in it.get_output_details()]


# The input shape each published ONNX model is fed by its package (RapidOCR: detection on a
# multiple of 32, recognition at height 48, the direction classifier at 48x192).
ONNX_SHAPES = {
    "ch_PP-OCRv4_det_infer.onnx": (1, 3, 320, 320),
    "ch_PP-OCRv4_rec_infer.onnx": (1, 3, 48, 320),
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": (1, 3, 48, 192),
}


# Models whose package feeds a width it picks per image: converted with that dimension kept
# known only at run time (`--input-shape x=1,3,48,?`), then run at these widths.
ONNX_RUNTIME_WIDTH = {
    "ch_PP-OCRv4_rec_infer.onnx": ("1,3,48,?", [(1, 3, 48, 320), (1, 3, 48, 97)]),
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": ("1,3,48,?", [(1, 3, 48, 192), (1, 3, 48, 61)]),
}


def close(got, want, atol_of_max, rtol):
    """The fraction of elements outside |a - b| <= atol_of_max * max|b| + rtol * |b|."""
    w = want.astype(np.float64)
    tol = atol_of_max * float(np.max(np.abs(w), initial=0.0)) + rtol * np.abs(w)
    return float(np.mean(np.abs(got.astype(np.float64) - w) > tol))


def qlite_run(qlite, model, xs, n_out, work, extra=()):
    for k, x in enumerate(xs):
        np.save(os.path.join(work, f"in{k}.npy"), x)
    cmd = [qlite, "run", model] + sum([["--input", os.path.join(work, f"in{k}.npy")] for k in range(len(xs))], [])
    cmd += sum([["--output", os.path.join(work, f"out{k}.npy")] for k in range(n_out)], []) + list(extra)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip()
    return [np.load(os.path.join(work, f"out{k}.npy")) for k in range(n_out)], ""


def onnx_verdict(qlite, path, work):
    import json

    import onnxruntime as ort

    name = os.path.basename(path)
    r = subprocess.run([qlite, "inspect", "--json", path], capture_output=True, text=True)
    if r.returncode != 0:
        return f"inspect fails: {r.stderr.strip()}"
    summary = json.loads(r.stdout)
    shape = ONNX_SHAPES.get(name)
    if shape is None or len(summary["inputs"]) != 1:
        return "read; no input shape known to check.py"
    input_name = summary["inputs"][0]["name"]
    spec = f"{input_name}=" + ",".join(str(d) for d in shape)
    out = os.path.join(work, name + ".tflite")
    r = subprocess.run([qlite, "convert", path, "--input-shape", spec, "-o", out], capture_output=True, text=True)
    if r.returncode != 0:
        return f"read; convert fails: {r.stderr.strip()}"
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: x})
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    unopt = ort.InferenceSession(path, plain, providers=["CPUExecutionProvider"])
    noise = max(float(np.max(np.abs(a.astype(np.float64) - b), initial=0.0))
                for a, b in zip(want, unopt.run(None, {session.get_inputs()[0].name: x})))

    def within(got, ref, atol_of_max, rtol):
        """'' (agrees), ' within onnxruntime's own noise', or None (differs)."""
        if all(close(g, w, atol_of_max, rtol) == 0 for g, w in zip(got, ref)):
            return ""
        worst = max(float(np.max(np.abs(g.astype(np.float64) - w), initial=0.0)) for g, w in zip(got, ref))
        # Twice the noise: how far onnxruntime's two graphs drift apart varies with the CPU.
        return " within onnxruntime's own noise" if worst <= 2 * noise else None

    got, err = qlite_run(qlite, out, [x], len(want), work)
    if got is None:
        return f"read, converted; run FAILS: {err}"
    parts = ["read, converted"]
    if any(g.shape != w.shape for g, w in zip(got, want)):
        return "; ".join(parts + ["run: output shapes differ from onnxruntime's"])
    w = within(got, want, 1e-5, 1e-4)
    if w is None:
        bad = max(close(g, w, 1e-5, 1e-4) for g, w in zip(got, want))
        parts.append(f"run DIFFERS from onnxruntime ({bad:.2%} of elements)")
    else:
        parts.append("run matches onnxruntime" + w)
    lite = litert(out, [x], OpResolverType.BUILTIN_REF)
    w = within(got, lite, 1e-6, 1e-5)
    if w is None:
        bad = max(close(g, w, 1e-6, 1e-5) for g, w in zip(got, lite))
        parts.append(f"LiteRT DIFFERS on the conversion ({bad:.2%} of elements)")
    else:
        parts.append("LiteRT runs the conversion equal" + w)
    calib = os.path.join(work, "calibration.npy")
    np.save(calib, np.random.default_rng(1).uniform(-1, 1, (2,) + tuple(shape[1:])).astype(np.float32))
    q = os.path.join(work, name + ".int8.tflite")
    r = subprocess.run([qlite, "convert", path, "--input-shape", spec, "--quantize", "int8", "--calibration", calib,
                        "-o", q], capture_output=True, text=True)
    if r.returncode != 0:
        return "; ".join(parts + [f"int8 convert fails: {r.stderr.strip()}"])
    got, err = qlite_run(qlite, q, [x], len(want), work)
    if got is None:
        return "; ".join(parts + [f"int8 run FAILS: {err}"])
    lite = litert(q, [x], OpResolverType.BUILTIN_REF)
    same = all(g.dtype == w.dtype and np.array_equal(g, w) for g, w in zip(got, lite))
    parts.append("int8 bit-exact with LiteRT's reference kernels" if same else "int8 DIFFERS from LiteRT's reference kernels")
    if name in ONNX_RUNTIME_WIDTH:
        parts.append(runtime_width_verdict(qlite, path, work, input_name, session, unopt))
    return "; ".join(parts)


def runtime_width_verdict(qlite, path, work, input_name, session, unopt):
    """Convert with the width known only at run time; at each width, `qlite run` must match
    onnxruntime and LiteRT's reference kernels (resized) must match qlite's reference kernels,
    each within the tolerances above or onnxruntime's own noise at that width."""
    dims, shapes = ONNX_RUNTIME_WIDTH[os.path.basename(path)]
    out = os.path.join(work, "runtime_width.tflite")
    r = subprocess.run([qlite, "convert", path, "--input-shape", f"{input_name}={dims}", "-o", out],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return f"width known only at run time: convert fails: {r.stderr.strip()}"
    verdicts = []
    for shape in shapes:
        x = np.random.default_rng(shape[-1]).uniform(-1, 1, shape).astype(np.float32)
        feed = {session.get_inputs()[0].name: x}
        want, plain = session.run(None, feed), unopt.run(None, feed)
        noise = max(float(np.max(np.abs(a.astype(np.float64) - b), initial=0.0)) for a, b in zip(want, plain))
        got, err = qlite_run(qlite, out, [x], len(want), work)
        ref, err2 = qlite_run(qlite, out, [x], len(want), work, ["--kernels", "reference"])
        if got is None or ref is None:
            return f"width known only at run time: run at {shape[-1]} FAILS: {err or err2}"
        lite = litert(out, [x], OpResolverType.BUILTIN_REF, resize=True)

        def ok(a, b, atol_of_max, rtol):
            if any(p.shape != q.shape for p, q in zip(a, b)):
                return False
            if all(close(p, q, atol_of_max, rtol) == 0 for p, q in zip(a, b)):
                return True
            return max(float(np.max(np.abs(p.astype(np.float64) - q), initial=0.0)) for p, q in zip(a, b)) <= 2 * noise

        good = ok(got, want, 1e-5, 1e-4) and ok(ref, lite, 1e-6, 1e-5)
        verdicts.append(f"{shape[-1]} {'matches' if good else 'DIFFERS'}")
    return "width known only at run time (" + ", ".join(verdicts) + " onnxruntime and LiteRT)"


def verdict(qlite, path, work):
    name = os.path.basename(path)
    r = subprocess.run([qlite, "inspect", "--json", path], capture_output=True, text=True)
    if r.returncode != 0:
        return f"inspect fails: {r.stderr.strip()}"
    import json

    summary = json.loads(r.stdout)
    inputs = [(i["dtype"], [int(d) if d.isdigit() else 1 for d in i["shape"].strip("[]").split(",") if d])
              for i in summary["inputs"]]
    out = os.path.join(work, name + ".qlite.tflite")
    r = subprocess.run([qlite, "convert", path, "-o", out], capture_output=True, text=True)
    if r.returncode != 0:
        return f"convert fails: {r.stderr.strip()}"
    rng = np.random.default_rng(0)
    dtypes = {"f32": np.float32, "i8": np.int8, "u8": np.uint8}
    if any(d not in dtypes for d, _ in inputs):
        return "inputs of an unhandled dtype"
    xs = [rng.uniform(0, 1, s).astype(dtypes[d]) if d == "f32" else rng.integers(-128, 127, s).astype(dtypes[d])
          for d, s in inputs]
    parts = []
    try:
        a, b = litert(path, xs, OpResolverType.AUTO), litert(out, xs, OpResolverType.AUTO)
        same = len(a) == len(b) and all(p.dtype == q.dtype and np.array_equal(p, q) for p, q in zip(a, b))
        parts.append("re-export equal in LiteRT" if same else "re-export DIFFERS in LiteRT")
    except RuntimeError as e:
        parts.append("LiteRT cannot load it (" + str(e).splitlines()[0].split(":")[0] + ")")
    for k, x in enumerate(xs):
        np.save(os.path.join(work, f"in{k}.npy"), x)
    n_out = len(summary["outputs"])

    def run_qlite(kernels):
        cmd = [qlite, "run", out, "--kernels", kernels]
        cmd += sum([["--input", os.path.join(work, f"in{k}.npy")] for k in range(len(xs))], [])
        cmd += sum([["--output", os.path.join(work, f"out{k}.npy")] for k in range(n_out)], [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            return None, r.stderr.strip()
        return [np.load(os.path.join(work, f"out{k}.npy")) for k in range(n_out)], ""

    ref_run, err = run_qlite("reference")
    if ref_run is None:
        parts.append("run refused: " + err[err.find("cannot run"):] if "cannot run" in err else "run FAILS: " + err)
        return "; ".join(parts)
    try:
        want = litert(out, xs, OpResolverType.BUILTIN_REF)
        default = litert(out, xs, OpResolverType.AUTO)
    except RuntimeError as e:
        return "; ".join(parts + ["LiteRT's reference kernels cannot run the re-export: " + str(e).splitlines()[0]])
    worst = 0.0
    for k, w in enumerate(want):
        g = ref_run[k]
        if g.shape != w.shape or g.dtype != w.dtype:
            return "; ".join(parts + [f"run: output {k} is {g.dtype}{list(g.shape)}, LiteRT {w.dtype}{list(w.shape)}"])
        if w.dtype.kind == "f":
            bad = np.abs(g.astype(np.float64) - w) > 1e-6 + 1e-5 * np.abs(w.astype(np.float64))
            worst = max(worst, float(np.mean(bad)))
        elif not np.array_equal(g, w):
            worst = 1.0
    parts.append("run equals LiteRT's reference kernels" if worst == 0 else f"run DIFFERS from LiteRT ({worst:.1%} of elements)")
    # The fast kernels: float sums in blocks (SGEMM), as LiteRT's default path sums. Each output
    # within twice what LiteRT's own default path drifts from its reference kernels on the same
    # input (integer outputs: the same bytes).
    fast, err = run_qlite("fast")
    if fast is None:
        return "; ".join(parts + ["fast kernels FAIL: " + err])
    ok = True
    for k, w in enumerate(want):
        g, d = fast[k].astype(np.float64), default[k].astype(np.float64)
        if w.dtype.kind != "f":
            ok = ok and np.array_equal(fast[k], w)
            continue
        scale = float(np.max(np.abs(w), initial=0.0))
        noise = float(np.max(np.abs(d - w), initial=0.0))
        ok = ok and float(np.max(np.abs(g - w), initial=0.0)) <= 2 * noise + 1e-6 * scale
    parts.append("fast kernels within LiteRT's own float noise" if ok else "fast kernels DIFFER beyond LiteRT's own float noise")
    return "; ".join(parts)


def main():
    qlite, wheels, expected = sys.argv[1:4]
    update = "--update" in sys.argv
    work = os.path.join(wheels, "work")
    os.makedirs(work, exist_ok=True)
    models = []
    for whl in sorted(glob.glob(os.path.join(wheels, "*.whl"))):
        with zipfile.ZipFile(whl) as z:
            for n in sorted(z.namelist()):
                if n.endswith(".tflite") or n.endswith(".onnx"):
                    dest = os.path.join(wheels, "models", n)
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    with open(dest, "wb") as f:
                        f.write(z.read(n))
                    models.append(dest)
    if not models:
        print("published: no model found in the downloaded wheels", file=sys.stderr)
        return 1
    lines = []
    for m in models:
        v = onnx_verdict(qlite, m, work) if m.endswith(".onnx") else verdict(qlite, m, work)
        lines.append(f"{os.path.basename(m)}: {v}")
        print(lines[-1], flush=True)
    text = "".join(line + "\n" for line in lines)
    if update:
        with open(expected, "w") as f:
            f.write(text)
        print(f"published: wrote {expected}")
        return 0
    want = open(expected).read() if os.path.exists(expected) else ""
    if text != want:
        print("published: the verdicts differ from " + expected + " (rerun with --update after review):", file=sys.stderr)
        for line in want.splitlines():
            if line not in lines:
                print(f"  expected: {line}", file=sys.stderr)
        for line in lines:
            if line not in want.splitlines():
                print(f"  got:      {line}", file=sys.stderr)
        return 1
    ran = sum("run equals" in line or "LiteRT runs the conversion equal" in line for line in lines)
    print(f"published: {len(lines)} models read and converted, {ran} run equal to LiteRT's reference kernels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
