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


def lower_version(raw, name, version):
    """`raw` (a .tflite file's bytes) with operator code `name` at `version` set to `version - 1`,
    or None. LiteRT's reference resolver registers some builtins with a stale version range
    (DEPTH_TO_SPACE 1 only, TILE 1..2) although their kernels take the types of the later
    versions (int8), so a file lowered this way runs the same reference kernels."""
    import struct

    from ai_edge_litert.schema_py_generated import BuiltinOperator

    want = getattr(BuiltinOperator, name, None)
    if want is None:
        return None
    buf = bytearray(raw)

    def field(table, fid):
        vt = table - struct.unpack_from("<i", buf, table)[0]
        vtlen = struct.unpack_from("<H", buf, vt)[0]
        if 4 + 2 * fid >= vtlen:
            return None
        off = struct.unpack_from("<H", buf, vt + 4 + 2 * fid)[0]
        return table + off if off else None

    model = struct.unpack_from("<I", buf, 0)[0]
    codes = field(model, 1)
    if codes is None:
        return None
    vec = codes + struct.unpack_from("<I", buf, codes)[0]
    changed = False
    for k in range(struct.unpack_from("<I", buf, vec)[0]):
        entry = vec + 4 + 4 * k
        table = entry + struct.unpack_from("<I", buf, entry)[0]
        dep, ver, code = field(table, 0), field(table, 2), field(table, 3)
        c = max(struct.unpack_from("<b", buf, dep)[0] if dep else 0, struct.unpack_from("<i", buf, code)[0] if code else 0)
        if c == want and ver is not None and struct.unpack_from("<i", buf, ver)[0] == version:
            struct.pack_into("<i", buf, ver, version - 1)
            changed = True
    return bytes(buf) if changed else None


def run_reference_lowered(model, inputs):
    """The reference kernels on `model` with each operator version the reference resolver does
    not register lowered until it loads (see `lower_version`)."""
    import re
    import tempfile

    raw = open(model, "rb").read()
    for _ in range(16):
        with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
            f.write(raw)
            f.flush()
            try:
                return run(f.name, inputs, OpResolverType.BUILTIN_REF)
            except ValueError as e:
                m = re.search(r"builtin opcode '(\w+)' version '(\d+)'", str(e))
                lowered = m and lower_version(raw, m.group(1), int(m.group(2)))
                if not lowered:
                    raise
                raw = lowered
    raise RuntimeError("the reference resolver still refuses the file after lowering 16 versions")


