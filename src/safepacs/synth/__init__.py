"""Deterministic synthetic DICOM with planted fake identity, and the answer key to it.

A de-identifier is only as good as the test data it was checked on.  This package
writes realistic CR/DX/CT/MR/US/XA files in seven character sets and hides generated
(never real) identity everywhere it hides in the wild: patient and study modules,
nested request and reference sequences, free text, vendor private elements.  The
answer key lists every planted value, where it is, and under which Annex E options it
may survive, so a leak check is a lookup rather than a guess.

    >>> from safepacs.synth import generate, AnswerKey
    >>> key = generate(Path("corpus"), 200, seed=1, small=True)  # doctest: +SKIP
"""

from safepacs.synth.answer_key import KINDS, AnswerKey, FileInfo, Planted
from safepacs.synth.builder import make_dataset
from safepacs.synth.charsets import CHARSETS
from safepacs.synth.corpus import ANSWER_KEY_NAME, generate
from safepacs.synth.lookup import element_text, holds, locate
from safepacs.synth.names import is_valid_resident_id

__all__ = [
    "ANSWER_KEY_NAME",
    "CHARSETS",
    "KINDS",
    "AnswerKey",
    "FileInfo",
    "Planted",
    "element_text",
    "generate",
    "holds",
    "is_valid_resident_id",
    "locate",
    "make_dataset",
]
