"""Ray Data under faults (issue 20): a worker node dies while detect_landmarks runs.

A two-node Ray cluster on this machine (ray.cluster_utils.Cluster: a head and a
worker node, one CPU each, loopback only, see tests/raylocal.py). The job runs two
1-CPU actors, so one of them is on the worker node; after the first results come
back the worker node is killed (SIGKILL, no graceful shutdown) and a new node is
added. Every image must come out exactly once, without an error, with the landmarks
of a plain single-process run.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import ray
import ray.data

from modelfactory import make_spec, random_model
from pipdetect import LandmarkDetector
from pipdetect.integrations.ray import detect_landmarks
from raylocal import descendants, listening_addresses

pytestmark = pytest.mark.timeout(150)

IMAGES = 16
NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024**2}
# Notice a dead node within about a second (Ray's default: 5 missed checks of 3 s).
FAST_HEALTH_CHECKS = {"health_check_period_ms": 300, "health_check_failure_threshold": 3,
                      "health_check_initial_delay_ms": 0}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    cl = Cluster(initialize_head=True, head_node_args={
        **NODE, "include_dashboard": False, "_system_config": FAST_HEALTH_CHECKS})
    cl.add_node(**NODE)
    ray.init(address=cl.address, log_to_driver=False, logging_level="warning")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    try:
        cl.wait_for_nodes()
        yield cl
    finally:
        ray.shutdown()
        cl.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """IMAGES different photos: the astronaut at several sizes, mirrored or not, on a canvas."""
    root = tmp_path_factory.mktemp("fault-images")
    for i in range(IMAGES):
        side = 200 + 12 * i
        face = cv2.resize(astronaut, (side, side), interpolation=cv2.INTER_AREA)
        face = face[:, ::-1] if i % 2 else face
        canvas = np.full((side + 40, side + 60, 3), 40 + 5 * i, np.uint8)
        canvas[20 : 20 + side, 30 : 30 + side] = face
        assert cv2.imwrite(str(root / f"img{i:02d}.png"), canvas)
    return root


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory, wflw_meanface: np.ndarray) -> Path:
    spec = make_spec(wflw_meanface, name="ray-fault-test", scheme="wflw98")
    return random_model(tmp_path_factory.mktemp("model") / "random.onnx", spec, seed=5)


ACTOR = "ray::MapWorker(MapBatches(PipdetectPredictor))"


def _processes_of(node: Any) -> set[str]:
    """Command lines of the processes a Ray node (its raylet) runs."""
    raylet = node.all_processes["raylet"][0].process.pid
    names = set()
    for pid in descendants(raylet):
        try:
            names.add(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode())
        except OSError:
            continue
    return names


def test_a_node_dies_and_no_image_is_lost_or_doubled(
    cluster: Any, folder: Path, model_path: Path
) -> None:
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2 and {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
    assert set(listening_addresses()) <= {"127.0.0.1", "::1"}
    worker = next(n for n in cluster.list_all_nodes() if n is not cluster.head_node)

    def slowly(row: dict[str, Any]) -> dict[str, Any]:
        """One image per 0.1 s, so that the job still runs when the node dies (a local
        function: Ray ships it by value, the workers cannot import this test module)."""
        time.sleep(0.1)
        return row

    ds = ray.data.read_binary_files(str(folder), include_paths=True, num_cpus=0)
    ds = ds.map(slowly, num_cpus=0, concurrency=1)
    out = detect_landmarks(ds, str(model_path), actors=2, threads=1, batch_size=2)
    rows, killed_after = [], None
    for row in out.iter_rows():
        rows.append(row)
        if killed_after is None and len(rows) >= 3:
            killed_after = len(rows)
            if sys.platform.startswith("linux"):  # the node dies with a model actor on it
                # Ray titles an actor's process ray::Class when idle and
                # ray::Class.method while it runs a task: either is the model actor
                assert any(name == ACTOR or name.startswith(ACTOR + ".")
                           for name in _processes_of(worker))
            cluster.remove_node(worker, allow_graceful=False)
            cluster.add_node(**NODE)
    assert killed_after is not None and killed_after < IMAGES  # the node died mid-job
    assert sum(n["Alive"] for n in ray.nodes()) == 2

    names = Counter(Path(r["source"]).name for r in rows)
    assert sorted(names) == sorted(p.name for p in folder.iterdir())  # none lost
    assert set(names.values()) == {1}  # none doubled
    assert [r for r in rows if r["error"] is not None] == []
    det = LandmarkDetector(model_path, threads=1)
    for row in rows:
        want = [f.to_dict() for f in det.detect(row["source"])]
        got = row["faces"]
        assert len(got) == len(want) >= 1, row["source"]
        for g, w in zip(got, want, strict=True):
            for key in w:
                np.testing.assert_array_equal(np.asarray(g[key]), np.asarray(w[key]),
                                              err_msg=f"{row['source']} {key}")
