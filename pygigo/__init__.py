"""Pygigo."""
