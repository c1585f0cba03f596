"""Symbolic limit: the Master Theorem pass, closed forms and printers."""
