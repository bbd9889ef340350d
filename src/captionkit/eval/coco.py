"""COCO caption metrics equal to pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L and CIDEr(-D), without its Java
tokenizer.

The pipeline is pycocoevalcap's ``COCOEvalCap.evaluate`` step by step:

1. tokenise the references (all of them, in one batch) and the predictions (another batch) with
   :func:`captionkit.eval.ptb.ptb_tokenize`, a pure-Python twin of its PTBTokenizer (Stanford CoreNLP 3.4.1
   ``-preserveLines -lowerCase`` plus its punctuation filter);
2. score the tokenised text with ports of ``Bleu(4)`` (``BleuScorer``, effective reference length
   "closest"), ``Rouge()`` (ROUGE-L, beta 1.2), ``Cider()`` (``CiderScorer``: CIDEr-D with sigma 6, clipping,
   document frequencies and ``log(#items)`` from the references of the evaluated set) and ``Meteor()`` (the
   METEOR 1.5 jar that pycocoevalcap ships, driven over the same ``-stdio`` protocol).

The ports keep pycocoevalcap's arithmetic, order of operations and quirks (the brevity-penalty constants
``1e-9``/``1e-15`` of BLEU, CIDEr's length penalty that counts *bigrams*, ROUGE-L's ``str.split(" ")`` that
makes an empty caption one empty token), so the numbers equal pycocoevalcap's to floating-point noise,
corpus and per item. Inputs are raw text; ids are scored in the order of ``gts``.

Edge cases:

* Empty predictions (``""`` or ``None``) and references that tokenise to nothing (``""``, ``"..."``) are
  scored exactly as pycocoevalcap scores them (mostly 0; ROUGE-L gives 1.0 to an empty prediction against an
  empty reference, because both become the single token ``""``).
* An id whose reference list is empty (pycocoevalcap asserts and stops) scores 0.0 per item on every metric
  and is left out of every corpus figure, which are then pycocoevalcap's on the other ids.
* When no reference of the whole set has a token, pycocoevalcap's CIDEr raises (``max()`` of no document
  frequency); here every CIDEr is 0.0.
* ``gts`` and ``res`` must hold the same ids (pycocoevalcap asserts it too): :class:`ConfigError` otherwise.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import shutil
import subprocess
import tempfile
import threading
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from captionkit.errors import ConfigError
from captionkit.eval.ptb import ptb_tokenize

__all__ = [
    "JAR_MISSING",
    "JAVA_MISSING",
    "METRICS",
    "CiderD",
    "MeteorScorer",
    "MeteorUnavailable",
    "bleu",
    "cider_d",
    "cider_d_scorer",
    "coco_scores",
    "meteor",
    "meteor_jar",
    "rouge_l",
    "tokenize_pairs",
]

log = logging.getLogger("captionkit")

METRICS = ("BLEU", "METEOR", "ROUGE-L", "CIDEr")
JAVA_MISSING = "java not found: install a JRE (e.g. apt-get install default-jre-headless)"
JAR_MISSING = ("METEOR needs meteor-1.5.jar, which ships with pycocoevalcap: pip install pycocoevalcap "
               "(or set CAPTIONKIT_METEOR_JAR to the jar; its data/paraphrase-en.gz must sit beside it)")

Refs = Mapping[Hashable, Sequence[str]]
Preds = Mapping[Hashable, str]


# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------

def _check_ids(gts: Refs, res: Preds) -> None:
    if gts.keys() == res.keys():
        return
    no_pred = [k for k in gts if k not in res]
    no_ref = [k for k in res if k not in gts]
    parts = []
    if no_pred:
        parts.append(f"{len(no_pred)} reference id(s) without a prediction (e.g. {no_pred[:3]})")
    if no_ref:
        parts.append(f"{len(no_ref)} prediction id(s) without references (e.g. {no_ref[:3]})")
    raise ConfigError("COCO metrics need the same ids in references and predictions: " + "; ".join(parts))


def tokenize_pairs(gts: Refs, res: Preds) -> tuple[dict[Hashable, list[str]], dict[Hashable, list[str]]]:
    """pycocoevalcap's tokenisation step: ``(gts, res)`` as ``{id: [tokenised, ...]}`` in ``gts`` order.

    References are tokenised in one batch and predictions in another, as COCOEvalCap calls its tokenizer.
    """
    _check_ids(gts, res)
    ids = list(gts)
    flat = [r if r is not None else "" for i in ids for r in gts[i]]
    tok_refs = iter(ptb_tokenize(flat))
    tok_preds = ptb_tokenize([res[i] if res[i] is not None else "" for i in ids])
    return ({i: [next(tok_refs) for _ in gts[i]] for i in ids}, {i: [p] for i, p in zip(ids, tok_preds)})


def _prepare(gts: Refs, res: Preds, tokenized: bool) -> tuple[dict, dict, list]:
    """``(gts, res)`` tokenised, in pycocoevalcap's format, without the ids that have no reference (they
    score 0.0 and stay out of the corpus figures, see :func:`_expand`), and the list of all ids."""
    _check_ids(gts, res)
    ids = list(gts)
    kept = {i: gts[i] for i in ids if gts[i]}
    if tokenized:
        return ({i: list(v) for i, v in kept.items()},
                {i: [res[i][0] if isinstance(res[i], list) else (res[i] or "")] for i in kept}, ids)
    g, r = tokenize_pairs(kept, {i: res[i] for i in kept})
    return g, r, ids


def _expand(ids: list, scored: Iterable, values: Iterable[float]) -> list[float]:
    """Per-item values for every id, 0.0 for the ids that were not scored (no reference)."""
    out = dict.fromkeys(ids, 0.0)
    out.update({i: float(v) for i, v in zip(scored, values)})
    return list(out.values())


# ---------------------------------------------------------------------------------------------------------
# BLEU (pycocoevalcap/bleu/bleu_scorer.py, option "closest")
# ---------------------------------------------------------------------------------------------------------

def _ngram_counts(words: Sequence[str], n: int) -> dict[tuple[str, ...], int]:
    counts: dict[tuple[str, ...], int] = defaultdict(int)
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return counts


def _bleu_scores(gts: dict, res: dict, n: int = 4) -> tuple[list[float], list[list[float]]]:
    small, tiny = 1e-9, 1e-15
    bleu_list: list[list[float]] = [[] for _ in range(n)]
    total_guess, total_correct = [0] * n, [0] * n
    total_test = total_ref = 0
    for i in gts:
        reflens, maxcounts = [], {}
        for ref in gts[i]:
            words = ref.split()
            reflens.append(len(words))
            for ngram, count in _ngram_counts(words, n).items():
                maxcounts[ngram] = max(maxcounts.get(ngram, 0), count)
        words = res[i][0].split()
        testlen = len(words)
        reflen = min((abs(rl - testlen), rl) for rl in reflens)[1]
        guess = [max(0, testlen - k + 1) for k in range(1, n + 1)]
        correct = [0] * n
        for ngram, count in _ngram_counts(words, n).items():
            correct[len(ngram) - 1] += min(maxcounts.get(ngram, 0), count)
        total_test += testlen
        total_ref += reflen
        for k in range(n):
            total_guess[k] += guess[k]
            total_correct[k] += correct[k]
        bleu = 1.
        for k in range(n):
            bleu *= (float(correct[k]) + tiny) / (float(guess[k]) + small)
            bleu_list[k].append(bleu ** (1. / (k + 1)))
        ratio = (testlen + tiny) / (reflen + small)
        if ratio < 1:
            for k in range(n):
                bleu_list[k][-1] *= math.exp(1 - 1 / ratio)
    bleus = []
    bleu = 1.
    for k in range(n):
        bleu *= float(total_correct[k] + tiny) / (total_guess[k] + small)
        bleus.append(bleu ** (1. / (k + 1)))
    ratio = (total_test + tiny) / (total_ref + small)
    if ratio < 1:
        for k in range(n):
            bleus[k] *= math.exp(1 - 1 / ratio)
    return bleus, bleu_list


def bleu(gts: Refs, res: Preds, *, n: int = 4,
         tokenized: bool = False) -> tuple[list[float], list[list[float]]]:
    """pycocoevalcap ``Bleu(n).compute_score``: ``([BLEU-1..n corpus], [[per item] for BLEU-1..n])``.

    ``gts``: id -> reference texts; ``res``: id -> prediction text; raw text unless ``tokenized`` (then
    already-tokenised strings, as pycocoevalcap's scorers take them)."""
    g, r, ids = _prepare(gts, res, tokenized)
    if not g:
        return [0.0] * n, [[0.0] * len(ids) for _ in range(n)]
    corpus, per_item = _bleu_scores(g, r, n)
    return corpus, [_expand(ids, g, values) for values in per_item]


# ---------------------------------------------------------------------------------------------------------
# ROUGE-L (pycocoevalcap/rouge/rouge.py)
# ---------------------------------------------------------------------------------------------------------

def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else (prev[j] if prev[j] > cur[j - 1] else cur[j - 1]))
        prev = cur
    return prev[-1]


