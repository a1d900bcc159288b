"""The audit trail: event model (IHE ATNA / DICOM PS3.15 A.5), tamper-evident log, proofs,
exports, the patient's access log and anomaly rules."""
