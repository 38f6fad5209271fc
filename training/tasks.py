"""The contract in code: task names, instructions, the alpaca-v1 prompt template,
label words and the Record type shared by mining, training and serving."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE_NAME = "alpaca-v1"

RNP = "rnp"
RCG = "rcg"
CR = "cr"
EDIT = "edit"
INSTRUCT = "instruct"

#: Tasks that get a stage-2 adapter each, in the order a bundle lists them.
ADAPTER_TASKS: tuple[str, ...] = (RNP, RCG, CR, EDIT)
#: Every task a record may carry.
TASKS: tuple[str, ...] = (*ADAPTER_TASKS, INSTRUCT)

SPLITS: tuple[str, ...] = ("train", "valid", "test")

#: The one rule of a finding (SARIF ruleId, the diagnostic's code, ``hunkwise: ignore[...]``)
#: and the tool that reports it (SARIF driver, the diagnostic's source).
RULE_ID = "review-needed"
TOOL_NAME = "hunkwise"

SOURCES: tuple[str, ...] = ("history", "codereviewer", "github-review", "alpaca")

DEFAULT_INSTRUCTIONS: dict[str, str] = {
    RNP: "Determine whether the provided diff hunk requires a code review. "
    "Respond with either 'yes' or 'no'.",
    RCG: "Review the given code and provide a constructive code review comment.",
    CR: "Refine the given code based on the provided code review comment.",
}

LABEL_YES = "yes"
LABEL_NO = "no"
LABEL_WORDS: dict[str, str] = {"yes": LABEL_YES, "no": LABEL_NO}

_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def render_prompt(instruction: str, input: str = "") -> str:
    """The alpaca-v1 prompt, up to and including ``### Response:\\n``."""
    if input:
        return _PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
    return _PROMPT_NO_INPUT.format(instruction=instruction)


def render_example(instruction: str, input: str, output: str, eos_token: str) -> str:
    """Prompt, response and EOS: the full training text of one record."""
    return render_prompt(instruction, input) + output + eos_token


def cr_input(comment: str, code: str) -> str:
    """The input of a code-refinement record: the review comment, then the code."""
    return f"Comment: {comment}\nCode:\n{code}"


def record_id(task: str, instruction: str, input: str) -> str:
    """Stable content hash: the same task, instruction and input give the same id."""
    digest = hashlib.sha256()
    for part in (task, instruction, input):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class RecordMeta:
    """Where a record came from."""

    source: str = "history"
    repo: str | None = None
    commit: str | None = None
    fix_commit: str | None = None
    path: str | None = None
    lang: str | None = None
    time: str | None = None
    #: For a hunk a later fix changed (rnp "yes", rcg): that fix's cleaned subject and
    #: time, which the evidence index cites.
    fix_subject: str | None = None
    fix_time: str | None = None


@dataclass(frozen=True)
class Record:
    """One training or evaluation example, serialised as one JSON line."""

    task: str
    instruction: str
    input: str
    output: str
    meta: RecordMeta = field(default_factory=RecordMeta)
    id: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        if not self.id:
            object.__setattr__(self, "id", record_id(self.task, self.instruction, self.input))

    @classmethod
    def make(
        cls, task: str, input: str, output: str, meta: RecordMeta, instruction: str | None = None
    ) -> Record:
        """A record with the task's default instruction unless one is given."""
        if instruction is None:
            instruction = DEFAULT_INSTRUCTIONS[task]
        return cls(task=task, instruction=instruction, input=input, output=output, meta=meta)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "task": self.task,
            "instruction": self.instruction,
            "input": self.input,
            "output": self.output,
            "meta": self.meta.__dict__.copy(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> Record:
        meta = data.get("meta") or {}
        known = RecordMeta.__dataclass_fields__
        return cls(
            id=str(data.get("id") or ""),
            task=str(data["task"]),
            instruction=str(data["instruction"]),
            input=str(data.get("input") or ""),
            output=str(data["output"]),
            meta=RecordMeta(**{k: v for k, v in meta.items() if k in known}),
        )

    @property
    def prompt(self) -> str:
        return render_prompt(self.instruction, self.input)


def write_jsonl(path: Path, records: Iterable[Record]) -> int:
    """Write records one per line; returns how many were written."""
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for record in records:
            out.write(record.to_json())
            out.write("\n")
            count += 1
    return count


def read_jsonl(path: Path) -> Iterator[Record]:
    """Read records written by :func:`write_jsonl`; a bad line raises ValueError with its number."""
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield Record.from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{number}: not a hunkwise record ({error})") from error
