"""Write a whole corpus to disk: plan it, build each file, save it, keep the answer key."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from safepacs.synth.answer_key import AnswerKey, FileInfo
from safepacs.synth.builder import build
from safepacs.synth.plan import plan_corpus

ANSWER_KEY_NAME = "answer_key.json"


def generate(
    out_dir: Path,
    count: int,
    seed: int,
    *,
    small: bool = False,
    progress: Callable[[int], None] | None = None,
) -> AnswerKey:
    """Write ``count`` DICOM files and ``answer_key.json`` under ``out_dir``.

    Files go to ``P<patient>/ST<study>/SE<series>/<MODALITY><instance>.dcm``.  The same
    ``(count, seed, small)`` gives byte-identical files and key.  ``small`` uses 32-64
    pixel matrices (for tests); otherwise sizes are realistic (CR 2048x2048, DX
    3000x2500, CT/MR 512x512, US 640x480 RGB, cine 10-30 frames).  ``progress``, if
    given, is called after each file with the number of files written so far.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = AnswerKey(seed=seed, count=count, small=small)
    for done, inst in enumerate(plan_corpus(seed, count), start=1):
        ds, planted = build(inst, small, seed)
        path = out_dir / inst.path
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        series = inst.series
        key.files[inst.path] = FileInfo(
            charset=series.study.charset.label,
            modality=series.modality,
            kind=series.kind,
            sop_class_uid=str(ds.SOPClassUID),
            sop_instance_uid=inst.uid,
            study_instance_uid=series.study.uid,
            series_instance_uid=series.uid,
            patient_id=series.study.patient.patient_id,
            transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
            burned_in_annotation=inst.burned_in,
        )
        key.planted.extend(replace(p, file=inst.path) for p in planted)
        if progress is not None:
            progress(done)
    key.save(out_dir / ANSWER_KEY_NAME)
    return key
