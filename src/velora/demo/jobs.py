"""Run the demo's trainings side by side, one per CPU core, with one progress bar for all of them.

The demo model is tiny (a 128-wide, 4-block ViT on 64 px frames): its matrix products are too
small for several threads to share well. On a 2-core machine two intra-op threads made a step
1.6x faster than one when nothing else ran (two one-thread trainings side by side do 1.3x the
steps of one two-thread training), and next to one busy process (a DataLoader worker, another
training, another program) their spin-waiting made each step 13x slower than one thread's
(benchmarks/demo_speed.md).
So every training runs in its own process with one torch thread, and the demo runs as many
trainings at once as there are cores. One thread per training also makes each result independent
of the machine's core count and of which process ran it.

Each job trains one configuration (`velora.training.run.train`), then evaluates its best
checkpoint on the test split, with both sensors and with each one missing. Workers report their
progress in work units (velora.demo.progress) through a queue; the parent shows one bar with an ETA.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from velora.config import Config
from velora.data.factory import make_dataset
from velora.demo.progress import UnitsCallback
from velora.evaluation.evaluate import data_config, evaluate_model, predict_scores
from velora.evaluation.metrics import topk_accuracy
from velora.model.adapter_file import load_model
from velora.model.velora import count_parameters
from velora.training.run import train


@dataclass(frozen=True)
class Job:
    """One training of the demo.

    Attributes:
        name: run folder name under <output>/runs, unique within a demo.
        variant: key of velora.demo.run.VARIANTS.
        config: the resolved config (Config.to_dict()).
        evaluate: evaluate on the test split after training (a learning-rate sweep evaluates only
            the setting chosen on the validation split, afterwards).
        units: estimated work (velora.demo.progress.job_units), for the bar and for ordering.
    """

    name: str
    variant: str
    config: dict
    evaluate: bool
    units: float


def run_jobs(
    jobs: Sequence[Job],
    *,
    workers: int,
    on_progress: Callable[[str, float], None] | None = None,
) -> dict[str, dict]:
    """Run `jobs` in `workers` processes (in this one when workers == 1); returns {job name: result}.

    on_progress(job name, units done so far in that job) is called in this process. The largest
    jobs start first, so the last ones to finish are short. An error in a job stops the demo with
    that job's exception once the running jobs end.
    """
    ordered = sorted(jobs, key=lambda job: -job.units)
    report = on_progress or (lambda name, units: None)
    if workers <= 1:
        with one_thread():
            return {job.name: run_job(job, partial(report, job.name)) for job in ordered}

    context = multiprocessing.get_context("spawn")  # no fork of a process that has threads running
    progress_queue = context.Queue()
    results: dict[str, dict] = {}
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(progress_queue,)) as pool:
        pending: dict[Future, Job] = {pool.submit(_run_job_in_worker, job): job for job in ordered}
        try:
            while pending:
                done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(progress_queue, report)
                for future in done:
                    job = pending.pop(future)
                    results[job.name] = future.result()
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    _drain(progress_queue, report)
    return results


def _drain(progress_queue, report: Callable[[str, float], None]) -> None:
    while True:
        try:
            name, units = progress_queue.get_nowait()
        except queue.Empty:
            return
        report(name, units)


_QUEUE = None


def _init_worker(progress_queue) -> None:
    global _QUEUE
    _QUEUE = progress_queue
    torch.set_num_threads(1)
    _quiet_worker()


def _quiet_worker() -> None:
    # The demo reads packed clips in the training process itself, on purpose (see module docstring).
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


def _run_job_in_worker(job: Job) -> dict:
    progress = _QUEUE
    assert progress is not None  # _init_worker set it in this worker process
    return run_job(job, lambda units: progress.put((job.name, units)))


@contextmanager
def one_thread() -> Iterator[None]:
    """Run a one-worker demo's jobs in this process with one torch thread, as a worker would."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            _quiet_worker()
            yield
    finally:
        torch.set_num_threads(threads)


def run_job(job: Job, send: Callable[[float], None]) -> dict:
    """Train `job`, evaluate it when asked; returns the figures the report needs (plain values)."""
    cfg = Config.from_dict(job.config, source=f"demo job {job.name}")
    clips_seen = UnitsCallback(cfg, send)
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(cfg, callbacks=[clips_seen], announce=False)
    out = {
        "name": job.name,
        "best_checkpoint": str(result.best_checkpoint),
        "best_val_top1": result.best_val_top1,
        "best_epoch": result.best_epoch,
        "train_seconds": round(time.perf_counter() - wall, 1),
        "train_cpu_seconds": round(time.process_time() - cpu, 1),
    }
    send(clips_seen.units_done)
    if job.evaluate:
        out.update(evaluate_checkpoint(result.best_checkpoint))
    send(job.units)  # the job's whole estimate, evaluation included: the bar reaches its share
    return out


def evaluate_checkpoint(checkpoint: str | Path) -> dict:
    """Test-split figures of a checkpoint: top-1/top-5, and top-1 with each sensor missing.

    The model is loaded once for the three evaluations, and eval_test.json is written next to the
    checkpoint; the report draws the confusion matrix of the run it shows (drawing one per
    evaluation would cost a second each).
    """
    checkpoint = Path(checkpoint)
    model, ckpt = load_model(checkpoint)
    total, trainable = count_parameters(model)
    report = evaluate_model(model, ckpt, checkpoint, batch_size=64, progress=False, plot=False)  # eval_test.json
    missing = {}
    if len(model.modalities) == 2:
        for absent, present in (("rgb", "event"), ("event", "rgb")):
            dataset = make_dataset(data_config(ckpt.config, modalities=[present]), "test", classes=ckpt.class_names)
            test_scores, labels = predict_scores(model, dataset, batch_size=64, progress=False)
            missing[absent] = topk_accuracy(test_scores, labels, 1)
    return {
        "test_top1": report["top1"],
        "test_top5": report["top5"],
        "mean_class_accuracy": report["mean_class_accuracy"],
        "test_clips": report["num_clips"],
        "test_top1_without_rgb": missing.get("rgb"),
        "test_top1_without_event": missing.get("event"),
        "trainable_parameters": trainable,
        "total_parameters": total,
    }
