"""Tests and test support shared by every package."""
