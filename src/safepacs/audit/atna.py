"""An :class:`AuditEvent` as a DICOM audit message (PS3.15 A.5, the RFC 3881 derived schema).

Pure: event in, UTF-8 XML bytes out.  Only fields of the event are written, and those are
pseudonymous by construction (patient pseudonym, de-identified study UID).
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

from safepacs.audit.events import EVENT_NAMES, SECURITY_ALERT, AuditEvent

# ParticipantObjectIDTypeCode values
_STUDY_UID = {"csd-code": "110180", "codeSystemName": "DCM", "originalText": "Study Instance UID"}
_PATIENT_NUMBER = {"csd-code": "2", "codeSystemName": "RFC-3881", "originalText": "Patient Number"}


def _detail(parent: ET.Element, kind: str, value: str) -> None:
    ET.SubElement(parent, "ParticipantObjectDetail", {
        "type": kind, "value": base64.b64encode(value.encode("utf-8")).decode("ascii")})


def to_xml(event: AuditEvent, *, source_id: str = "SAFEPACS", site_id: str = "") -> bytes:
    """The event as ``<AuditMessage>`` XML (UTF-8, with declaration)."""
    msg = ET.Element("AuditMessage")
    ident = ET.SubElement(msg, "EventIdentification", {
        "EventActionCode": event.action,
        "EventDateTime": event.time,
        "EventOutcomeIndicator": str(event.outcome),
    })
    ET.SubElement(ident, "EventID", {
        "csd-code": event.event_id, "codeSystemName": "DCM",
        "originalText": EVENT_NAMES.get(event.event_id, event.event_id)})
    if event.reason:
        ET.SubElement(ident, "EventOutcomeDescription").text = event.reason
    if event.purpose:
        ET.SubElement(ident, "PurposeOfUse", {
            "csd-code": event.purpose, "codeSystemName": "safepacs-purpose", "originalText": event.purpose})
    user = ET.SubElement(msg, "ActiveParticipant", {
        "UserID": event.user or "anonymous",
        "UserIsRequestor": "true",
        **({"NetworkAccessPointID": event.address, "NetworkAccessPointTypeCode": "2"} if event.address else {}),
    })
    if event.role:
        ET.SubElement(user, "RoleIDCode", {
            "csd-code": event.role, "codeSystemName": "safepacs-role", "originalText": event.role})
    ET.SubElement(msg, "ActiveParticipant", {
        "UserID": source_id, "UserIsRequestor": "false", "AlternativeUserID": "safepacs"})
    src = ET.SubElement(msg, "AuditSourceIdentification", {
        "AuditSourceID": source_id, **({"AuditEnterpriseSiteID": site_id} if site_id else {})})
    ET.SubElement(src, "AuditSourceTypeCode", {
        "csd-code": "4", "codeSystemName": "DCM", "originalText": "Application Server Process"})
    if event.study_uid:
        study = ET.SubElement(msg, "ParticipantObjectIdentification", {
            "ParticipantObjectID": event.study_uid,
            "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3",
        })
        ET.SubElement(study, "ParticipantObjectIDTypeCode", _STUDY_UID)
        if event.level:
            _detail(study, "AccessLevel", event.level)
        if event.route:
            _detail(study, "Route", event.route)
    if event.patient:
        patient = ET.SubElement(msg, "ParticipantObjectIdentification", {
            "ParticipantObjectID": event.patient,
            "ParticipantObjectTypeCode": "1",
            "ParticipantObjectTypeCodeRole": "1",
        })
        ET.SubElement(patient, "ParticipantObjectIDTypeCode", _PATIENT_NUMBER)
        if event.event_id == SECURITY_ALERT and event.reason:
            _detail(patient, "Alert", event.reason)
    return ET.tostring(msg, encoding="utf-8", xml_declaration=True)
