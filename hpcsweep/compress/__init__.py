"""Compression stage: how many bytes a jet takes, within a bound on every value (the peers physicists already have)."""
