"""Served models: each base model loaded once, LoRA adapters attached and detached while serving.

One thread per base model does everything that touches it, in arrival order: generation batches and
adapter loads alike (HF generate and peft's module surgery are not thread-safe). So a hot-swap lands
between two batches: requests queued before it finish on the old weights, later ones get the new, and
none fails. Queued requests are batched (up to `max_batch`, same temperature, any mix of the base and
its adapters), which is where a CPU or GPU gets its throughput under concurrent load. A request for
`n` choices is n rows of one batch.

No input may end the thread: whatever one batch or operation raises fails only its own futures. Should
the thread die all the same (a BaseException from a library), the next submission starts a new one and
counts it in `restarts`, which /health and /metrics show.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from srl_rlvr.config import ModelConfig
from srl_rlvr.errors import ModelLoadError, UserError
from srl_rlvr.serve.generation import BASE_ADAPTER, Completion, context_length, generate_batch
from srl_rlvr.serve.sampling_params import RowSampling

log = logging.getLogger(__name__)


class ModelFailure(Exception):
    """A model could not answer (crashed, timed out, made to fail): the server tries the next one."""


class UnusablePrompt(UserError):
    """The model's tokenizer cannot take the prompt: the client must send other text."""


class PromptTooLong(UserError):
    """The prompt and `max_tokens` together exceed the model's context: the client must shorten them."""


@dataclass
class _Job:
    served: str
    prompt: str
    max_tokens: int
    sampling: RowSampling
    stop: list[str]
    n: int = 1
    future: Future[list[Completion]] = field(default_factory=Future)

    @property
    def temperature(self) -> float:
        return self.sampling.temperature


@dataclass
class _Operation:
    run: Callable[[], Any]
    future: Future[Any] = field(default_factory=Future)


def adapter_folder(path: str) -> str:
    """The local folder of a LoRA adapter given as a path or a `registry:` reference."""
    from srl_rlvr.modeling import is_adapter_folder, model_source
    from srl_rlvr.tracking.registry import resolve_source

    folder = model_source(resolve_source(path))
    if not is_adapter_folder(folder):
        raise ModelLoadError(f"'{path}' is not a LoRA adapter folder (no adapter_config.json in {folder})")
    return folder


