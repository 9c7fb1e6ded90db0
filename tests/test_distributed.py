import errno
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from scarce.engine.evaluation import evaluate_run
from scarce.engine.faults import RunFault, write_errors_stop_run
from tests.conftest import TINY


def test_two_process_ddp_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "scarce",
        "train",
        "--recipe",
        "demo",
        "--out",
        str(out),
        "--no-progress",
        *TINY,
        "loss.class_weights=auto",  # its loss all-reduces the batch weight on every step
        # each rank mixes its own batch, some not at all (prob 0.5): the class-weighted loss's
        # all-reduce must still be called as often on both ranks
        "augment.mix.cutmix_alpha=1.0",
        "augment.mix.mixup_alpha=0.8",
        "augment.mix.prob=0.5",
        # rank 0 times the memory format and shares its choice; amp stays pinned (TINY): under bf16
        # autocast timm's test_resnet diverges within an epoch (resnet18 does not)
        "channels_last=auto",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]  # only rank 0 writes
    assert result.stdout.count("run directory:") == 1
    # The sharded val score equals a single-process evaluation of the same weights: no sample
    # was padded or counted twice.
    single = evaluate_run(out / "last.safetensors", None, "val", tmp_path / "e.json", num_workers=0)
    assert single["count"] == 100
    assert abs(single["top1"] - rows[-1]["val_top1"]) < 1e-9
    env_info = json.loads((out / "environment.json").read_text())
    assert env_info["world_size"] == 2
    assert result.stdout.count("timed s/step") == 1  # timed (rank 0), broadcast: both ranks trained on


def test_early_stop_under_torchrun_stops_every_rank(tmp_path):
    # rank 0 alone decides (it alone records the epoch): the other rank must stop with it, or its
    # next gradient all-reduce would wait for a rank that is already scoring the run (a hang)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "scarce", "train", "--recipe", "demo", "--out", str(out), "--no-progress", *TINY]
    # val top-1 stays put at this lr, so patience runs out before the last epoch
    cmd += ["epochs=6", "patience=1", "optim.lr=1e-6", "sched.name=constant"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"].startswith("early stop after epoch")
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) < 6 and result.stdout.count("early stop after epoch") == 1


def test_a_failed_write_under_torchrun_says_to_resume_under_torchrun(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(RunFault) as caught, write_errors_stop_run(tmp_path, "the checkpoint of epoch 3", 2):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(caught.value).endswith(
        f"free space and resume with: torchrun --nproc_per_node 2 -m scarce train --resume {tmp_path}"
    )
    with pytest.raises(RunFault) as caught, write_errors_stop_run(tmp_path, "environment.json", 1):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(caught.value).endswith(f"free space and resume with: scarce train --resume {tmp_path}")


def test_more_processes_than_gpus_is_one_clear_error(monkeypatch):
    from scarce.engine.distributed import check_gpu_per_process
    from scarce.errors import UserError

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_gpu_per_process(0, 2)  # rank 0 has its GPU
    with pytest.raises(
        UserError, match=r"torchrun started 2 processes on this machine but it has 1 GPU; start at most 1 "
    ):
        check_gpu_per_process(1, 2)


def test_a_numbered_gpu_under_torchrun_is_refused_for_the_local_rank_one(monkeypatch):
    """``device=cuda:0`` would put every process on GPU 0 (NCCL fails on a duplicate GPU)."""
    from scarce.engine.distributed import DistInfo, resolve_device
    from scarce.errors import UserError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    second = DistInfo(rank=1, world_size=2, local_rank=1)
    assert resolve_device("cuda", second) == torch.device("cuda:1")
    assert resolve_device("cuda:1", DistInfo()) == torch.device("cuda:1")  # one process: as given
    with pytest.raises(UserError, match=r"^device=cuda:0 under torchrun: each process takes the GPU of its local"):
        resolve_device("cuda:0", second)


def test_every_rank_takes_rank_0s_cpu_speed_choice_even_from_a_record(monkeypatch):
    """A resumed run's recorded choice: rank 0 decides and broadcasts it, as it does a timed one; a
    rank that returned the record on its own would skip the broadcast the others wait in."""
    import scarce.engine.prepare as prepare
    from scarce.config import load_config
    from scarce.engine.distributed import DistInfo

    record = {"amp": "none", "channels_last": True}
    monkeypatch.setattr(prepare, "recorded_cpu_speed", lambda run_dir: record)
    sent = []
    monkeypatch.setattr(prepare, "broadcast_object", lambda value, info: sent.append(value) or ("from rank 0",))
    cfg = load_config(None, [*TINY, "amp=auto", "channels_last=auto"])  # both from the record
    data = SimpleNamespace(classes=["a", "b"], in_chans=1)
    for rank in (0, 1):
        choose = prepare.cpu_speed_chooser(cfg, data, "run", DistInfo(rank=rank, world_size=2))
        assert choose(True) == ("from rank 0",)
    assert sent == [("none", True, None), None]  # rank 0 sends the record; rank 1 receives


def test_other_ranks_outwait_a_final_evaluation_longer_than_the_process_group_timeout(tmp_path):
    # NCCL's default timeout is 10 minutes: a large test set scored by rank 0 alone outlasted it
    # and the waiting rank failed. Here the default group's timeout is 8 s and scoring takes 20 s.
    script = tmp_path / "slow_end.py"
    script.write_text(
        "import sys, time\n"
        "from datetime import timedelta\n"
        "import torch.distributed as dist\n"
        "import scarce.engine.trainer as trainer\n"
        "init, finish = dist.init_process_group, trainer.finish_run\n"
        "dist.init_process_group = lambda *a, **k: init(*a, **{**k, 'timeout': timedelta(seconds=8)})\n"
        "trainer.finish_run = lambda *a: (time.sleep(20), finish(*a))[1]\n"
        "from scarce.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    cmd += ["train", "--recipe", "demo", "--out", str(tmp_path / "ddp"), "--no-progress", *TINY, "epochs=1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "ddp" / "summary.json").is_file()