def run(model, inputs, resolver):
    it = Interpreter(model_path=model, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    if len(ins) != len(inputs):
        raise RuntimeError(f"LiteRT sees {len(ins)} inputs, the case has {len(inputs)}")
    # Inputs/outputs are matched in subgraph order, which is how qlite runs them.
    if any(len(d["shape_signature"]) and min(d["shape_signature"]) == -1 for d in ins):
        # A dynamic batch (or another size known only at run time): LiteRT resizes the
        # inputs and runs the whole batch at once.
        for d, x in zip(ins, inputs):
            it.resize_tensor_input(d["index"], x.shape, strict=True)
        it.allocate_tensors()
        for d, x in zip(ins, inputs):
            it.set_tensor(d["index"], x)
        it.invoke()
        return [it.get_tensor(o["index"]).copy() for o in outs]
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


def compare_arrays(ours, want, rtol, atol):
    """The one comparison, as qlite::compare (crates/qlite-interp/src/compare.rs) does it; both
    are held to compare-cases.json (`check.py --self-test`, and a Rust test). Returns None when
    the arrays agree, else what differs, naming the worst element:
    - dtypes and shapes equal; integers and booleans exact whatever the tolerance;
    - floats: |ours - want| <= atol + rtol * max(|ours|, |want|);
    - non-finite values must match in place and value: NaN only NaN, +inf only +inf, -inf only -inf.
    """
    if ours.dtype != want.dtype:
        return f"dtype {ours.dtype}, expected {want.dtype}"
    if ours.shape != want.shape:
        return f"shape {list(ours.shape)}, expected {list(want.shape)}"
    a, b = ours.reshape(-1), want.reshape(-1)
    if a.size == 0:
        return None
    if ours.dtype.kind in "iub":
        bad = np.flatnonzero(a != b)
        if bad.size == 0:
            return None
        diff = np.abs(a[bad].astype(object) - b[bad].astype(object))
        w = bad[int(np.argmax(diff))]
        idx = list(np.unravel_index(w, ours.shape))
        return f"{bad.size} of {a.size} elements differ; worst at {[int(i) for i in idx]}: {a[w]} vs expected {b[w]}"
    a, b = a.astype(np.float64), b.astype(np.float64)
    finite = np.isfinite(a) & np.isfinite(b)
    same_nonfinite = (np.isnan(a) & np.isnan(b)) | (~finite & (a == b))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(finite, np.abs(a - b), 0.0)
        allowed = atol + rtol * np.maximum(np.abs(a), np.abs(b))
        excess = np.where(finite, err - allowed, np.where(same_nonfinite, -1.0, np.inf))
    bad = np.flatnonzero(excess > 0)
    if bad.size == 0:
        return None
    w = bad[int(np.argmax(excess[bad]))]
    idx = [int(i) for i in np.unravel_index(w, ours.shape)]
    return f"{bad.size} of {a.size} elements differ; worst at {idx}: {a[w]!r} vs expected {b[w]!r} (|diff| {abs(a[w] - b[w]):.3e})"


def compare(kind, ours, theirs):
    """A case's output against LiteRT's: "exact" cases (integer models, and float outputs claimed
    exact such as DEQUANTIZE) must be equal; "float" and "hybrid" within RTOL/ATOL."""
    rtol, atol = (0.0, 0.0) if kind == "exact" else (RTOL, ATOL)
    return compare_arrays(ours, theirs, rtol, atol)


def self_test(path):
    """Run compare-cases.json through compare_arrays: every verdict must be the expected one (the
    Rust helper is held to the same file). Returns the number of wrong verdicts."""
    def value(v):
        return {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}.get(v, v) if isinstance(v, str) else v

    with open(path) as f:
        cases = json.load(f)
    wrong = 0
    for c in cases:
        dt = np.dtype(c["dtype"])
        ours = np.array([value(v) for v in c["ours"]], dtype=dt).reshape(c.get("ours_shape", [len(c["ours"])]))
        want = np.array([value(v) for v in c.get("want", c["ours"])], dtype=np.dtype(c.get("want_dtype", c["dtype"])))
        want = want.reshape(c.get("want_shape", [want.size]))
        msg = compare_arrays(ours, want, c["rtol"], c["atol"])
        if (msg is None) != c["agree"]:
            wrong += 1
            print(f"compare self-test: {c['name']}: expected {'agreement' if c['agree'] else 'a mismatch'}, got {msg or 'agreement'}")
    if not cases:
        print("compare self-test: no cases")
        return 1
    print(f"compare self-test: {len(cases) - wrong} of {len(cases)} verdicts as expected")
    return wrong


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


def report(name, problems, note=""):
    """Print a case's verdict; True when it passed."""
    if problems:
        print(f"FAIL {name}")
        for p in problems:
            print(f"     {p}")
        return False
    print(f"ok   {name}{note}")
    return True


def main():
    if sys.argv[1] == "--self-test":
        return 1 if self_test(sys.argv[2]) else 0
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
            ok = report(name, check_safetensors(d, case))
            passed, failed = passed + ok, failed + (not ok)
            continue
        inputs = [np.load(os.path.join(d, p)) for p in case["inputs"]]
        if case.get("kind") == "reexport":
            # A file qlite read and wrote back with operators it does not model: LiteRT must
            # give exactly what it gives on the original, with either resolver.
            problems = []
            for label, resolver in (("reference", OpResolverType.BUILTIN_REF), ("default", OpResolverType.AUTO)):
                known = case.get(f"{label}_resolver_fails")
                try:
                    want = run(os.path.join(d, case["original"]), inputs, resolver)
                    got = run(os.path.join(d, case["model"]), inputs, resolver)
                except Exception as e:  # noqa: BLE001 - any LiteRT failure is a conformance failure
                    if not (known and known["error"] in str(e)):
                        problems.append(f"{label}: LiteRT failed: {e}")
                    continue
                if known:
                    problems.append(f"{label}: expected LiteRT to fail with {known['error']!r} ({known['why']}), it ran")
                    continue
                if len(got) != len(want):
                    problems.append(f"{label}: {len(got)} outputs vs {len(want)} of the original")
                for k, (w, g) in enumerate(zip(want, got)):
                    msg = compare_arrays(g, w, 0.0, 0.0)
                    if msg:
                        problems.append(f"{label}: output {k} differs from the original's: {msg}")
            ok = report(name, problems)
            passed, failed = passed + ok, failed + (not ok)
            continue
        expected_default = [np.load(os.path.join(d, p)) for p in case["expected"]]
        # Where LiteRT's reference kernels knowingly compute something else than its default
        # kernels (the LOCAL_RESPONSE_NORMALIZATION window), the case carries qlite's emulation
        # of the reference kernel, and the reference run is held to that.
        expected_ref = [np.load(os.path.join(d, p)) for p in case.get("expected_reference", case["expected"])]
        problems = []
        diffs = {}
        # Whether the reference kernels ran the case (else the default resolver is its judge).
        reference_judged = "reference_resolver_fails" not in case
        for label, resolver in (("reference", OpResolverType.BUILTIN_REF), ("default", OpResolverType.AUTO)):
            # A file LiteRT's default path cannot run (TF's converter's own output included) says
            # how it fails; that failure is then required, so a LiteRT that runs it is noticed.
            known = case.get(f"{label}_resolver_fails")
            lowered = False
            try:
                got = run(os.path.join(d, case["model"]), inputs, resolver)
                expected = expected_ref if label == "reference" else expected_default
            except Exception as e:  # noqa: BLE001 - any LiteRT failure is a conformance failure
                if not (known and known["error"] in str(e)):
                    problems.append(f"{label}: LiteRT failed: {e}")
                    continue
                if label != "reference":
                    continue
                # The failure is required; the reference kernels are then run on the file with
                # the versions their resolver lacks lowered, and held to the case. An op the
                # resolver has no version of (ELU) leaves the default resolver as the judge.
                try:
                    got = run_reference_lowered(os.path.join(d, case["model"]), inputs)
                    expected, lowered, reference_judged = expected_ref, True, True
                except Exception:  # noqa: BLE001
                    continue
            if known and not lowered:
                problems.append(f"{label}: expected LiteRT to fail with {known['error']!r} ({known['why']}), it ran")
                continue
            if len(got) != len(expected):
                problems.append(f"{label}: {len(got)} outputs vs {len(expected)}")
                continue
            kind = case["compare"]
            for k, (e, g) in enumerate(zip(expected, got)):
                # The default kernels may round differently from the reference ones: differences
                # are noted; the reference run (versions lowered where it must) is the judge.
                if label == "default" and kind in ("exact", "hybrid") and reference_judged:
                    if e.shape != g.shape or e.dtype != g.dtype:
                        problems.append(f"{label}: output {k}: {e.dtype}{e.shape} vs LiteRT {g.dtype}{g.shape}")
                    elif not np.array_equal(e, g):
                        diffs[label] = max(diffs.get(label, 0.0), float(np.max(np.abs(e.astype(np.float64) - g.astype(np.float64)))))
                    continue
                msg = compare(kind, e, g)
                if msg:
                    problems.append(f"{label}: output {k}: {msg}")
        note = f"  (default resolver differs by up to {diffs['default']:g})" if diffs else ""
        ok = report(name, problems, note)
        passed, failed = passed + ok, failed + (not ok)
    if not cases:
        print("conformance: no case was exported; the oracle checked nothing", file=sys.stderr)
        return 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
