"""Python baseline for `cargo xtask bench`: safetensors + numpy astype(float16), as users do
it today. Prints "seconds=<s> peak_rss_kib=<k>"."""
import resource
import sys
import time

import numpy as np
from safetensors.numpy import load_file, save_file

t = time.perf_counter()
tensors = load_file(sys.argv[1])
save_file({k: v.astype(np.float16) for k, v in tensors.items()}, sys.argv[2])
print(f"seconds={time.perf_counter() - t:.3f} peak_rss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
