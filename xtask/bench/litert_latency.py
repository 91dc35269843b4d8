"""Single-inference latency of LiteRT on each model given, with the reference kernels
(BUILTIN_REF) and with the default CPU path (optimized kernels + XNNPACK), single thread
unless `--threads N` is given.
The default path is timed in 5 rounds and the lowest median kept (this VM's timing drifts;
qlite's numbers are taken the same way). Times include the Python binding's call into
`invoke()`. Prints one line per model: "<path> ref_us=<median> default_us=<median>"."""
import sys
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType


def median_us(path, resolver, runs=200, warmup=5):
    it = Interpreter(model_path=path, experimental_op_resolver_type=resolver, num_threads=threads)
    it.allocate_tensors()
    for d in it.get_input_details():
        shape, dtype = d["shape"], d["dtype"]
        x = np.random.default_rng(0).uniform(0, 1, size=shape)
        if np.issubdtype(dtype, np.integer):
            x = np.random.default_rng(0).integers(-128 if dtype == np.int8 else 0, 127 if dtype == np.int8 else 255, size=shape)
        it.set_tensor(d["index"], x.astype(dtype))
    for _ in range(warmup):
        it.invoke()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        it.invoke()
        times.append((time.perf_counter() - t) * 1e6)
    return float(np.median(times))


# `--threads N`: the default path on N threads (XNNPACK's thread pool); 1 unless given.
threads = 1
args = sys.argv[1:]
if "--threads" in args:
    i = args.index("--threads")
    threads = int(args[i + 1])
    del args[i : i + 2]

# `--large`: real-size models, the default path only (3 rounds of 20 runs); the reference
# kernels take seconds per image there.
large = "--large" in args
# `--slow`: models LiteRT takes most of a second on (16x8 at 224 px, on its reference-only
# kernels): one warm-up, the median of 5 runs.
slow = "--slow" in args
for path in [a for a in args if a not in ("--large", "--slow")]:
    if slow:
        default = median_us(path, OpResolverType.AUTO, runs=5, warmup=1)
        print(f"{path} ref_us=nan default_us={default:.1f}")
        continue
    if large:
        default = min(median_us(path, OpResolverType.AUTO, runs=20) for _ in range(3))
        print(f"{path} ref_us=nan default_us={default:.1f}")
        continue
    ref = median_us(path, OpResolverType.BUILTIN_REF)
    default = min(median_us(path, OpResolverType.AUTO, runs=1000) for _ in range(5))
    print(f"{path} ref_us={ref:.1f} default_us={default:.1f}")
