"""Pure de-identification: profile tables as data, actions, pseudonyms, identity deltas.

Nothing here opens files except the data files shipped inside the package.
"""

from safepacs.dicom.deferred import defer

# before anything here imports pydicom: its downloader and numpy load only if used
defer()
