"""Where problems come from: the task's sampler, a user's file, or the teacher proposing new ones.

The third is dynamic example generation: the teacher is shown a few existing problems
and asked for different ones (diversity pressure), and a proposal whose word-trigram Jaccard
similarity to an earlier problem reaches `dedup_threshold` is dropped as a near-duplicate.
Proposed problems are appended to `problems.jsonl` in the dataset folder as they arrive, so a rerun
sees the same problems in the same order and continues where it stopped. Asked `with_solution`, the
teacher also answers each problem as a student should (in `metadata["teacher_solution"]`), so the
task's verifier can check that the reference answer is one it scores (`evaluate/testdata.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from srl_rlvr.config import Config
from srl_rlvr.data.jsonl import append_jsonl, read_models
from srl_rlvr.generate.llm_client import ChatClient
from srl_rlvr.generate.teacher_reply import ReplyRejected, extract_json
from srl_rlvr.tasks import Problem, Task
from srl_rlvr.tasks.base import Split

PROBLEMS_FILE = "problems.jsonl"
SOLUTION_KEY = "teacher_solution"  # the metadata key of the teacher's own answer to a proposed problem
_WORD = re.compile(r"\w+")


class ProblemRow(BaseModel):
    """A problem in a user's file (or a proposed one): text, and the reference answer when known."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    answer: Any = None
    id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def problem(self) -> Problem:
        pid = self.id or "p-" + hashlib.sha256(self.text.encode()).hexdigest()[:16]
        return Problem(id=pid, text=self.text, answer=self.answer, metadata=self.metadata)


def file_problems(path: str | Path) -> list[Problem]:
    """Problems from a JSONL file of {text, answer?, id?, metadata?} rows (every bad row reported at once)."""
    return [row.problem() for row in read_models(path, ProblemRow)]


class ProblemList:
    """A fixed, ordered source: the task's sampler (grown on demand) or a file."""

    def __init__(
        self, problems: list[Problem], task: Task | None = None, seed: int = 0, split: Split = "train"
    ):
        self.problems, self.task, self.seed, self.split = problems, task, seed, split
        self.next_index = 0

    @classmethod
    def from_task(cls, task: Task, n: int, seed: int, split: Split) -> ProblemList:
        return cls(task.sample(n, seed=seed, split=split), task, seed, split)

    def _grow(self) -> bool:
        """A task sampler's first n problems stay the same for a larger n, so more can be drawn after
        rejections without reordering the ones already used. False when the split has no more."""
        if self.task is None:
            return False
        more = self.task.sample(2 * len(self.problems) + 1, seed=self.seed, split=self.split)
        grown = len(more) > len(self.problems)
        self.problems = more
        return grown

    async def next(self) -> Problem | None:
        if self.next_index >= len(self.problems) and not self._grow():
            return None
        self.next_index += 1
        return self.problems[self.next_index - 1]

    def positions(self) -> dict[str, int]:
        """Each problem's place in the source: the dataset's row order."""
        return {p.id: i for i, p in enumerate(self.problems)}


