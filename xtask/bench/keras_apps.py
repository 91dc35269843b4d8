"""keras.applications architectures with random weights, at a small input size, through qlite:
each SavedModel (`model.export()`, batch None) imported and run by qlite must equal Keras; TF's
converter's .tflite files (float32, dynamic range, int8 and 16x8 with float I/O) run by qlite must equal
LiteRT's reference kernels (qlite's reference kernels: float within 1e-5 relative, int8 and int16 to the
bit; its fast kernels: int8 byte-equal, float32 within 1e-5 of the reference); qlite's own
conversions of the SavedModel are held the same way.

usage: keras_apps.py OUTDIR QLITE ORACLE_PYTHON [MODEL...]   (TensorFlow's Python; not run by CI)
Prints one line per model and file, and exits 1 if any check fails.
"""
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

out, qlite, oracle = sys.argv[1], sys.argv[2], sys.argv[3]
# name: (input size, constructor keywords)
MODELS = {
    "MobileNetV2": (96, {"alpha": 0.35}),
    "MobileNetV3Small": (96, {}),
    "EfficientNetB0": (64, {}),
    "DenseNet121": (64, {}),
    "NASNetMobile": (96, {}),
    "ConvNeXtTiny": (64, {}),
}
names = sys.argv[4:] or list(MODELS)
BATCH, CALIB = 4, 8
os.makedirs(out, exist_ok=True)

# LiteRT's reference kernels on one file: resize the batch, run, save the output.
LITERT = r"""
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
path, x_path, y_path = sys.argv[1:4]
x = np.load(x_path)
it = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
inp = it.get_input_details()[0]
it.resize_tensor_input(inp["index"], list(x.shape), strict=False)
it.allocate_tensors()
it.set_tensor(inp["index"], x.astype(inp["dtype"]))
it.invoke()
np.save(y_path, it.get_tensor(it.get_output_details()[0]["index"]))
"""


