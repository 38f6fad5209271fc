"""Evidence from history: the past changes most like a flagged hunk that were later fixed.

At training time the train split's introducing hunks (rnp "yes": a later fix changed their
lines) and any imported review comments become an index: scikit-learn's TF-IDF over a
code-aware token pattern (identifiers split at ``_`` and case changes, numbers, the path's
parts), rows L2-normalised, so a dot product is the cosine similarity. It is stored in the
bundle without pickle: ``evidence/index.json`` (vocabulary, idf, the items) and
``evidence/matrix.npz`` (the sparse matrix as plain arrays), each with its SHA-256 in the
manifest, so a file from another bundle or a damaged one is refused by name.

A query costs the postings of its own terms only: the matrix is kept by column (CSC), and
terms found in more than half of the items (``self``, ``return`` ...) are not indexed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.bundle import BundleError
from training.tasks import LABEL_YES, RCG, RNP, Record

if TYPE_CHECKING:
    import numpy as np
    from scipy import sparse

EVIDENCE_DIR = "evidence"
INDEX_FILE = "index.json"
MATRIX_FILE = "matrix.npz"
FORMAT = "hunkwise-evidence/1"

#: Neighbours shown per finding, and the cosine similarity below which a past change is
#: not called "like" this one.
TOP_K = 3
SIMILARITY_FLOOR = 0.25
#: How many times the path's parts count: a past fix in the same file is the evidence a
#: reviewer checks first (on flask's and click's test splits the top 3 held a fix of the
#: same file for 29% and 63% of the fixed hunks at 6, 11% and 21% at 1; docs/benchmarks.md).
PATH_WEIGHT = 6

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_HEADER = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@ ?(.*)$")


def function_of(hunk_text: str) -> str | None:
    """The function (or class) a hunk is in, from git's hunk header context."""
    first = hunk_text.split("\n", 1)[0]
    match = _HEADER.match(first)
    context = match.group(1).strip() if match else ""
    return context or None


def tokens(hunk_text: str, path: str | None = None) -> list[str]:
    """What retrieval compares: the changed lines' identifiers (whole, and split into their
    words), numbers, the hunk header's function, and the path's parts (``path:app``)."""
    body = [
        line[1:]
        for line in hunk_text.split("\n")[1:]
        if line[:1] in ("+", "-") and not line.startswith(("+++", "---"))
    ]
    function = function_of(hunk_text) or ""
    out: list[str] = []
    for word in _WORD.findall("\n".join([function, *body])):
        out.append(word)
        parts = _PARTS.findall(word)
        if len(parts) > 1:
            out.extend(part.lower() for part in parts)
    if path:
        parts = [f"path:{part.lower()}" for part in re.split(r"[/\\.]", path) if part]
        out.extend(parts * PATH_WEIGHT)
    return out


@dataclass(frozen=True)
class Evidence:
    """One past change like the flagged hunk, and what became of it."""

    commit: str | None
    time: str | None
    path: str | None
    function: str | None
    fix_commit: str | None
    fix_time: str | None
    #: The fix's cleaned subject, or an imported review comment.
    fix_subject: str | None
    source: str
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def summary(self) -> str:
        """One line: "a change like this in app.py (3f2a1c0, 2024-01-03, similarity
        0.41) was fixed by 9b7e0d1 (2024-01-09): Fix the port check"."""
        said = f": {self.fix_subject}" if self.fix_subject else ""
        similar = f"similarity {self.similarity:.2f}"
        if self.source != "history":
            return f"{self.source} review of a change like this ({similar}){said}"
        where = self.path or "this repository"
        if self.function:
            where += f" ({self.function})"
        when = ", ".join(x for x in (_short(self.commit), (self.time or "")[:10]) if x)
        fixed = "was fixed"
        if self.fix_commit:
            fixed += f" by {_short(self.fix_commit)}"
            if self.fix_time:
                fixed += f" ({self.fix_time[:10]})"
        return f"a change like this in {where} ({when}, {similar}) {fixed}{said}"


def _short(sha: str | None) -> str:
    return sha[:7] if sha else ""


def evidence_records(records: Iterable[Record]) -> list[Record]:
    """What the index holds, in train order: history hunks a later fix changed (rnp yes),
    and imported review comments (rcg records from CodeReviewer or GitHub reviews)."""
    chosen = []
    for record in records:
        fixed = record.task == RNP and record.output == LABEL_YES
        if (fixed and record.meta.source == "history") or (
            record.task == RCG and record.meta.source != "history"
        ):
            chosen.append(record)
    return chosen


