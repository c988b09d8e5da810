"""The names of everything redistimers keeps in Redis: keys and channels.

Every key of a topic carries the topic as its hash tag, ``<namespace>:{<topic>}:<kind>``,
so each script touches one cluster slot.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class TopicKeys:
    """The Redis keys of one topic."""

    due: str
    body: str
    lease: str
    attempts: str
    seq: str
    dead: str
    dead_body: str
    wake: str

    @classmethod
    def of(cls, namespace: str, topic: str) -> TopicKeys:
        prefix = f"{namespace}:{{{topic}}}:"
        return cls(*(prefix + kind for kind in attrs.fields_dict(cls)))




class Keys:
    """The keys of one namespace (those of each topic cached: they are built on every
    round trip)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        #: The set of topics that ever had a pending timer.
        self.topics = f"{namespace}:topics"
        #: Live workers: a hash of worker id -> its last heartbeat and record.
        self.workers = f"{namespace}:workers:{{{namespace}}}"
        self._by_topic: dict[str, TopicKeys] = {}

    def topic(self, topic: str) -> TopicKeys:
        keys = self._by_topic.get(topic)
        if keys is None:
            keys = self._by_topic[topic] = TopicKeys.of(self.namespace, topic)
        return keys

    def claim_record(self, topic: str, claimer: str) -> str:
        """Where a claimer's last claim of `topic` is kept, to answer it again (claim.lua)."""
        return f"{self.topic(topic).seq[:-3]}claim:{claimer}"
