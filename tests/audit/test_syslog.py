"""Export to a real TLS syslog collector: RFC 5424 + 5425 framing, DICOM audit XML, and a
spool that delivers after the collector (or the sender) comes back."""

from __future__ import annotations

import ssl
import time
import xml.etree.ElementTree as ET

import pytest

from safepacs.audit import syslog
from safepacs.audit.syslog import SyslogSender, frame, split_frames
from tests.audit.conftest import make_event
from tests.audit.tls_receiver import Collector, self_signed


@pytest.fixture
def tls(tmp_path):
    cert, key = self_signed(tmp_path)
    ctx = ssl.create_default_context(cafile=str(cert))
    return cert, key, ctx


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def parse(msg: bytes) -> tuple[list[str], ET.Element]:
    header, _, body = msg.partition(syslog.BOM)
    return header.decode("ascii").split(" "), ET.fromstring(body)


def test_framing_round_trips_and_a_torn_tail_is_left():
    msgs = [b"a", b"hello world", "中文".encode()]
    data = b"".join(frame(m) for m in msgs)
    assert split_frames(data) == (msgs, len(data))
    assert split_frames(data + b"12 abc") == (msgs, len(data))


def test_events_arrive_as_rfc5424_with_dicom_audit_xml(tls, tmp_path):
    cert, key, ctx = tls
    collector = Collector(cert, key).start()
    try:
        sender = SyslogSender("127.0.0.1", collector.port, tmp_path / "spool", ssl_context=ctx, hostname="pacs1")
        for i in range(3):
            sender.record(make_event(i, patient=f"PSN{i}", study=f"2.25.{i}"))
        sender.record(make_event(9, outcome=4, reason="no care relationship"))
        assert wait_for(lambda: len(collector.messages) == 4)
        sender.close()
    finally:
        collector.stop()
    header, xml = parse(collector.messages[0])
    assert header[0] == "<85>1" and header[2] == "pacs1" and header[3] == "safepacs"
    assert header[5] == "DICOM+RFC3881" and header[6] == "-"
    assert xml.tag == "AuditMessage"
    assert xml.find("EventIdentification/EventID").get("csd-code") == "110103"
    assert xml.find("ActiveParticipant").get("UserID") == "reader0"
    objects = {o.get("ParticipantObjectTypeCode"): o.get("ParticipantObjectID") for o in xml.iter("ParticipantObjectIdentification")}
    assert objects == {"2": "2.25.0", "1": "PSN0"}
    assert parse(collector.messages[3])[0][0] == "<84>1"  # a refusal is a warning
    assert not collector.errors


def test_spool_delivers_after_the_collector_comes_back(tls, tmp_path):
    cert, key, ctx = tls
    collector = Collector(cert, key).start()
    port = collector.port
    sender = SyslogSender("127.0.0.1", port, tmp_path / "spool", ssl_context=ctx, retry_interval=0.05)
    sender.record(make_event(1))
    assert wait_for(lambda: len(collector.messages) == 1)
    collector.stop()
    for i in range(2, 6):
        sender.record(make_event(i))
    time.sleep(0.3)
    assert sender.pending() > 0
    back = Collector(cert, key, port=port).start()
    try:
        assert wait_for(lambda: len(back.messages) >= 4)
        ids = [parse(m)[1].find("ActiveParticipant").get("UserID") for m in back.messages]
        assert ids[-4:] == ["reader2", "reader3", "reader4", "reader0"]
        assert wait_for(lambda: sender.pending() == 0)
    finally:
        sender.close()
        back.stop()


def test_spool_survives_a_restart_of_the_sender(tls, tmp_path):
    cert, key, ctx = tls
    spool = tmp_path / "spool"
    first = SyslogSender("127.0.0.1", 9, spool, ssl_context=ctx, background=False, timeout=0.5)
    for i in range(3):
        first.record(make_event(i))
    assert not first.deliver()  # nobody listening
    with open(spool, "ab") as fh:
        fh.write(b"500 <85>1 torn")  # a crash in the middle of an append
    collector = Collector(cert, key).start()
    try:
        second = SyslogSender("127.0.0.1", collector.port, spool, ssl_context=ctx, background=False)
        assert second.drain(10)
        assert wait_for(lambda: len(collector.messages) == 3)
        second.close()
    finally:
        collector.stop()
    assert not collector.errors and spool.stat().st_size == 0


def test_a_collector_with_an_untrusted_certificate_gets_nothing(tls, tmp_path):
    cert, key, _ = tls
    other_cert, _ = self_signed(tmp_path / "x") if (tmp_path / "x").mkdir() is None else (None, None)
    collector = Collector(cert, key).start()
    try:
        sender = SyslogSender("127.0.0.1", collector.port, tmp_path / "spool", background=False,
                              ssl_context=ssl.create_default_context(cafile=str(other_cert)))
        sender.record(make_event(1))
        assert not sender.deliver()
        assert sender.pending() > 0 and collector.messages == []
    finally:
        collector.stop()


def test_signed_heads_are_published_to_syslog(tls, tmp_path, engine):
    import json

    from safepacs.audit.heads import SignedHead, head_is_signed
    from safepacs.audit.log import AuditLog
    from safepacs.audit.witness import SyslogWitness

    cert, key, ctx = tls
    collector = Collector(cert, key).start()
    try:
        sender = SyslogSender("127.0.0.1", collector.port, tmp_path / "spool", ssl_context=ctx, background=False)
        log = AuditLog(engine, tmp_path / "k", background=False, witnesses=[SyslogWitness(sender)])
        for i in range(3):
            log.record(make_event(i), wait=True)
        log.close()
        assert sender.drain(10)
        assert wait_for(lambda: len(collector.messages) == 3)
        sender.close()
    finally:
        collector.stop()
    header, _, body = collector.messages[-1].partition(syslog.BOM)
    assert header.split(b" ")[5] == b"safepacs-audit-head"
    head = SignedHead.from_dict(json.loads(body))
    assert head.size == 3 and head_is_signed(head, log.public_key)
