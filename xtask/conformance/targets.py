"""`qlite check` held to the runtimes themselves, on every model of the conformance set.

- litert: LiteRT runs every one of these models (check.py) but those whose case records that
  its default resolver cannot (an unregistered custom op): `--target litert` must pass the
  first and refuse the others.
- tflm: each model is loaded, allocated and run in TensorFlow Lite Micro (the `tflite-micro`
  wheel). qlite's verdict must be TFLM's: a model check passes must run, a model check refuses
  must fail. TFLM cannot resize inputs, so a batched test input is cut to the model's batch.
  TFLM aborts the process on some models it cannot run: the models run in a worker process,
  and a model that kills it counts as refused.

usage: targets.py QLITE CONFORMANCE_DIR
       targets.py --tflm-only QLITE DIR   (every .tflite file under DIR, run on zero inputs;
                                           for published models LiteRT may not run as they are)
"""
import collections
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def model_path(root, case):
    """A case is a conformance directory (model.tflite and inputs) or a .tflite file."""
    p = os.path.join(root, case)
    return p if case.endswith(".tflite") else os.path.join(p, "model.tflite")


if sys.argv[1] == "--worker":
    # Worker: run each case named in the list file, announcing it first, so the parent knows which
    # one killed the process.
    root = sys.argv[2]
    from tflite_micro.python.tflite_micro import runtime

    for line in open(sys.argv[3]):
        case = line.strip()
        print(f"start\t{case}", flush=True)
        d = os.path.join(root, case)
        try:
            it = runtime.Interpreter.from_file(model_path(root, case), arena_size=64 << 20)
            i = 0
            while os.path.exists(os.path.join(d, f"input_{i}.npy")):
                x = np.load(os.path.join(d, f"input_{i}.npy"))
                want = it.get_input_details(i)["shape"]
                if x.ndim == len(want) and x.ndim > 0 and x.shape[0] != want[0] and x.shape[1:] == tuple(want[1:]):
                    x = x[:want[0]]
                it.set_input(x, i)
                i += 1
            it.invoke()
            print(f"ok\t{case}\t", flush=True)
        except Exception as e:  # TFLM reports a refusal as a RuntimeError
            why = (str(e).splitlines() or [type(e).__name__])[0].replace("\t", " ")
            print(f"fail\t{case}\t{why}", flush=True)
    sys.exit(0)

tflm_only = sys.argv[1] == "--tflm-only"
qlite, root = sys.argv[1 + tflm_only], sys.argv[2 + tflm_only]
if tflm_only:
    cases = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
                   if f.endswith(".tflite"))
else:
    cases = sorted(c for c in os.listdir(root) if os.path.exists(os.path.join(root, c, "model.tflite")))
CHUNK = 400


def check(target):
    """qlite's findings per case."""
    found = {}
    for k in range(0, len(cases), CHUNK):
        part = cases[k:k + CHUNK]
        r = subprocess.run([qlite, "check", "--target", target, "--json"] +
                           [model_path(root, c) for c in part], capture_output=True, text=True)
        if r.returncode not in (0, 1):
            sys.exit(f"qlite check --target {target} failed: {r.stderr.strip()}")
        reports = json.loads(r.stdout)
        reports = reports if isinstance(reports, list) else [reports]
        for c, rep in zip(part, reports):
            found[c] = rep["unsupported"]
    return found


def litert_fails(case):
    """A case LiteRT knowingly cannot run: its case.json records that the default resolver
    fails on an unresolved custom op (not a delegate's refusal: the builtin kernels run those)."""
    try:
        with open(os.path.join(root, case, "case.json")) as f:
            known = json.load(f).get("default_resolver_fails")
    except (OSError, ValueError):
        return False
    return bool(known) and "unresolved custom op" in known["error"]


litert = {} if tflm_only else check("litert")
refused = [(c, f[0]) for c, f in litert.items() if f and not litert_fails(c)]
passed_but_fails = [c for c, f in litert.items() if not f and litert_fails(c)]
if not tflm_only:
    fails = sum(1 for c in litert if litert_fails(c))
    print(f"litert: {len(cases) - fails} models LiteRT runs, qlite check refuses {len(refused)}; "
          f"{fails} it cannot run, qlite check passes {len(passed_but_fails)}")
for c, f in refused[:20]:
    print("  ", c, f"op {f['index']} {f['op']} v{f['version']}: {f['reason']}")
for c in passed_but_fails[:20]:
    print("  ", c, "LiteRT cannot run it, qlite check passes it")
if refused or passed_but_fails:
    sys.exit(1)
verdict = check("tflm")


def tflm_results():
    """case -> (runs, why), each case run in a worker process that may die on it."""
    results, todo = {}, list(cases)
    while todo:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("".join(c + "\n" for c in todo))
        w = subprocess.Popen([sys.executable, __file__, "--worker", root, f.name],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        current = None
        for line in w.stdout:
            kind, case, *rest = line.rstrip("\n").split("\t")
            if kind == "start":
                current = case
            else:
                results[case] = (kind == "ok", rest[0] if rest else "")
                current = None
        code = w.wait()
        os.unlink(f.name)
        if current is not None:
            results[current] = (False, f"TFLM killed the process (exit {code})")
        todo = [c for c in todo if c not in results]
        if todo and current is None:
            sys.exit(f"the TFLM worker stopped (exit {code}) with {len(todo)} models left")
    return results


counts = collections.Counter()
wrong = []
crashed = []
results = tflm_results()
for c in cases:
    ok, why = results[c]
    if why.startswith("TFLM killed"):
        crashed.append(c)
    ours = not verdict[c]
    counts[(ours, ok)] += 1
    if ours != ok:
        wrong.append((c, "qlite: supported" if ours else f"qlite: {verdict[c][0]['reason']}",
                      "TFLM runs it" if ok else f"TFLM: {why}"))
print(f"tflm: {len(cases)} models; both run: {counts[(True, True)]}, both refuse: {counts[(False, False)]}, "
      f"qlite wrong: {len(wrong)} (TFLM aborted on {len(crashed)}: {', '.join(crashed[:5])})")
for w in wrong[:50]:
    print("  ", *w)
sys.exit(1 if wrong else 0)
