"""Calibration texts: the shipped set (dse/data/calibration.txt) or the user's `--calib FILE`.

The shipped set is 325 short English texts written for this project (everyday life, code,
science, politics, business, sport, arts, health, travel, maths, notices, questions, one-word
replies and a few long sentences); one text per line, blank lines ignored. No labels are used:
every calibration source measures how far the quantized model drifts from the fp model.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from quantcore.errors import QuantDSEError
from quantcore.io import read_input
from quantcore.limits import check_cap

DEFAULT_CALIB = Path(__file__).resolve().parent / "data" / "calibration.txt"
#: characters kept per text: far more than the 256 tokens a model reads of it (dse.hfmodel.MAX_TOKENS),
#: so tokenizing a hostile one-line file stays bounded
MAX_TEXT_CHARS = 20_000


def read_texts(path=None, max_texts: int | None = None, seed: int = 0) -> list[str]:
    """Texts from `path` (default: the shipped set), one per line.

    max_texts: a seeded random subset of that many texts (in file order), for fast checks.
    """
    p = Path(path).expanduser() if path is not None else DEFAULT_CALIB
    data = read_input(p, "calibration file")  # bounded, and protected from being an --out of the same run
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise QuantDSEError(f"calibration file {p} is not UTF-8 text: pass a text file with one text per line") \
            from None
    texts = [line.strip()[:MAX_TEXT_CHARS] for line in lines if line.strip()]
    check_cap("calib_texts", len(texts), f"calibration file {p}: non-empty lines")
    if len(texts) < 2:
        raise QuantDSEError(f"calibration file {p} has {len(texts)} non-empty lines: give at least 2 texts, "
                            "one per line")
    if max_texts is not None and max_texts < 2:
        raise QuantDSEError(f"max_texts must be >= 2, got {max_texts}")
    return subset(texts, max_texts, seed)


def subset(texts: list[str], max_texts: int | None, seed: int = 0) -> list[str]:
    """A seeded random subset of `max_texts` of the texts, in their order (all of them when None or not fewer)."""
    if max_texts is None or max_texts >= len(texts):
        return texts
    import numpy as np

    keep = np.sort(np.random.default_rng(seed).choice(len(texts), size=max_texts, replace=False))
    return [texts[i] for i in keep]


def texts_digest(texts: list[str]) -> str:
    """Identity of a calibration set for caches."""
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
