"""``make demo``: the attestation workflow as a guided tour (``python -m demo.tour``), outside the library."""
