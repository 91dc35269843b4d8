"""Keras MobileNetV2 1.0 and EfficientNet-B0 at 224x224 (random weights, seed 7), converted by
TensorFlow's converter to float32 and to full integer (8 smooth random calibration images), for
the latency table of `cargo xtask bench`.

usage: keras_latency_models.py OUTDIR
Writes OUTDIR/<name>_float.tflite and OUTDIR/<name>_int8.tflite (once each) and prints their
paths, one per line.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
models = {
    "keras_mobilenet_v2": (tf.keras.applications.MobileNetV2, tf.keras.applications.mobilenet_v2.preprocess_input),
    "keras_efficientnet_b0": (tf.keras.applications.EfficientNetB0, lambda x: x),
}
for name, (make, prep) in models.items():
    f32, i8 = os.path.join(out, f"{name}_float.tflite"), os.path.join(out, f"{name}_int8.tflite")
    if not (os.path.exists(f32) and os.path.exists(i8)):
        tf.keras.utils.set_random_seed(7)
        m = make(weights=None, input_shape=(224, 224, 3), classes=1000)
        small = np.random.default_rng(1).uniform(0, 255, (8, 28, 28, 3)).astype(np.float32)
        x = prep(tf.image.resize(small, (224, 224), method="bilinear").numpy()).astype(np.float32)

        def rep():
            for row in x:
                yield [row[None]]

        c = tf.lite.TFLiteConverter.from_keras_model(m)
        open(f32, "wb").write(c.convert())
        c = tf.lite.TFLiteConverter.from_keras_model(m)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = rep
        c.inference_input_type = tf.int8
        c.inference_output_type = tf.int8
        open(i8, "wb").write(c.convert())
    print(f32)
    print(i8)
