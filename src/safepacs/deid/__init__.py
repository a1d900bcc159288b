"""Pure de-identification: profile tables as data, actions, pseudonyms, identity deltas.

Nothing here opens files except the data files shipped inside the package.
"""
