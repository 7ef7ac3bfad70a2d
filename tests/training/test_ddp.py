"""Two CPU processes under torchrun (gloo) make the same update as one process on the union."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).parent / "ddp_worker.py"
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_equal_one_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    subprocess.run([sys.executable, str(WORKER), str(tmp_path)], check=True, env=env,
                   timeout=300, cwd=ROOT)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_port", str(_free_port()), str(WORKER), str(tmp_path)],
                   check=True, env=env, timeout=300, cwd=ROOT)
    one = torch.load(tmp_path / "params_world1.pt")
    two = torch.load(tmp_path / "params_world2.pt")
    init = torch.load(tmp_path / "init_world1.pt")
    moved = 0.0
    for k in one:
        torch.testing.assert_close(one[k], two[k], atol=1e-5, rtol=1e-4, msg=k)
        moved = max(moved, float((one[k].float() - init[k].float()).abs().max()))
    assert moved > 1e-3  # the update was not trivial
    assert (tmp_path / "done_world1").is_file() and (tmp_path / "done_world2").is_file()
    assert "'world': 2" in (tmp_path / "done_world2").read_text()
    assert (tmp_path / "exp2" / "last.pt").is_file()
