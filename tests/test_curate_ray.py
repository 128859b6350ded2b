"""Curation on a 2-node Ray cluster gives the same bytes as a local run.

`ray.cluster_utils.Cluster` starts a head and a second node on this machine (separate raylets,
1 CPU each): tasks are scheduled across nodes as on a real cluster, and the output folder is
"shared storage" because both nodes see the same paths.
"""

import hashlib
import json

import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from codekiln import executor as executors  # noqa: E402
from codekiln.curate.config import CurateConfig  # noqa: E402
from codekiln.curate.pipeline import curate  # noqa: E402
from codekiln.curate.sources import resolve_sources  # noqa: E402

pytestmark = pytest.mark.slow

_NODE = {"num_cpus": 1, "object_store_memory": 80 * 2**20}


@pytest.fixture(scope="module")
def cluster():
    nodes = Cluster(initialize_head=True, head_node_args={**_NODE, "include_dashboard": False})
    nodes.add_node(**_NODE)
    nodes.wait_for_nodes()
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def _hashes(out):
    """sha256 of every output file but the manifest (it records timings and the executor)."""
    return {
        str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.name != "manifest.json"
    }


def _manifest(out):
    manifest = json.loads((out / "manifest.json").read_text())
    for varying in ("timings", "executor", "platform"):
        manifest.pop(varying)
    return manifest


def test_two_node_cluster_gives_the_bytes_of_a_local_run(
    cluster, fixture_repo, tmp_path, monkeypatch
):
    sources = resolve_sources([str(fixture_repo)])
    config = CurateConfig.load(sets=["tasks.files=3", "near_dedup=true"])
    # The same folder name: the report's title names it.
    local, on_ray = tmp_path / "local" / "out", tmp_path / "ray" / "out"
    curate(sources, local, config, workers=2, progress=False)

    used = []
    make = executors.make_executor

    def recording(*args, **kwargs):
        used.append(make(*args, **kwargs))
        return used[-1]

    monkeypatch.setattr("codekiln.curate.pipeline.make_executor", recording)

    def on_cluster(force=False):
        curate(
            sources,
            on_ray,
            config,
            workers=2,
            force=force,
            progress=False,
            executor="ray",
            ray_address=cluster.address,
        )

    on_cluster()
    hashes = _hashes(local)
    assert any(name.startswith("part-") for name in hashes) and "report.json" in hashes
    assert any(name.startswith("ledger/") for name in hashes)
    assert _hashes(on_ray) == hashes
    assert _manifest(on_ray) == _manifest(local)
    # The tasks were spread over both nodes. SPREAD is Ray's best effort: on a loaded machine
    # a node whose worker is slow to start can miss a whole (short) run, so one more try.
    if len(used[-1].nodes) < 2:
        on_cluster(force=True)
        assert _hashes(on_ray) == hashes
    nodes = set().union(*(executor.nodes for executor in used))
    assert len(nodes) == 2, [executor.nodes for executor in used]