class BaseModelWorker:
    """A base model, the adapters attached to it, and the one thread that uses them."""

    def __init__(self, name: str, model: Any, tokenizer: Any, max_batch: int) -> None:
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.context = context_length(model)
        self.adapters: dict[str, str] = {}  # served name -> peft adapter name (fresh on every load)
        self.failing: set[str] = set()  # served names made to fail on purpose (/admin/fail)
        self._serial = itertools.count()
        self._queue: deque[_Job | _Operation | None] = deque()
        self._ready = threading.Condition()
        self.restarts = 0
        self._thread = self._start()

    def _start(self) -> threading.Thread:
        thread = threading.Thread(target=self._loop, name=f"model-{self.name}", daemon=True)
        thread.start()
        return thread

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(
        self, served: str, prompt: str, max_tokens: int, sampling: RowSampling, stop: list[str], n: int = 1
    ) -> _Job:
        job = _Job(served, prompt, max_tokens, sampling, stop, n)
        self._put(job)
        return job

    def call(self, run: Callable[[], Any]) -> Future[Any]:
        """Run `run` on the model's thread, after the requests queued before it."""
        operation = _Operation(run)
        self._put(operation)
        return operation.future

    def attach(self, served: str, folder: str) -> None:
        """On the model's thread: load an adapter under a fresh peft name, then point `served` at it and
        drop what it pointed at before (a hot-swap when `served` was already attached)."""
        from peft import PeftModel

        adapter = re.sub(r"\W", "_", served) + f"_{next(self._serial)}"
        if isinstance(self.model, PeftModel):
            self.model.load_adapter(folder, adapter_name=adapter)
        else:
            self.model = PeftModel.from_pretrained(self.model, folder, adapter_name=adapter)
        self.model.eval()
        old = self.adapters.get(served)
        self.adapters[served] = adapter
        if old is not None:
            self.model.delete_adapter(old)

    def detach(self, served: str) -> None:
        """On the model's thread. The last adapter unwraps the model: peft cannot run with none left."""
        adapter = self.adapters.pop(served)
        if self.adapters:
            self.model.delete_adapter(adapter)
        else:
            self.model = self.model.unload()

    def close(self) -> None:
        self._put(None)
        self._thread.join(timeout=10)

    def _put(self, item: _Job | _Operation | None) -> None:
        with self._ready:
            if item is not None and not self._thread.is_alive():
                self._restart()
            self._queue.append(item)
            self._ready.notify()

    def _restart(self) -> None:
        """With `_ready` held: a new thread takes over the queue."""
        self.restarts += 1
        log.error("model %s: its thread is started again (restart %d)", self.name, self.restarts)
        self._thread = self._start()

    def _take(self) -> list[_Job] | _Operation | None:
        """The next operation, or the next batch: queued jobs before the first operation that share the
        first job's temperature."""
        with self._ready:
            while not self._queue:
                self._ready.wait()
            head = self._queue[0]
            if not isinstance(head, _Job):
                return self._queue.popleft()
            batch: list[_Job] = []
            rest: deque[_Job | _Operation | None] = deque()
            for i, item in enumerate(self._queue):
                if not isinstance(item, _Job):
                    rest.extend(itertools.islice(self._queue, i, None))
                    break
                if len(batch) < self.max_batch and item.temperature == head.temperature:
                    batch.append(item)
                else:
                    rest.append(item)
            self._queue = rest
            return batch

    def _loop(self) -> None:
        while (item := self._take()) is not None:
            futures = [item.future] if isinstance(item, _Operation) else [job.future for job in item]
            try:
                if isinstance(item, _Operation):
                    if item.future.set_running_or_notify_cancel():
                        item.future.set_result(item.run())
                else:
                    self._generate([job for job in item if job.future.set_running_or_notify_cancel()])
            except BaseException as e:  # this item's callers learn of it; the thread goes on if it can
                ending = not isinstance(e, Exception)  # SystemExit and kin end a thread: a fresh one follows
                if ending:
                    log.error("model %s: %s ended its thread", self.name, type(e).__name__)
                    with self._ready:
                        self._restart()
                if isinstance(item, list):
                    log.exception("model %s failed on a batch", self.name)
                    e = ModelFailure(f"{self.name}: {type(e).__name__}: {e}")
                for future in futures:
                    if not future.done():
                        future.set_exception(e)
                if ending:
                    return

    def _admit(self, job: _Job) -> bool:
        """Fail a job that cannot run: made to fail, detached since it was queued, or too long."""
        try:
            return self._admissible(job)
        except Exception as e:  # a prompt the tokenizer cannot take fails that request alone
            job.future.set_exception(UnusablePrompt(f"the model cannot read this prompt: {e}"))
            return False

    def _admissible(self, job: _Job) -> bool:
        if job.served in self.failing:
            job.future.set_exception(ModelFailure(f"model '{job.served}' is failing (injected)"))
        elif job.served != self.name and job.served not in self.adapters:
            job.future.set_exception(ModelFailure(f"model '{job.served}' is no longer loaded"))
        elif (
            self.context and (n := len(self.tokenizer(job.prompt).input_ids)) + job.max_tokens > self.context
        ):
            job.future.set_exception(
                PromptTooLong(
                    f"the prompt is {n} tokens and max_tokens {job.max_tokens}; the model's context is "
                    f"{self.context} tokens"
                )
            )
        else:
            return True
        return False

    def _generate(self, jobs: list[_Job]) -> None:
        jobs = [job for job in jobs if self._admit(job)]
        if not jobs:
            return
        rows = [(job, i) for job in jobs for i in range(job.n)]
        adapter_names = None
        if self.adapters:  # the model is a PeftModel: each row names its adapter
            adapter_names = [self.adapters.get(job.served, BASE_ADAPTER) for job, _ in rows]
        began = time.perf_counter()
        try:
            completions = generate_batch(
                self.model,
                self.tokenizer,
                [job.prompt for job, _ in rows],
                [job.max_tokens for job, _ in rows],
                jobs[0].temperature,
                [job.stop for job, _ in rows],
                adapter_names,
                sampling=[job.sampling.for_choice(i) for job, i in rows],
            )
        except Exception as e:  # any crash of the model is a failure to fail over from
            log.exception("generation failed on %s", self.name)
            for job in jobs:
                job.future.set_exception(ModelFailure(f"{self.name}: {type(e).__name__}: {e}"))
            return
        log.debug("%s: batch of %d in %.0f ms", self.name, len(rows), 1000 * (time.perf_counter() - began))
        done = iter(completions)
        for job in jobs:
            job.future.set_result([next(done) for _ in range(job.n)])


