"""What the Prometheus tests share: a scrape parsed by prometheus_client's own parser, and
a GET over real HTTP with urllib."""

from __future__ import annotations

import urllib.request

import attrs
from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]


@attrs.frozen
class Scrape:
    """A scrape's samples by sample name and labels, and its families' types by name."""

    samples: dict[str, dict[Labels, float]]
    types: dict[str, str]

    @classmethod
    def parse(cls, text: str | bytes) -> Scrape:
        if isinstance(text, bytes):
            text = text.decode()
        samples: dict[str, dict[Labels, float]] = {}
        types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            types[family.name] = family.type
            for sample in family.samples:
                samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = (
                    sample.value
                )
        return cls(samples, types)

    def value(self, name: str, **labels: str) -> float:
        return self.samples[name][frozenset(labels.items())]

    def by_topic(self, name: str) -> dict[str, float]:
        """{topic: value} of a family labelled by topic alone."""
        return {dict(labels)["topic"]: value for labels, value in self.samples[name].items()}

    def buckets(self, name: str, topic: str) -> list[tuple[float, float]]:
        """(le, cumulative count) of a histogram's buckets of `topic`, in `le` order."""
        found = [
            (float(dict(labels)["le"]), value)
            for labels, value in self.samples[f"{name}_bucket"].items()
            if dict(labels)["topic"] == topic
        ]
        return sorted(found)

    @property
    def names(self) -> set[str]:
        """Every family name and sample name (counters: X and X_total)."""
        return set(self.types) | set(self.samples)


def urlopen_text(url: str) -> tuple[str, str]:
    """GET `url` with urllib: content type and body."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers.get("Content-Type", ""), response.read().decode()
