"""One small corpus shared by the synth tests: generating it is the expensive part."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from safepacs.synth import AnswerKey, generate

SEED = 20240611
COUNT = 200


@dataclass(frozen=True)
class Corpus:
    root: Path
    key: AnswerKey


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    root = tmp_path_factory.mktemp("synth") / "corpus"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom warns on invalid values; we write none
        key = generate(root, COUNT, SEED, small=True)
    return Corpus(root, key)