def images(n, size, seed):
    """Smooth random images in [0, 255] (upsampled noise), float32 NHWC."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(n, max(size // 8, 2), max(size // 8, 2), 3)).astype(np.float32)
    return tf.image.resize(small, (size, size), method="bilinear").numpy().astype(np.float32)


def qlite_run(model, x_path, y_path, kernels="fast"):
    t = time.perf_counter()
    r = subprocess.run([qlite, "run", model, "--kernels", kernels, "--input", x_path, "--output", y_path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
    return np.load(y_path), time.perf_counter() - t


def litert_run(model, x_path, y_path):
    r = subprocess.run([oracle, "-c", LITERT, model, x_path, y_path], capture_output=True, text=True)
    if r.returncode != 0:
        return None, (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
    return np.load(y_path), None


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


failures = 0
results = []


def report(model, what, ok, detail):
    global failures
    failures += 0 if ok else 1
    results.append({"model": model, "check": what, "ok": bool(ok), "detail": detail})
    print(f"{model:<17} {what:<34} {'ok  ' if ok else 'FAIL'} {detail}", flush=True)


for name in names:
    size, kw = MODELS[name]
    tf.keras.utils.set_random_seed(7)
    m = getattr(tf.keras.applications, name)(
        weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None, **kw)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    x, calib = images(BATCH, size, 1), images(CALIB, size, 2)
    x_path, calib_path = os.path.join(d, "x.npy"), os.path.join(d, "calib.npy")
    np.save(x_path, x)
    np.save(calib_path, calib)
    y_keras = m(x, training=False).numpy()
    saved = os.path.join(d, "saved_model")
    t = time.perf_counter()
    m.export(saved, verbose=False)

    # The SavedModel, imported and run by qlite, against Keras.
    y, t_run = qlite_run(saved, x_path, os.path.join(d, "y_qlite_savedmodel.npy"))
    if y is None:
        report(name, "SavedModel run vs Keras", False, t_run)
    else:
        e = rel(y, y_keras)
        report(name, "SavedModel run vs Keras", e <= 1e-5, f"max rel. diff {e:.1e} (batch {BATCH})")

    # TF's converter's files, and qlite's conversions of the SavedModel.
    def rep():
        for row in calib:
            yield [row[None]]

    files = {}
    t = time.perf_counter()
    c = tf.lite.TFLiteConverter.from_saved_model(saved)
    files["tf float32"] = c.convert()
    t_tf_float = time.perf_counter() - t
    c = tf.lite.TFLiteConverter.from_saved_model(saved)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    files["tf dynamic"] = c.convert()
    c = tf.lite.TFLiteConverter.from_saved_model(saved)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = rep
    files["tf int8"] = c.convert()
    # TF's 16x8 mode, with float fallback for ops it has no int16 kernel for.
    c = tf.lite.TFLiteConverter.from_saved_model(saved)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = rep
    c.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]
    try:
        files["tf int16x8"] = c.convert()
    except Exception as e:  # noqa: BLE001 - TF's converter failing is TF's, not qlite's
        print(f"{name:<17} {'tf int16x8':<34} note TF's converter fails: {str(e).splitlines()[0][:120]}", flush=True)
    paths = {}
    for k, v in files.items():
        paths[k] = os.path.join(d, k.replace(" ", "_") + ".tflite")
        open(paths[k], "wb").write(v)
    for mode in ["none", "dynamic", "int8", "int16x8"]:
        p = os.path.join(d, f"qlite_{mode}.tflite")
        t = time.perf_counter()
        r = subprocess.run([qlite, "convert", saved, "-o", p, "--quantize", mode, "--calibration", calib_path],
                           capture_output=True, text=True)
        if r.returncode != 0:
            report(name, f"qlite convert --quantize {mode}", False, r.stderr.strip())
            continue
        if mode == "none":
            report(name, "qlite convert (float32)", True,
                   f"{time.perf_counter() - t:.2f} s (TF's converter: {t_tf_float:.2f} s)")
        paths[f"qlite {mode}"] = p
    for k, p in paths.items():
        # qlite's reference kernels against LiteRT's: the strict check.
        stem = os.path.join(d, k.replace(" ", "_"))
        y, err = qlite_run(p, x_path, stem + "_y_qlite_ref.npy", "reference")
        ref, lerr = litert_run(p, x_path, stem + "_y_litert.npy")
        what = f"{k} vs LiteRT ref"
        if k == "tf int16x8" and ref is None:
            # TF's own 16x8 file that LiteRT refuses (e.g. a vanishing range's overflowing
            # RELU6 bound): noted; qlite's own int16x8 file of the model is checked below.
            print(f"{name:<17} {what:<34} note LiteRT refuses TF's own file: {lerr.splitlines()[-1][:120] if lerr else ''}",
                  flush=True)
            continue
        if y is None or ref is None:
            report(name, what, False, f"qlite: {err}" if y is None else f"LiteRT: {lerr}")
            continue
        if "int8" in k or "int16" in k:
            same = int(np.sum(y == ref))
            report(name, what, same == y.size, f"{same}/{y.size} outputs equal, {len(np.unique(ref))} distinct values")
        else:
            e = rel(y, ref)
            report(name, what, e <= 1e-5, f"max rel. diff {e:.1e}")
        # The fast kernels (the CLI's default) against qlite's reference: int8 byte-equal,
        # float within 1e-5 relative. A dynamic-range file quantizes float activations at run
        # time, so a last-ulp difference from a fast float kernel can move one value by a
        # quantization step: measured and shown, not held to 1e-5.
        f, ferr = qlite_run(p, x_path, stem + "_y_qlite_fast.npy", "fast")
        if f is None:
            report(name, f"{k} fast kernels", False, ferr)
        elif "int8" in k or "int16" in k:
            report(name, f"{k} fast = reference", bool(np.array_equal(f, y)), "byte-equal" if np.array_equal(f, y) else "differ")
        elif "dynamic" in k:
            report(name, f"{k} fast vs reference", True, f"max rel. diff {rel(f, y):.1e} (not held: run-time quantization)")
        else:
            e = rel(f, y)
            report(name, f"{k} fast vs reference", e <= 1e-5, f"max rel. diff {e:.1e}")

json.dump(results, open(os.path.join(out, "results.json"), "w"), indent=1)
print(f"{failures} failures")
sys.exit(1 if failures else 0)
