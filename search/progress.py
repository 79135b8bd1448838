"""Progress a user can follow on long sweeps: one line per finished trial, in the terminal and in
``<experiment>/progress.txt`` (trials done / left, best validation F0.5 so far, elapsed, an estimate
of what is left), instead of Tune's trial tables and every worker's start-up banners."""
from __future__ import annotations

import time

from ray.tune import Callback

from search import storage


class Progress(Callback):
    def __init__(self, arch: str, trials: int, experiment: str, echo=None):
        # Tune pickles its callbacks with the experiment state: keep no builtin (print) as state.
        self.arch, self.trials, self.experiment, self.echo = arch, int(trials), experiment, echo
        self.started = time.monotonic()
        self.done = self.failed = 0
        self.best = None
        self.by_loss = False  # the sweep ranks by validation loss (set by its first such result)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        finished = self.done + self.failed
        left = self.trials - finished
        eta = f", about {elapsed / finished * left:.0f} s left" if finished and left > 0 else ""
        by_loss = self.by_loss
        best = "–" if self.best is None else f"{self.best:.4g}" if by_loss else f"{self.best:.3f}"
        failed = f", {self.failed} failed" if self.failed else ""
        what = "loss" if by_loss else "F0.5"
        return (f"[{self.arch}] {finished}/{self.trials} trials finished{failed}, best validation {what} {best}, "
                f"{elapsed:.0f} s elapsed{eta}")

    def _report(self) -> None:
        text = self.line()
        if self.echo is None:
            print(text, flush=True)
        else:
            self.echo(text)
        try:  # a progress file must never take the sweep down
            storage.write_text(storage.join(self.experiment, "progress.txt"), text + "\n")
        except OSError:
            pass

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        r = trial.last_result or {}
        f05 = r.get("f05")
        if f05 is not None and (self.best is None or f05 > self.best):
            self.best = float(f05)
        elif r.get("objective") == "val_loss":  # unlabelled data: the lowest validation loss
            self.by_loss = True
            if self.best is None or r["val_loss"] < self.best:
                self.best = float(r["val_loss"])
        self._report()

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed += 1
        self._report()
