"""Faults: kill -9 and resume, NaN losses, crashes while writing checkpoints, unsafe resume files."""

from __future__ import annotations

import errno
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import make_tiny_config
from velora.cli import main
from velora.errors import CheckpointError
from velora.model import adapter_file as adapter_file_module
from velora.model.adapter_file import read_adapters
from velora.training import checkpoint as checkpoint_module
from velora.training.checkpoint import read_resume_state
from velora.training.module import VELoRAModule
from velora.training.nonfinite import StepStats, nonfinite_flag
from velora.training.run import train

STEPS = 12  # 2 epochs of 24 clips in batches of 4


def fault_config(root: Path, output: Path, *overrides: str):
    # LoRA dropout on, so the resumed run must also restore the dropout masks' random stream.
    return make_tiny_config(
        "lora.dropout=0.1",
        "train.checkpoint_every_steps=1",
        *overrides,
        data={"root": str(root)},
        train={"epochs": 2, "output_dir": str(output)},
    )


def last_step(path: Path) -> int:
    try:
        return read_resume_state(path)["global_step"]
    except CheckpointError:  # not written yet (it is never half-written: see the atomic-write test)
        return -1


def adapters_identical(a: Path, b: Path) -> bool:
    sa, sb = read_adapters(a).state, read_adapters(b).state
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_run_killed_at_a_random_step_resumes_to_identical_adapters(tiny_dataset, tmp_path):
    seed = int(os.environ.get("VELORA_KILL_SEED", "7"))
    target = random.Random(seed).randint(1, STEPS - 2)
    full = tmp_path / "full"
    train(fault_config(tiny_dataset, full))

    killed = tmp_path / "killed"
    config = tmp_path / "killed.yaml"
    config.write_text(yaml.safe_dump(fault_config(tiny_dataset, killed).to_dict()))
    process = subprocess.Popen(
        [sys.executable, "-m", "velora.cli", "train", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ckpt = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while process.poll() is None and last_step(ckpt) < target and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, f"the run ended before step {target}: {process.stderr.read()[-2000:]}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_at = last_step(ckpt)
    assert 0 < stopped_at < STEPS, f"killed with last.ckpt at step {stopped_at}"

    train(fault_config(tiny_dataset, killed), resume=str(ckpt))
    assert read_adapters(killed / "last.safetensors").info["global_step"] == STEPS
    assert adapters_identical(full / "last.safetensors", killed / "last.safetensors"), (
        f"killed at step {stopped_at} (VELORA_KILL_SEED={seed}) and resumed: adapters differ from the uninterrupted run"
    )
    assert adapters_identical(full / "best.safetensors", killed / "best.safetensors")


NAN_CASES = {
    # checkpoints every step: the check runs before each write
    "loss, checked every step": ("loss", ["train.checkpoint_every_steps=1"], "loss is nan at step 8", 8),
    # no step checkpoints: the bad step is skipped on the device and found at the next log step (9)
    # (the resume checkpoint is then epoch 0's, at step 6)
    "loss, found at the log step": (
        "loss",
        ["train.checkpoint_every_steps=0", "train.log_every=3"],
        "loss is nan at step 8",
        6,
    ),
    "gradients, found at the log step": (
        "grads",
        ["train.checkpoint_every_steps=0", "train.log_every=3"],
        "gradients are not finite (loss ",
        6,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", NAN_CASES)
def test_nan_stops_the_run_and_keeps_the_last_good_checkpoints(tiny_dataset, tmp_path, monkeypatch, capsys, case):
    where, overrides, expected, checkpoint_step = NAN_CASES[case]
    original = VELoRAModule.forward

    def forward(module, batch):
        out = original(module, batch)
        if module.global_step == 8:  # epoch 1, after epoch 0's checkpoints were written
            if where == "loss":
                out.logits = out.logits * float("nan")
            else:  # a finite loss whose backward pass turns to nan
                out.logits.register_hook(lambda grad: grad * float("nan"))
        return out

    monkeypatch.setattr(VELoRAModule, "forward", forward)
    config = tmp_path / "nan.yaml"
    config.write_text(yaml.safe_dump(fault_config(tiny_dataset, tmp_path / "run", *overrides).to_dict()))
    assert main(["train", "--config", str(config)]) == 2
    message = capsys.readouterr().err
    assert expected in message and "at step 8" in message and "lower train.lr" in message, message
    assert "not applied" in message

    state = read_resume_state(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert state["global_step"] == checkpoint_step, "the resume checkpoint is the last one before the bad step"
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values())
    last = read_adapters(tmp_path / "run" / "last.safetensors")
    assert last.info["epoch"] == 0 and all(torch.isfinite(v).all() for v in last.state.values())
    monkeypatch.setattr(VELoRAModule, "forward", original)
    train(fault_config(tiny_dataset, tmp_path / "run"), resume=str(tmp_path / "run" / "checkpoints" / "last.ckpt"))
    assert read_adapters(tmp_path / "run" / "last.safetensors").info["global_step"] == STEPS


def test_a_non_finite_step_leaves_weights_and_optimizer_state_untouched(tiny_config):
    """The device-side skip: fused AdamW given the step's flag changes nothing, with no host read."""
    module = VELoRAModule(tiny_config(), [str(i) for i in range(8)])
    params = [p for p in module.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=0.1, weight_decay=0.1, fused=True)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()  # one good step, so there are moments to keep
    before = [p.detach().clone() for p in params], [dict(optimizer.state[p]) for p in params]
    before_state = [{k: v.clone() for k, v in s.items()} for s in before[1]]
    params[0].grad = torch.full_like(params[0], float("nan"))
    loss_parts = torch.tensor([1.0, 1.0, 0.0])  # a finite loss; only the gradients are bad
    stats = StepStats()
    stats.add(0, nonfinite_flag(loss_parts[0], params, optimizer), loss_parts)  # as on_before_optimizer_step does
    optimizer.step()
    for p, old, old_state in zip(params, before[0], before_state):
        assert torch.equal(p, old)
        assert all(torch.equal(optimizer.state[p][k], v) for k, v in old_state.items())
    ((step, (flag, loss, _, _)),) = stats.drain()
    assert flag == 1.0 and loss == 1.0


class CrashWhileWriting(Exception):
    pass


@pytest.mark.slow
def test_a_crash_while_writing_leaves_the_previous_checkpoints_whole(tiny_dataset, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(fault_config(tiny_dataset, out, "train.epochs=1"))
    before = {name: (out / name).read_bytes() for name in ("last.safetensors", "checkpoints/last.ckpt")}

    def half_written_torch_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise CrashWhileWriting

    def half_written_save_file(state, filename, metadata=None):
        Path(filename).write_bytes(b"\x08\x00\x00")
        raise CrashWhileWriting

    monkeypatch.setattr(checkpoint_module.torch, "save", half_written_torch_save)
    monkeypatch.setattr(adapter_file_module, "save_file", half_written_save_file)
    with pytest.raises(CrashWhileWriting):
        train(fault_config(tiny_dataset, out, "train.epochs=2"), resume=str(out / "checkpoints" / "last.ckpt"))
    for name, content in before.items():
        assert (out / name).read_bytes() == content, f"{name} changed by a crashed write"
    read_adapters(out / "last.safetensors")
    read_resume_state(out / "checkpoints" / "last.ckpt")


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_resume_file_that_would_run_code_is_refused(tiny_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    hostile = tmp_path / "last.ckpt"
    torch.save({"velora_config": {}, "state_dict": {}, "payload": RunsCode()}, hostile)
    with pytest.raises(CheckpointError, match="refusing to load resume checkpoint .* could run code"):
        read_resume_state(hostile)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(fault_config(tiny_dataset, tmp_path / "run").to_dict()))
    assert main(["train", "--config", str(config), "--resume", str(hostile)]) == 2
    assert "refusing to load resume checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "pwned.txt").exists()
    assert not (tmp_path / "run").exists(), "refused before any work started"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the protocol-4 case
@pytest.mark.parametrize(
    "content, match",
    [
        (None, "does not exist"),
        (b"", "unreadable"),
        (b"PK\x03\x04 truncated", "unreadable"),
        (pickle.dumps([1, 2, 3], protocol=2), "unreadable"),
        (pickle.dumps({"velora_config": {}}, protocol=4), "unreadable .*Unsupported operand"),
    ],
)
def test_broken_resume_files_get_a_clear_error(tmp_path, content, match):
    path = tmp_path / "last.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        read_resume_state(path)


def test_torch_save_of_a_plain_dict_is_not_a_resume_checkpoint(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not a velora resume checkpoint"):
        read_resume_state(tmp_path / "other.ckpt")


# --- a full disk or a folder without write permission -----------------------------------------------

NO_SPACE = OSError(errno.ENOSPC, "No space left on device")


def half_then(error: BaseException):
    """A writer that writes half of what it was given, then fails as the disk does."""

    def write(path_or_file, data: bytes) -> None:
        if isinstance(path_or_file, (str, Path)):
            Path(path_or_file).write_bytes(data[: len(data) // 2])
        else:
            path_or_file.write(data[: len(data) // 2])
        raise error

    return write


@pytest.mark.parametrize("failure", ["no space", "no space (safetensors)", "no permission"])
def test_a_failed_write_leaves_the_previous_adapter_file_and_checkpoint_whole(
    tiny_config, tmp_path, monkeypatch, failure
):
    from safetensors import SafetensorError

    from velora.errors import OutputError
    from velora.model.adapter_file import save_adapters
    from velora.model.velora import VELoRA
    from velora.training.checkpoint import AtomicCheckpointIO

    config = tiny_config()
    model = VELoRA.from_config(config)
    adapters, resume = tmp_path / "last.safetensors", tmp_path / "checkpoints" / "last.ckpt"
    save_adapters(adapters, model, config, [str(i) for i in range(8)], {"epoch": 0})
    AtomicCheckpointIO().save_checkpoint({"velora_config": config.to_dict(), "global_step": 1}, resume)
    before = {path: path.read_bytes() for path in (adapters, resume)}

    error = {
        "no space": NO_SPACE,
        "no permission": PermissionError(errno.EACCES, "Permission denied"),
        "no space (safetensors)": SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        ),
    }[failure]
    serialized = half_then(error)
    monkeypatch.setattr(
        adapter_file_module, "save_file", lambda state, filename, metadata=None: serialized(filename, b"x" * 1000)
    )
    monkeypatch.setattr(checkpoint_module.torch, "save", lambda obj, f: serialized(f, b"y" * 1000))
    reason = "Permission denied" if failure == "no permission" else "No space left on device"
    with pytest.raises(
        OutputError,
        match=rf"cannot write the adapter file {adapters} \(.*{reason}.*\); the previous "
        r"last.safetensors is kept",
    ):
        save_adapters(adapters, model, config, [str(i) for i in range(8)], {"epoch": 1})
    if failure != "no space (safetensors)":  # torch.save raises the OSError
        with pytest.raises(OutputError, match=rf"cannot write the resume checkpoint {resume} \({reason}\)"):
            AtomicCheckpointIO().save_checkpoint({"velora_config": config.to_dict(), "global_step": 2}, resume)
    assert {path: path.read_bytes() for path in (adapters, resume)} == before
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["last.ckpt", "last.safetensors"]  # no .tmp
    read_adapters(adapters)
    assert read_resume_state(resume)["global_step"] == 1


@pytest.mark.slow
def test_a_training_that_cannot_write_its_checkpoints_ends_with_one_error_naming_the_file(
    tiny_dataset, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    train(fault_config(tiny_dataset, out, "train.epochs=1"))
    before = {
        name: (out / name).read_bytes() for name in ("last.safetensors", "best.safetensors", "checkpoints/last.ckpt")
    }
    monkeypatch.setattr(
        adapter_file_module,
        "save_file",
        lambda state, filename, metadata=None: half_then(NO_SPACE)(filename, b"x" * 1000),
    )
    monkeypatch.setattr(checkpoint_module.torch, "save", lambda obj, f: half_then(NO_SPACE)(f, b"y" * 1000))
    config = tmp_path / "more.yaml"
    config.write_text(yaml.safe_dump(fault_config(tiny_dataset, out, "train.epochs=2").to_dict()))
    code = main(["train", "--config", str(config), "--resume", str(out / "checkpoints" / "last.ckpt")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and "No space left on device" in err, err
    assert str(out) in err and "is kept" in err
    for name, content in before.items():
        assert (out / name).read_bytes() == content, f"{name} changed by a failed write"
