"""Reading, validating and writing DICOM files around pydicom: the I/O edge."""