def _rouge_item(candidate: str, refs: Sequence[str], beta: float = 1.2) -> float:
    token_c = candidate.split(" ")
    prec, rec = [], []
    for reference in refs:
        token_r = reference.split(" ")
        lcs = _lcs(token_r, token_c)
        prec.append(lcs / float(len(token_c)))
        rec.append(lcs / float(len(token_r)))
    prec_max, rec_max = max(prec), max(rec)
    if prec_max != 0 and rec_max != 0:
        return ((1 + beta ** 2) * prec_max * rec_max) / float(rec_max + beta ** 2 * prec_max)
    return 0.0


def rouge_l(gts: Refs, res: Preds, *, tokenized: bool = False) -> tuple[float, list[float]]:
    """pycocoevalcap ``Rouge().compute_score``: ``(mean ROUGE-L, [per item])``."""
    g, r, ids = _prepare(gts, res, tokenized)
    scores = [_rouge_item(r[i][0], g[i]) for i in g]
    return (float(np.mean(np.array(scores))) if scores else 0.0), _expand(ids, g, scores)


# ---------------------------------------------------------------------------------------------------------
# CIDEr-D (pycocoevalcap/cider/cider_scorer.py)
# ---------------------------------------------------------------------------------------------------------

class CiderD:
    """CIDEr-D as pycocoevalcap's ``CiderScorer`` computes it, with the document frequencies fixed up front.

    Build it once from a reference corpus (one entry per item: that item's references, as whitespace-
    tokenised strings); :meth:`score` then scores candidates against their own references with those
    document frequencies and ``log(len(corpus))`` as the reference length. With the corpus equal to the
    references being scored, the numbers are pycocoevalcap's ``Cider()``'s; with the training references
    it is the usual self-critical (SCST) reward. Reference vectors are cached between calls.
    """

    def __init__(self, references_corpus: Iterable[Sequence[str]], *, n: int = 4, sigma: float = 6.0,
                 cache_size: int = 200_000):
        self.n = n
        self.sigma = sigma
        df: dict[tuple[str, ...], float] = defaultdict(float)
        count = 0
        for refs in references_corpus:
            count += 1
            for ngram in {g for ref in refs for g in _ngram_counts(ref.split(), n)}:
                df[ngram] += 1
        self.num_documents = count
        # pycocoevalcap: ref_len = np.log(float(len(crefs))); idf(g) = ref_len - np.log(max(1.0, df(g))), with
        # ref_len for n-grams the corpus never saw. (math.log is the libm log numpy's scalar log calls.)
        self.ref_len = math.log(float(count)) if count else 0.0
        logs: dict[float, float] = {}
        for value in df.values():
            if value not in logs:
                logs[value] = math.log(max(1.0, value))
        self._idf = {k: self.ref_len - logs[v] for k, v in df.items()}
        self.document_frequency = dict(df)
        self._penalty_denominator = 2 * self.sigma ** 2
        self._cache: dict[str, tuple] = {}
        self._cache_size = cache_size

    def _vec(self, text: str) -> tuple[list[dict], list[float], int]:
        idf, ref_len, n = self._idf, self.ref_len, self.n
        vec: list[dict] = [{} for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for ngram, tf in _ngram_counts(text.split(), n).items():
            k = len(ngram) - 1
            v = float(tf) * idf.get(ngram, ref_len)
            vec[k][ngram] = v
            norm[k] += pow(v, 2)
            if k == 1:  # pycocoevalcap counts bigrams here: its "length" is the number of bigrams
                length += tf
        return vec, [float(np.sqrt(x)) for x in norm], length

    def _ref_vec(self, text: str) -> tuple[list[dict], list[float], int]:
        hit = self._cache.get(text)
        if hit is None:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            hit = self._cache[text] = self._vec(text)
        return hit

    def _score_one(self, candidate: str, refs: Sequence[str]) -> float:
        vec, norm, length = self._vec(candidate)
        n = self.n
        score = np.zeros(n)
        for ref in refs:
            vec_r, norm_r, length_r = self._ref_vec(ref)
            delta = float(length - length_r)
            penalty = np.e ** (-(delta ** 2) / self._penalty_denominator)
            val = np.zeros(n)
            for k in range(n):
                vr = vec_r[k]
                acc = 0.0
                for ngram, vh in vec[k].items():
                    x = vr.get(ngram, 0.0)
                    acc += min(vh, x) * x
                if norm[k] != 0 and norm_r[k] != 0:
                    acc /= (norm[k] * norm_r[k])
                val[k] = acc * penalty
            score += val
        return float(np.mean(score) / len(refs) * 10.0) if refs else 0.0

    def score(self, candidates: Sequence[str], refs: Sequence[Sequence[str]]) -> np.ndarray:
        """CIDEr-D of each candidate against its references (``refs[i]`` for ``candidates[i]``)."""
        if len(candidates) != len(refs):
            raise ConfigError(f"CIDEr-D: {len(candidates)} candidates but {len(refs)} reference lists")
        return np.array([self._score_one(c or "", r) for c, r in zip(candidates, refs)], dtype=np.float64)


def cider_d_scorer(references_corpus: Iterable[Sequence[str]], *, n: int = 4, sigma: float = 6.0,
                   tokenize: bool = False) -> CiderD:
    """A :class:`CiderD` scorer whose document frequencies come from ``references_corpus`` (one list of
    references per item). With ``tokenize=True`` the references are tokenised with
    :func:`~captionkit.eval.ptb.ptb_tokenize` first; :meth:`CiderD.score` never tokenises, so give it
    candidates and references tokenised the same way (``ptb_tokenize``, or a model's own decoded words)."""
    corpus = [list(refs) for refs in references_corpus]
    if tokenize:
        flat = iter(ptb_tokenize([r or "" for refs in corpus for r in refs]))
        corpus = [[next(flat) for _ in refs] for refs in corpus]
    return CiderD(corpus, n=n, sigma=sigma)


def cider_d(gts: Refs, res: Preds, *, n: int = 4, sigma: float = 6.0,
            tokenized: bool = False) -> tuple[float, list[float]]:
    """pycocoevalcap ``Cider().compute_score``: ``(mean CIDEr-D, [per item])``; document frequencies and the
    reference length come from the references of this set."""
    g, r, ids = _prepare(gts, res, tokenized)
    if not g:
        return 0.0, [0.0] * len(ids)
    scorer = CiderD((g[i] for i in g), n=n, sigma=sigma)
    if not scorer.document_frequency:  # pycocoevalcap: max() of an empty sequence
        scores = [0.0] * len(g)
    else:
        scores = scorer.score([r[i][0] for i in g], [g[i] for i in g]).tolist()
    return float(np.mean(np.array(scores))), _expand(ids, g, scores)


# ---------------------------------------------------------------------------------------------------------
# METEOR (pycocoevalcap/meteor/meteor.py: meteor-1.5.jar -stdio)
# ---------------------------------------------------------------------------------------------------------

def meteor_jar() -> Path | None:
    """meteor-1.5.jar: ``$CAPTIONKIT_METEOR_JAR``, else the one inside the installed pycocoevalcap."""
    env = os.environ.get("CAPTIONKIT_METEOR_JAR")
    if env:
        return Path(env) if Path(env).is_file() else None
    try:
        spec = importlib.util.find_spec("pycocoevalcap")
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        jar = Path(loc) / "meteor" / "meteor-1.5.jar"
        if jar.is_file():
            return jar
    return None


class MeteorUnavailable(RuntimeError):
    """METEOR cannot run here; ``str(err)`` says why."""


class MeteorScorer:
    """One METEOR 1.5 process (``java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm``, pycocoevalcap's
    command), reusable across calls; use as a context manager or call :meth:`close`.

    Raises :class:`MeteorUnavailable` when Java or the jar is missing or the process dies."""

    def __init__(self, jar: Path | None = None, java: str | None = None):
        java = java or shutil.which("java")
        if not java:
            raise MeteorUnavailable(JAVA_MISSING)
        jar = jar or meteor_jar()
        if jar is None:
            raise MeteorUnavailable(JAR_MISSING)
        self._stderr = tempfile.TemporaryFile()  # read back only to explain a failure
        self._proc = subprocess.Popen(
            [java, "-jar", "-Xmx2G", jar.name, "-", "-", "-stdio", "-l", "en", "-norm"], cwd=str(jar.parent),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self._lock = threading.Lock()

    def _failed(self) -> MeteorUnavailable:
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        self._stderr.seek(0)
        tail = self._stderr.read()[-600:].decode(errors="replace").strip()
        return MeteorUnavailable(f"the METEOR jar stopped (exit code {code}; it runs with java -Xmx2G)"
                                 + (f": {tail}" if tail else ""))

    def _readline(self) -> str:
        line = self._proc.stdout.readline()
        if not line:
            raise self._failed()
        return line.decode().strip()

    def _write(self, line: str) -> None:
        try:
            self._proc.stdin.write(f"{line}\n".encode())
            self._proc.stdin.flush()
        except OSError as exc:
            raise self._failed() from exc

    def compute(self, gts: dict, res: dict) -> tuple[float, list[float]]:
        """Tokenised ``gts``/``res`` (pycocoevalcap's format) -> ``(corpus METEOR, [per item])``."""
        ids = list(gts)
        with self._lock:
            eval_line = "EVAL"
            for i in ids:
                hyp = res[i][0].replace("|||", "").replace("  ", " ")
                self._write(" ||| ".join(("SCORE", " ||| ".join(gts[i]), hyp)))
                eval_line += f" ||| {self._readline()}"
            self._write(eval_line)
            scores = [float(self._readline()) for _ in ids]
            score = float(self._readline())
        return score, scores

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            proc.kill()
            proc.wait()
        if getattr(self, "_stderr", None) is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> MeteorScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def meteor(gts: Refs, res: Preds, *, tokenized: bool = False,
           scorer: MeteorScorer | None = None) -> tuple[float, list[float]] | tuple[None, str]:
    """pycocoevalcap ``Meteor().compute_score``: ``(corpus METEOR, [per item])``, or ``(None, reason)`` when
    it cannot run (no Java: :data:`JAVA_MISSING`, "java not found: install a JRE (e.g. apt-get install
    default-jre-headless)"; no jar; the process died). Pass ``scorer`` to reuse a running
    :class:`MeteorScorer`."""
    g, r, ids = _prepare(gts, res, tokenized)
    if not g:
        return 0.0, [0.0] * len(ids)
    try:
        if scorer is not None:
            score, scores = scorer.compute(g, r)
        else:
            with MeteorScorer() as own:
                score, scores = own.compute(g, r)
    except MeteorUnavailable as exc:
        return None, str(exc)
    return score, _expand(ids, g, scores)


# ---------------------------------------------------------------------------------------------------------
# All of them
# ---------------------------------------------------------------------------------------------------------

def coco_scores(gts: Refs, res: Preds, metrics: Sequence[str] = METRICS
                ) -> tuple[dict[str, float], dict[str, dict[Hashable, float]], dict[str, str]]:
    """pycocoevalcap's COCOEvalCap on ``gts`` (id -> references) and ``res`` (id -> prediction), raw text.

    Returns ``(corpus, per_item, unavailable)``: corpus figures under ``BLEU-1`` .. ``BLEU-4``, ``METEOR``,
    ``ROUGE-L``, ``CIDEr``; the per-item figures under the same keys (id -> value); and metric -> reason
    for the metrics that could not run (METEOR without Java). ``metrics`` picks among ``BLEU``,
    ``METEOR``, ``ROUGE-L``, ``CIDEr``.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"COCO metrics: unknown {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    _check_ids(gts, res)
    corpus: dict[str, float] = {}
    per_item: dict[str, dict[Hashable, float]] = {}
    unavailable: dict[str, str] = {}
    g, r, ids = _prepare(gts, res, tokenized=False)  # tokenised once for all the metrics
    if len(g) < len(ids):
        log.warning("COCO metrics: %d item(s) have no reference; they score 0 and stay out of the corpus "
                    "figures", len(ids) - len(g))
    if not g:
        return corpus, per_item, unavailable

    def put(name: str, value: float, values: Sequence[float]) -> None:  # values: per item of g, in order
        corpus[name] = float(value)
        per_item[name] = dict(zip(ids, _expand(ids, g, values)))

    if "BLEU" in metrics:
        bleus, lists = _bleu_scores(g, r, 4)
        for k in range(4):
            put(f"BLEU-{k + 1}", bleus[k], lists[k])
    if "METEOR" in metrics:
        value, values = meteor(g, r, tokenized=True)
        if value is None:
            unavailable["METEOR"] = values
        else:
            put("METEOR", value, values)
    if "ROUGE-L" in metrics:
        put("ROUGE-L", *rouge_l(g, r, tokenized=True))
    if "CIDEr" in metrics:
        put("CIDEr", *cider_d(g, r, tokenized=True))
    return corpus, per_item, unavailable