def _item(record: Record) -> dict[str, Any]:
    meta = record.meta
    subject = meta.fix_subject if record.task == RNP else record.output
    return {
        "commit": meta.commit,
        "time": meta.time,
        "path": meta.path,
        "function": function_of(record.input),
        "fix_commit": meta.fix_commit,
        "fix_time": meta.fix_time,
        "fix_subject": subject,
        "source": meta.source,
    }


class EvidenceIndex:
    """The index: items, their TF-IDF rows, and the vocabulary to embed a query with."""

    def __init__(
        self,
        items: list[dict[str, Any]],
        vocabulary: list[str],
        idf: np.ndarray,
        matrix: sparse.csc_matrix,
    ) -> None:
        self.items = items
        self.vocabulary = vocabulary
        self.idf = idf
        self.matrix = matrix
        self._terms = {term: index for index, term in enumerate(vocabulary)}

    def __len__(self) -> int:
        return len(self.items)

    # -- building and storing ---------------------------------------------------------

    @classmethod
    def build(cls, records: Iterable[Record]) -> EvidenceIndex | None:
        """The index of ``records``' evidence (see :func:`evidence_records`); None if
        there is none. One item per distinct hunk (the first one in train order)."""
        return cls.from_records(evidence_records(records))

    @classmethod
    def from_records(cls, records: Iterable[Record], dedupe: bool = True) -> EvidenceIndex | None:
        """An index of exactly these records, in order (``dedupe``: the first of equal
        hunks only); None for none."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        seen: set[str] = set()
        chosen = []
        for record in records:
            if not dedupe or record.input not in seen:
                seen.add(record.input)
                chosen.append(record)
        if not chosen:
            return None
        vectorizer = TfidfVectorizer(
            analyzer=lambda pair: tokens(*pair),
            sublinear_tf=True,
            # Terms in most items say nothing about which one is like a query; with a
            # handful of items every term is kept.
            max_df=0.5 if len(chosen) >= 20 else 1.0,
            dtype=_float32(),
        )
        matrix = vectorizer.fit_transform([(r.input, r.meta.path) for r in chosen])
        vocabulary = [""] * len(vectorizer.vocabulary_)
        for term, index in vectorizer.vocabulary_.items():
            vocabulary[index] = term
        return cls([_item(r) for r in chosen], vocabulary, vectorizer.idf_, matrix.tocsc())

    def save(self, bundle: Path) -> dict[str, Any]:
        """Write ``bundle/evidence/``; returns the manifest's ``evidence`` entry."""
        import numpy as np

        directory = Path(bundle) / EVIDENCE_DIR
        directory.mkdir(parents=True, exist_ok=True)
        index = {
            "format": FORMAT,
            "vocabulary": self.vocabulary,
            "items": self.items,
        }
        (directory / INDEX_FILE).write_text(
            json.dumps(index, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        matrix = self.matrix
        with open(directory / MATRIX_FILE, "wb") as out:
            np.savez_compressed(
                out,
                data=matrix.data.astype(np.float32),
                indices=matrix.indices.astype(np.int32),
                indptr=matrix.indptr.astype(np.int64),
                shape=np.array(matrix.shape, dtype=np.int64),
                idf=np.asarray(self.idf, dtype=np.float32),
            )
        return {
            "format": FORMAT,
            "items": len(self.items),
            "terms": len(self.vocabulary),
            "files": {name: _sha256(directory / name) for name in (INDEX_FILE, MATRIX_FILE)},
        }

    @classmethod
    def load(cls, bundle: Path, entry: dict[str, Any]) -> EvidenceIndex:
        """Read and check ``bundle/evidence/``: each file must have the SHA-256 the manifest
        recorded (else it is from another bundle or damaged) and the shapes must agree;
        raises :class:`BundleError` naming the file."""
        import numpy as np
        from scipy import sparse

        directory = Path(bundle) / EVIDENCE_DIR
        files = entry.get("files") if isinstance(entry, dict) else None
        if not isinstance(files, dict) or entry.get("format") != FORMAT:
            raise BundleError(f"{bundle}/manifest.json: 'evidence' is not a {FORMAT} entry")
        for name in (INDEX_FILE, MATRIX_FILE):
            path = directory / name
            if not path.is_file():
                raise BundleError(f"{path}: missing; the bundle's evidence index is incomplete")
            if _sha256(path) != files.get(name):
                raise BundleError(
                    f"{path}: not the file this bundle was trained with (its checksum "
                    "differs): damaged or copied from another bundle"
                )
        index_path, matrix_path = directory / INDEX_FILE, directory / MATRIX_FILE
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            vocabulary, items = index["vocabulary"], index["items"]
            with np.load(matrix_path, allow_pickle=False) as arrays:
                shape = tuple(int(n) for n in arrays["shape"])
                matrix = sparse.csc_matrix(
                    (arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape
                )
                idf = arrays["idf"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise BundleError(f"{directory}: unreadable evidence index ({error})") from None
        if shape != (len(items), len(vocabulary)) or len(idf) != len(vocabulary):
            raise BundleError(
                f"{matrix_path}: its shape {shape} does not fit {index_path} "
                f"({len(items)} items, {len(vocabulary)} terms)"
            )
        return cls(items, vocabulary, idf, matrix)

    # -- querying -----------------------------------------------------------------------

    def embed(self, text: str, path: str | None) -> tuple[np.ndarray, np.ndarray]:
        """The query's TF-IDF row as TfidfVectorizer computes it (sublinear tf times idf,
        L2-normalised), sparse: (term indices, weights)."""
        import numpy as np

        counts = Counter(t for t in tokens(text, path) if t in self._terms)
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        columns = np.fromiter((self._terms[t] for t in counts), dtype=np.int64, count=len(counts))
        weights = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64))) * self.idf[columns]
        return columns, (weights / np.linalg.norm(weights)).astype(np.float32)

    def scores(self, text: str, path: str | None) -> np.ndarray:
        """Cosine similarity of one query to every item. The matrix is kept by column (an
        inverted index): the query costs the postings of its own terms only."""
        import numpy as np

        columns, weights = self.embed(text, path)
        matrix = self.matrix
        starts, ends = matrix.indptr[columns], matrix.indptr[columns + 1]
        if not len(columns) or not (ends - starts).any():
            return np.zeros(len(self.items), dtype=np.float64)
        rows = np.concatenate([matrix.indices[a:b] for a, b in zip(starts, ends, strict=True)])
        values = np.concatenate(
            [matrix.data[a:b] * w for a, b, w in zip(starts, ends, weights, strict=True)]
        )
        return np.bincount(rows, weights=values, minlength=len(self.items))

    def similarities(self, hunks: Sequence[tuple[str, str | None]]) -> np.ndarray:
        """Cosine similarity of each query to every item (queries x items)."""
        import numpy as np

        if not hunks:
            return np.zeros((0, len(self.items)))
        return np.vstack([self.scores(text, path) for text, path in hunks])

    def neighbours(
        self,
        hunks: Sequence[tuple[str, str | None]],
        k: int = TOP_K,
        floor: float = SIMILARITY_FLOOR,
    ) -> list[list[Evidence]]:
        """Up to ``k`` items at least ``floor`` similar to each query, newest first."""
        import numpy as np

        results = []
        for text, path in hunks:
            row = self.scores(text, path)
            items = np.flatnonzero(row >= floor)
            values = row[items]
            if len(values) > k:
                top = np.argpartition(-values, k)[:k]
                values, items = values[top], items[top]
            found = [
                Evidence(**self.items[item], similarity=round(float(value), 3))
                for value, item in zip(values, items, strict=True)
            ]
            found.sort(key=lambda e: (e.time or "", e.similarity), reverse=True)
            results.append(found)
        return results


def _float32():
    import numpy as np

    return np.float32


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_evidence(bundle: Path, entry: dict[str, Any] | None) -> tuple[EvidenceIndex | None, str]:
    """The bundle's evidence index, or None and why not (no index in the bundle, or the
    refusal's message): review goes on without evidence either way."""
    if not entry:
        return None, "the bundle has no evidence index"
    try:
        return EvidenceIndex.load(bundle, entry), ""
    except BundleError as error:
        return None, f"evidence left out: {error}"


@dataclass(frozen=True)
class EvidenceReport:
    """How often a truly fixed test hunk's evidence points where a reviewer would look:
    shares of the test split's rnp "yes" hunks whose top-3 evidence exists at all, holds
    a fix of the same file, and of the same function (the hunk header's context)."""

    index_items: int
    fixed_test_hunks: int
    with_evidence: float | None
    top3_same_file: float | None
    top3_same_function: float | None


def evidence_usefulness(index: EvidenceIndex, test: Sequence[Record]) -> EvidenceReport:
    """:class:`EvidenceReport` of ``index`` on the rnp ``test`` records."""
    fixed = [r for r in test if r.task == RNP and r.output == LABEL_YES]
    found = index.neighbours([(r.input, r.meta.path) for r in fixed])
    with_any = same_file = same_function = 0
    for record, evidence in zip(fixed, found, strict=True):
        function = function_of(record.input)
        with_any += bool(evidence)
        same_file += any(e.path == record.meta.path for e in evidence)
        same_function += bool(function) and any(
            e.path == record.meta.path and e.function == function for e in evidence
        )
    n = len(fixed)

    def share(count: int) -> float | None:
        return round(count / n, 4) if n else None

    return EvidenceReport(len(index), n, share(with_any), share(same_file), share(same_function))
