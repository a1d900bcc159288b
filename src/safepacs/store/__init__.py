"""Envelope encryption and blob stores: where sealed objects and deltas live."""
