"""A test plugin that injects faults into trials, driven by environment variables.

``AUTOML_PT_FAULT_DIR``: a folder shared by all worker processes (trial starts are counted there).
``AUTOML_PT_FAULT``: what to do, e.g. ``raise@2`` (the 2nd trial started raises), ``kill@2``
(its worker SIGKILLs itself), ``hang@2`` (it sleeps forever), ``oom>4`` (a real
``torch.cuda.OutOfMemoryError`` whenever the micro-batch is larger than 4), ``oom-always``,
``slow`` (every step sleeps 0.3 s, to give a test time to act mid-trial), ``sabotage@N`` (the Nth
trial's head is zeroed after every step, so it predicts one class: a trial a pruner should stop);
``+`` joins specs (``sabotage@1+slow``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from automl_pt import hookimpl
from automl_pt.train.training import TrainerCallback


def _next_start() -> int:
    folder = Path(os.environ["AUTOML_PT_FAULT_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    k = 1
    while True:
        try:
            fd = os.open(folder / f"start-{k}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            return k
        except FileExistsError:
            k += 1


class Fault(TrainerCallback):
    def __init__(self, spec: str):
        self.spec = spec
        self.start = 0

    def on_train_begin(self, state):
        self.start = _next_start()

    def _mine(self, action: str) -> bool:
        # "+" joins specs: "sabotage@1+slow"
        return any(part.startswith(action + "@") and int(part.split("@")[1]) == self.start
                   for part in self.spec.split("+"))

    def on_step_end(self, state):
        import torch

        if "slow" in self.spec:
            time.sleep(0.3)
        if self._mine("kill"):
            os.kill(os.getpid(), signal.SIGKILL)
        if self._mine("hang"):
            time.sleep(3600)
        if self.spec.startswith("oom>") and state.micro_batch_size > int(self.spec[4:]):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by fault_plugin)")
        if self._mine("sabotage"):
            for p in state.model.head.parameters():
                p.data.zero_()
        if self.spec == "oom-always":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by fault_plugin)")

    def on_epoch_end(self, state):
        if self._mine("raise"):
            raise ValueError(f"injected failure in trial start {self.start}")


@hookimpl
def automl_pt_trial_callbacks(task, params):
    spec = os.environ.get("AUTOML_PT_FAULT", "")
    return [Fault(spec)] if spec else None
