import json
import time

from safepacs.audit import events as ev
from safepacs.audit.events import MemorySink
from safepacs.retention import scheduler
from tests.archive.objects import ct_bytes


def test_scheduler_destroys_expired_studies_in_the_background(archive, archive_dir):
    arch, _ = archive
    arch.ingest(ct_bytes(), source="test")
    (archive_dir / "retention.json").write_text(json.dumps(
        {"policies": [{"name": "at-once", "match": {}, "keep_days": 0, "from": "last_access"}]}))
    sink = MemorySink()
    job = scheduler.start(arch, 0.05, audit=sink)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(e.event_id == ev.STUDY_DELETED for e in sink.events):
            time.sleep(0.05)
    finally:
        job.stop()
    assert any(e.event_id == ev.STUDY_DELETED for e in sink.events)
    assert arch.status()["studies"] == 0
