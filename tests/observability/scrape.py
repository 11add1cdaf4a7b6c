"""Read a Prometheus exposition into {(series, labels): value} for assertions."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]


def parse(text: str) -> dict[tuple[str, Labels], float]:
    """Return every sample of ``text`` keyed by its name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    """Return one sample's value (0 when the series has no such sample yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
