"""Float and full-integer conversion by TensorFlow's converter of Keras ResNet-50 (random weights, seed 7,
224x224, batch None) with 32 calibration images, for `cargo xtask bench`.

usage: keras_resnet50_int8.py OUTDIR
Writes OUTDIR/saved_model (once) and OUTDIR/calib.npy (32 smooth random images, ResNet-50's own
preprocessing), times the converter's float conversion (after a first one that warms TensorFlow
up; the file goes to OUTDIR/tf_float.tflite) and its full-integer conversion, prints
"tf_float_ms=<ms>" and "tf_int8_ms=<ms>".
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

out = sys.argv[1]
saved, calib = os.path.join(out, "saved_model"), os.path.join(out, "calib.npy")
os.makedirs(out, exist_ok=True)
if not os.path.exists(os.path.join(saved, "saved_model.pb")):
    tf.keras.utils.set_random_seed(7)
    m = tf.keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=1000)
    m.export(saved, verbose=False)
if not os.path.exists(calib):
    small = np.random.default_rng(1).uniform(0, 255, (32, 28, 28, 3)).astype(np.float32)
    x = tf.image.resize(small, (224, 224), method="bilinear").numpy()
    np.save(calib, tf.keras.applications.resnet50.preprocess_input(x).astype(np.float32))
x = np.load(calib)
tf.lite.TFLiteConverter.from_saved_model(saved).convert()  # warm-up
t = time.perf_counter()
open(os.path.join(out, "tf_float.tflite"), "wb").write(tf.lite.TFLiteConverter.from_saved_model(saved).convert())
print(f"tf_float_ms={(time.perf_counter() - t) * 1e3:.1f}", flush=True)


def rep():
    for row in x:
        yield [row[None]]


t = time.perf_counter()
c = tf.lite.TFLiteConverter.from_saved_model(saved)
c.optimizations = [tf.lite.Optimize.DEFAULT]
c.representative_dataset = rep
open(os.path.join(out, "tf_int8.tflite"), "wb").write(c.convert())
print(f"tf_int8_ms={(time.perf_counter() - t) * 1e3:.1f}", flush=True)
