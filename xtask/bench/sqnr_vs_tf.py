"""qlite's quantization against TensorFlow's converter on Keras architectures (random weights):
the same float model, the same calibration images, SQNR of each quantized file's output
against the float model on held-out images, every file run by the same TFLite interpreter.

usage: sqnr_vs_tf.py OUTDIR QLITE [MODEL...]   (TensorFlow's Python; not run by CI)
"""
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

out, qlite = sys.argv[1], sys.argv[2]
names = sys.argv[3:] or ["MobileNetV2", "ResNet50", "DenseNet121", "EfficientNetB0"]
SIZE, CALIB, HELD = 64, 32, 32
os.makedirs(out, exist_ok=True)


def images(n, seed):
    """Smooth random images in [0, 255] (upsampled noise), as float32 NHWC."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(n, SIZE // 8, SIZE // 8, 3)).astype(np.float32)
    return tf.image.resize(small, (SIZE, SIZE), method="bilinear").numpy().astype(np.float32)


def build(name):
    tf.keras.utils.set_random_seed(7)
    ctor = getattr(tf.keras.applications, name)
    kw = {"alpha": 0.35} if name == "MobileNetV2" else {}
    # Logits, not probabilities: an int8 softmax output (scale 1/256) would dominate the error.
    return ctor(weights=None, input_shape=(SIZE, SIZE, 3), classes=10, classifier_activation=None, **kw)


def run(path, x):
    it = tf.lite.Interpreter(model_path=path)
    it.allocate_tensors()
    inp, outp = it.get_input_details()[0], it.get_output_details()[0]
    ys = []
    for row in x:
        v = row[None]
        if inp["dtype"] != np.float32:
            s, z = inp["quantization"]
            v = np.clip(np.round(v / s + z), np.iinfo(inp["dtype"]).min, np.iinfo(inp["dtype"]).max).astype(inp["dtype"])
        it.set_tensor(inp["index"], v)
        it.invoke()
        y = it.get_tensor(outp["index"])
        if outp["dtype"] != np.float32:
            s, z = outp["quantization"]
            y = (y.astype(np.float32) - z) * s
        ys.append(y[0])
    return np.array(ys, dtype=np.float64)


def sqnr(ref, y):
    err = np.sum((ref - y) ** 2)
    return float("inf") if err == 0 else 10 * np.log10(np.sum(ref ** 2) / err)


# Each architecture's own input preprocessing (MobileNetV2 expects [-1, 1], ResNet50 BGR
# minus the mean, DenseNet standardized, EfficientNet [0, 255]).
PREPROCESS = {
    "MobileNetV2": tf.keras.applications.mobilenet_v2.preprocess_input,
    "ResNet50": tf.keras.applications.resnet50.preprocess_input,
    "DenseNet121": tf.keras.applications.densenet.preprocess_input,
    "EfficientNetB0": tf.keras.applications.efficientnet.preprocess_input,
}
rows = []
for name in names:
    prep = PREPROCESS.get(name, lambda v: v)
    calib, held = prep(images(CALIB, 1)).astype(np.float32), prep(images(HELD, 2)).astype(np.float32)
    np.save(os.path.join(out, f"{name}_calib.npy"), calib)
    m = build(name)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    float_path = os.path.join(d, "float.tflite")
    open(float_path, "wb").write(conv.convert())

    def rep():
        for row in calib:
            yield [row[None]]

    files = {}
    c = tf.lite.TFLiteConverter.from_keras_model(m)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    files["tf dynamic"] = c.convert()
    c = tf.lite.TFLiteConverter.from_keras_model(m)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = rep
    files["tf int8"] = c.convert()
    # 16x8, with float fallback for ops lacking an int16 kernel (as qlite's int16x8 does).
    c = tf.lite.TFLiteConverter.from_keras_model(m)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = rep
    c.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]
    files["tf int16x8"] = c.convert()
    for k, v in files.items():
        open(os.path.join(d, k.replace(" ", "_") + ".tflite"), "wb").write(v)
    for mode in ["dynamic", "int8", "int8_auto", "int8_eq", "int16x8"]:
        p = os.path.join(d, f"qlite_{mode}.tflite")
        extra = {"auto": ["--calibration-method", "auto"], "eq": ["--equalize"]}.get(mode.split("_")[-1], [])
        r = subprocess.run([qlite, "convert", float_path, "-o", p, "--quantize", mode.split("_")[0],
                            "--calibration", os.path.join(out, f"{name}_calib.npy")] + extra,
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{name} qlite {mode}: {r.stderr.strip()}", flush=True)
            continue
        files[f"qlite {mode}"] = None
    ref = run(float_path, held)
    line = {}
    for k in ["tf dynamic", "qlite dynamic", "tf int8", "qlite int8", "qlite int8_auto", "qlite int8_eq", "tf int16x8",
              "qlite int16x8"]:
        p = os.path.join(d, k.replace(" ", "_") + ".tflite")
        try:
            line[k] = sqnr(ref, run(p, held)) if os.path.exists(p) else float("nan")
        except RuntimeError as e:  # a file the interpreter refuses (TF's 16x8 with vanishing ranges)
            print(f"{name} {k}: the interpreter refuses the file: {str(e).splitlines()[0]}", flush=True)
            line[k] = float("nan")
    rows.append((name, line))
    print(f"{name:<15} dynamic: TF {line['tf dynamic']:6.2f} dB  qlite {line['qlite dynamic']:6.2f} dB   "
          f"int8: TF {line['tf int8']:6.2f} dB  qlite {line['qlite int8']:6.2f} dB (auto {line['qlite int8_auto']:6.2f}, equalized {line['qlite int8_eq']:6.2f})   "
          f"int16x8: TF {line['tf int16x8']:6.2f} dB  qlite {line['qlite int16x8']:6.2f} dB", flush=True)
