"""Affidavit: a self-hosted remote attestation service, wire-compatible with Microsoft Azure Attestation."""

__version__ = "0.1.0"