class ModelSet:
    """Every served model by name: bases, each on its worker, and the adapters attached to them."""

    def __init__(self, device: str, max_batch: int) -> None:
        self.device = device
        self.max_batch = max_batch
        self.workers: dict[str, BaseModelWorker] = {}  # by base name
        self.where: dict[str, BaseModelWorker] = {}  # served name -> the worker that runs it

    def load_base(self, name: str, path: str) -> None:
        """Blocking: load a base model (from a path, hub id, `tiny`, `embedded` or `registry:`)."""
        from srl_rlvr.modeling import load_model
        from srl_rlvr.tracking.registry import resolve_source

        model, tokenizer = load_model(ModelConfig(name_or_path=resolve_source(path), device=self.device))
        model.eval()
        worker = BaseModelWorker(name, model, tokenizer, self.max_batch)
        self.workers[name] = worker
        self.where[name] = worker

    def attach(self, name: str, path: str, base: str) -> None:
        """Blocking: attach (or hot-swap) adapter `name` on `base`. Requests keep flowing while the weights
        load from disk; the swap itself waits only for the batch being generated."""
        if name in self.workers:
            raise UserError(f"'{name}' is a base model; choose another adapter name")
        if base not in self.workers:
            raise UserError(f"unknown base model '{base}'; bases: {', '.join(self.workers)}")
        current = self.where.get(name)
        if current is not None and current.name != base:
            raise UserError(f"adapter '{name}' is attached to '{current.name}', not '{base}'")
        folder = adapter_folder(path)
        worker = self.workers[base]
        try:
            worker.call(lambda: worker.attach(name, folder)).result()
        except (ValueError, KeyError, RuntimeError, OSError, TypeError) as e:
            raise ModelLoadError(f"cannot attach adapter '{path}' to '{base}': {e}") from None
        self.where[name] = worker

    def detach(self, name: str) -> None:
        """Blocking: detach adapter `name`; requests queued for it before this call still finish."""
        worker = self.where.get(name)
        if worker is None or name in self.workers:
            loaded = ", ".join(self.adapters()) or "none"
            raise UserError(f"'{name}' is not a loaded adapter; adapters: {loaded}")
        del self.where[name]  # new requests stop here; queued ones run before the detach
        worker.call(lambda: worker.detach(name)).result()

    async def generate(
        self,
        name: str,
        prompt: str,
        max_tokens: int,
        sampling: RowSampling,
        stop: list[str],
        timeout_s: float,
        n: int = 1,
    ) -> list[Completion]:
        """`n` completions of `prompt`, generated as rows of one batch."""
        worker = self.where.get(name)
        if worker is None:
            raise ModelFailure(f"model '{name}' is not loaded")
        job = worker.submit(name, prompt, max_tokens, sampling, stop, n)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job.future), timeout_s)
        except TimeoutError:
            raise ModelFailure(f"model '{name}' did not answer within {timeout_s:g} s") from None

    def adapters(self) -> dict[str, str]:
        """Adapter name -> the base it is attached to."""
        return {name: w.name for name, w in self.where.items() if name not in self.workers}

    def tokenizer(self, name: str) -> Any:
        return self.where[name].tokenizer

    def restarts(self) -> dict[str, int]:
        """Base model -> how often its thread had died and was started again."""
        return {name: worker.restarts for name, worker in self.workers.items()}

    def set_failing(self, name: str, failing: bool) -> None:
        (self.where[name].failing.add if failing else self.where[name].failing.discard)(name)

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()
