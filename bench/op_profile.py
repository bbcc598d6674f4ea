"""Where a TensorFlow call spends its time: the profiler's op events summed by op type.

``profile_ops(call, calls, folder)`` traces ``calls`` calls with
``tf.profiler.experimental`` and reads the ``.xplane.pb`` it writes: the events on the
host's TensorFlow op lines (names starting ``tf_``), each named ``name:OpType``, grouped by
op type. The op types are the kernels that ran, after Grappler's rewrites, so they show
which fusions happened (``_MklNativeFusedConv2D``, ``_FusedDepthwiseConv2dNative``...).

Once a function has run a few hundred times, TensorFlow's executor runs the ops it has
measured as cheap (variable reads, small arithmetic) inline without a trace event, at
every tracer level: their time then shows only as the gap between the wall time per call
(which :func:`profile_ops` also measures) and the ops' sum.
"""

from __future__ import annotations

import glob
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

# Events that wrap, split or mark ops rather than being one: counting them would count twice.
_NOT_OPS = {"Process", "ParallelFor", "StartRegion", "StopRegion", "Record", "ExecutorDoneCallback"}


@dataclass(frozen=True)
class OpTime:
    op_type: str
    ms_per_call: float
    count_per_call: float


def read_xplane(folder: str, calls: int) -> list[OpTime]:
    """The op types in the newest trace under ``folder``, most time first."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = max(glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True))
    space = xplane_pb2.XSpace()
    with open(path, "rb") as file:
        space.ParseFromString(file.read())
    time_ps: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_"):
                continue
            for event in line.events:
                op_type = plane.event_metadata[event.metadata_id].name.rpartition(":")[2]
                if op_type in _NOT_OPS or op_type.startswith("Memory"):
                    continue
                time_ps[op_type] += event.duration_ps
                count[op_type] += 1
    return [OpTime(op, ps / 1e9 / calls, count[op] / calls) for op, ps in time_ps.most_common()]


@dataclass(frozen=True)
class Profile:
    ops: list[OpTime]
    wall_ms_per_call: float


def profile_ops(call: Callable[[], object], calls: int, folder: str) -> Profile:
    """Trace ``calls`` calls (after one untraced warm-up) and sum their ops by type."""
    import tensorflow as tf

    call()
    tf.profiler.experimental.start(folder)
    start = time.perf_counter()
    for _ in range(calls):
        call()
    wall = (time.perf_counter() - start) * 1000 / calls
    tf.profiler.experimental.stop()
    return Profile(read_xplane(folder, calls), wall)
