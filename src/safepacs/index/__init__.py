"""The index: de-identified attributes and pseudonyms only, for QIDO and bookkeeping."""
