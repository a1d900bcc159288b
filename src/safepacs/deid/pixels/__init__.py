"""Clean Pixel Data (PS3.15 113101): find identity burned into the pixels and remove it.

The detector (:mod:`.findings`) looks at one 8-bit grey frame and names the boxes that carry
identity; everything around it lives here: :mod:`.frames` decodes any photometric
interpretation and transfer syntax to stored arrays and display frames, :mod:`.redact`
fills boxes in the stored representation, :mod:`.encode` writes the result back losslessly,
and :mod:`.clean` orchestrates one file and keeps what restore needs.
"""
