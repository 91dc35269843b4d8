"""LiteRT conformance: run every model the Rust tests exported and compare with qlite.

Each case directory holds case.json:
  {"model": "model.tflite", "inputs": ["input_0.npy", ...], "expected": ["output_0.npy", ...],
   "compare": "float" | "hybrid" | "exact"}
where expected/ are qlite's own outputs (and "expected_reference", when present, what LiteRT's
reference kernels must give where they knowingly differ from the default ones). Every case
runs in LiteRT twice:
- with the reference kernels (OpResolverType.BUILTIN_REF): the judge. float: |ours - litert| <=
  1e-5 * max(|ours|, |litert|) + 1e-6 (float, and hybrid: float activations with int8 weights);
  exact: identical dtype, shape and values.
- with the default resolver (optimized kernels + XNNPACK): must load and run with the same
  output shapes and dtypes; pure float cases must also meet the float tolerance. Quantized and
  hybrid cases are not held to the reference there (XNNPACK and the optimized kernels round
  and sum differently by design); their largest difference is printed.
Exits non-zero when any case fails or when there is no case at all.
"""
import json
import os
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

RTOL, ATOL = 1e-5, 1e-6


def run(model, inputs, resolver):
    it = Interpreter(model_path=model, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    if len(ins) != len(inputs):
        raise RuntimeError(f"LiteRT sees {len(ins)} inputs, the case has {len(inputs)}")
    # Inputs/outputs are matched in subgraph order, which is how qlite runs them.
    rows = inputs[0].shape[0] if ins[0]["shape"][0] == 1 and inputs[0].shape[0] > 1 else None
    if rows is None:
        for d, x in zip(ins, inputs):
            it.set_tensor(d["index"], x)
        it.invoke()
        return [it.get_tensor(o["index"]).copy() for o in outs]
    results = [[] for _ in outs]
    for r in range(rows):
        for d, x in zip(ins, inputs):
            it.set_tensor(d["index"], x[r : r + 1])
        it.invoke()
        for k, o in enumerate(outs):
            results[k].append(it.get_tensor(o["index"]).copy())
    return [np.concatenate(r, axis=0) for r in results]


def compare(kind, ours, theirs):
    if ours.shape != theirs.shape:
        return f"shape {ours.shape} vs LiteRT {theirs.shape}"
    if ours.dtype != theirs.dtype:
        return f"dtype {ours.dtype} vs LiteRT {theirs.dtype}"
    if kind == "exact" or ours.dtype.kind in "iub":  # "hybrid" and "float" use the tolerance
        bad = np.flatnonzero(ours.reshape(-1) != theirs.reshape(-1))
        if bad.size:
            i = bad[0]
            return f"{bad.size} elements differ (first at {i}: {ours.reshape(-1)[i]} vs {theirs.reshape(-1)[i]})"
        return None
    a, b = ours.astype(np.float64), theirs.astype(np.float64)
    tol = RTOL * np.maximum(np.abs(a), np.abs(b)) + ATOL
    err = np.abs(a - b)
    if not np.all(np.isfinite(a) == np.isfinite(b)) or np.any(err[np.isfinite(err)] > tol[np.isfinite(err)]):
        i = int(np.nanargmax(err - tol))
        return f"max error {np.nanmax(err):.3e} (at {i}: {a.reshape(-1)[i]} vs {b.reshape(-1)[i]}) exceeds tolerance"
    return None


def check_safetensors(d, case):
    """A safetensors file qlite wrote: the Python library must read it and get qlite's arrays;
    f16 / bf16 conversions must equal numpy's / ml_dtypes' rounding bit for bit."""
    import ml_dtypes
    from safetensors.numpy import load_file

    problems = []
    path = os.path.join(d, case["file"])
    got = {}
    if case.get("arrays"):
        try:
            got = load_file(path)
        except Exception as e:  # noqa: BLE001
            return [f"safetensors could not read the file: {e}"]
    else:
        # bfloat16 has no numpy dtype: check the library accepts the file, then read raw bytes.
        from safetensors import safe_open

        try:
            with safe_open(path, framework="numpy") as f:
                names = list(f.keys())
        except Exception as e:  # noqa: BLE001
            return [f"safetensors could not open the file: {e}"]
        raw = open(path, "rb").read()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + n])
        for k in names:
            b, e = header[k]["data_offsets"]
            got[k] = np.frombuffer(raw[8 + n + b : 8 + n + e], dtype=np.uint8)
    for name, npy in case.get("arrays", {}).items():
        want = np.load(os.path.join(d, npy))
        g = got.get(name)
        if g is None or g.shape != want.shape or g.tobytes() != want.tobytes():
            problems.append(f"tensor {name!r} differs from qlite's")
    for name, spec in case.get("converted", {}).items():
        src = np.load(os.path.join(d, spec["source"]))
        g = got.get(name)
        if spec["to"] == "f16":
            ref = src.astype(np.float16).view(np.uint16)
        else:
            ref = src.astype(ml_dtypes.bfloat16).view(np.uint16)
        if g is None or g.tobytes() != ref.tobytes():
            problems.append(f"tensor {name!r} is not numpy's {spec['to']} rounding of the source")
    return problems


