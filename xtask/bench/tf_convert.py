"""TensorFlow's own SavedModel → .tflite conversion time for each directory given: the
converter call only (TensorFlow imported and warmed up first), median of 5.
Prints one line per model: "<dir> tf_ms=<median>"."""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

for d in sys.argv[1:]:
    tf.lite.TFLiteConverter.from_saved_model(d).convert()  # warm-up
    times = []
    for _ in range(5):
        t = time.perf_counter()
        tf.lite.TFLiteConverter.from_saved_model(d).convert()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(f"{d} tf_ms={times[len(times) // 2]:.1f}", flush=True)