def shingles(text: str) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    n = 3 if len(words) >= 3 else 1
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class NearDuplicates:
    """Word-trigram Jaccard against every problem seen, through an inverted index so a check costs
    time in the number of problems that share a trigram, not in all of them."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.sets: list[set[tuple[str, ...]]] = []
        self.index: dict[tuple[str, ...], list[int]] = {}

    def add(self, text: str) -> bool:
        """Remember `text` and return True, unless it near-duplicates an earlier one (then False)."""
        grams = shingles(text)
        shared = Counter(i for g in grams for i in self.index.get(g, ()))
        for i, inter in shared.items():
            if inter / (len(grams) + len(self.sets[i]) - inter) >= self.threshold:
                return False
        if not grams and any(not s for s in self.sets):
            return False
        for g in grams:
            self.index.setdefault(g, []).append(len(self.sets))
        self.sets.append(grams)
        return True


def generator_messages(
    task: Task,
    examples: list[str],
    k: int,
    instructions: str,
    example_prompt: str,
    with_solution: bool = False,
) -> list[dict[str, str]]:
    solution = (
        ', "solution": "your full reply to the problem\'s prompt, ending with that answer in the '
        'format the prompt asks for"'
        if with_solution
        else ""
    )
    system = (
        f"You write new problems for the task '{task.name}'. {instructions}\n"
        'Reply with one JSON object: {"problems": [{"text": "the problem", "answer": "its correct answer"'
        f"{solution}}}]}}"
    )
    user = f"A student sees each problem inside a prompt like this one:\n{example_prompt}\n\nWrite {k} new problems"
    if examples:
        user += ", each clearly different from these and from each other:\n" + "\n".join(
            f"- {e}" for e in examples
        )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


class ProblemGenerator:
    """Problems the teacher proposes, kept in `problems.jsonl`, near-duplicates removed."""

    def __init__(
        self,
        task: Task,
        client: ChatClient,
        out_dir: Path,
        per_request: int,
        instructions: str,
        shown_examples: int,
        dedup_threshold: float,
        max_generated: int,
        seed: int = 0,
        with_solution: bool = False,
    ) -> None:
        self.task, self.client, self.path = task, client, out_dir / PROBLEMS_FILE
        self.per_request, self.instructions = per_request, instructions
        self.with_solution = with_solution
        self.shown_examples, self.max_generated = shown_examples, max_generated
        self.rng = random.Random(seed)
        self.dedup = NearDuplicates(dedup_threshold)
        self.problems = file_problems(self.path) if self.path.is_file() else []
        for p in self.problems:
            self.dedup.add(p.text)
        seeds = task.sample(max(shown_examples, 1), seed=seed, split="train")
        self.seed_texts = [p.text for p in seeds]
        for text in self.seed_texts:  # a copy of a problem shown as an example is not new either
            self.dedup.add(text)
        self.example_prompt = task.prompt(seeds[0]) if seeds else ""
        self.next_index = 0
        self.duplicates = 0
        self.requests = 0
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(
        cls,
        config: Config,
        task: Task,
        client: ChatClient,
        out_dir: Path,
        max_generated: int,
        with_solution: bool = False,
    ) -> ProblemGenerator:
        """The generator `collaboration.problems` describes, stopping at `max_generated` problems."""
        source = config.collaboration.problems
        return cls(
            task,
            client,
            out_dir,
            config.collaboration.num_examples_per_request,
            source.instructions,
            source.shown_examples,
            source.dedup_threshold,
            max_generated,
            seed=config.data.seed,
            with_solution=with_solution,
        )

    async def _propose(self) -> int:
        """Ask for `per_request` more problems; return how many new ones were kept."""
        pool = self.seed_texts + [p.text for p in self.problems]
        shown = self.rng.sample(pool, min(self.shown_examples, len(pool)))
        messages = generator_messages(
            self.task, shown, self.per_request, self.instructions, self.example_prompt, self.with_solution
        )
        # the request count is in the message so each request is new to the cache but a rerun is not
        messages[-1]["content"] += f"\n(batch {len(self.problems)})"
        self.requests += 1
        reply = await self.client.complete(messages, temperature=1.0, max_tokens=2048, json_mode=True)
        try:
            value, _ = extract_json(reply)
        except ReplyRejected:
            return 0
        items = value.get("problems", []) if isinstance(value, dict) else value
        kept = []
        for item in items if isinstance(items, list) else []:
            text = (item.get("text") if isinstance(item, dict) else item) or ""
            if not isinstance(text, str) or not text.strip():
                continue
            if not self.dedup.add(text.strip()):
                self.duplicates += 1
                continue
            answer = item.get("answer") if isinstance(item, dict) else None
            metadata: dict[str, Any] = {"source": "generated"}
            solution = item.get("solution") if isinstance(item, dict) and self.with_solution else None
            if isinstance(solution, str) and solution.strip():
                metadata[SOLUTION_KEY] = solution
            row = ProblemRow(
                text=text.strip(),
                answer=json.dumps(answer) if isinstance(answer, dict | list) else answer,
                metadata=metadata,
            )
            kept.append(row)
            self.problems.append(row.problem())
        append_jsonl(self.path, kept)
        return len(kept)

    async def next(self) -> Problem | None:
        async with self._lock:
            fruitless = 0
            while self.next_index >= len(self.problems):
                if len(self.problems) >= self.max_generated or fruitless >= 3:
                    return None
                fruitless = 0 if await self._propose() else fruitless + 1
            self.next_index += 1
            return self.problems[self.next_index - 1]

    def positions(self) -> dict[str, int]:
        """Each problem's place in the source: the dataset's row order."""
        return {p.id: i for i, p in enumerate(self.problems)}
