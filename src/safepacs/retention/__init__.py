"""Retention: policies as data, expiry plans, crypto-shredding with signed destruction
certificates, backups that hold no data keys, decommissioning."""