def main():
    root = sys.argv[1]
    if not os.path.isdir(root):
        print(f"conformance: {root} does not exist: the tests exported no case", file=sys.stderr)
        return 1
    cases = sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "case.json")))
    passed = failed = 0
    for name in cases:
        d = os.path.join(root, name)
        with open(os.path.join(d, "case.json")) as f:
            case = json.load(f)
        if case.get("kind") == "safetensors":
            problems = check_safetensors(d, case)
            if problems:
                failed += 1
                print(f"FAIL {name}")
                for p in problems:
                    print(f"     {p}")
            else:
                passed += 1
                print(f"ok   {name}")
            continue
        inputs = [np.load(os.path.join(d, p)) for p in case["inputs"]]
        expected_default = [np.load(os.path.join(d, p)) for p in case["expected"]]
        # Where LiteRT's reference kernels knowingly compute something else than its default
        # kernels (the LOCAL_RESPONSE_NORMALIZATION window), the case carries qlite's emulation
        # of the reference kernel, and the reference run is held to that.
        expected_ref = [np.load(os.path.join(d, p)) for p in case.get("expected_reference", case["expected"])]
        problems = []
        diffs = {}
        for label, resolver in (("reference", OpResolverType.BUILTIN_REF), ("default", OpResolverType.AUTO)):
            try:
                got = run(os.path.join(d, case["model"]), inputs, resolver)
                expected = expected_ref if label == "reference" else expected_default
            except Exception as e:  # noqa: BLE001 - any LiteRT failure is a conformance failure
                problems.append(f"{label}: LiteRT failed: {e}")
                continue
            if len(got) != len(expected):
                problems.append(f"{label}: {len(got)} outputs vs {len(expected)}")
                continue
            kind = case["compare"]
            for k, (e, g) in enumerate(zip(expected, got)):
                if label == "default" and kind in ("exact", "hybrid"):
                    if e.shape != g.shape or e.dtype != g.dtype:
                        problems.append(f"{label}: output {k}: {e.dtype}{e.shape} vs LiteRT {g.dtype}{g.shape}")
                    elif not np.array_equal(e, g):
                        diffs[label] = max(diffs.get(label, 0.0), float(np.max(np.abs(e.astype(np.float64) - g.astype(np.float64)))))
                    continue
                msg = compare(kind, e, g)
                if msg:
                    problems.append(f"{label}: output {k}: {msg}")
        if problems:
            failed += 1
            print(f"FAIL {name}")
            for p in problems:
                print(f"     {p}")
        else:
            passed += 1
            note = f"  (default resolver differs by up to {diffs['default']:g})" if diffs else ""
            print(f"ok   {name}{note}")
    if not cases:
        print("conformance: no case was exported; the oracle checked nothing", file=sys.stderr)
        return 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
