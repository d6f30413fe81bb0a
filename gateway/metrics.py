"""Prometheus metrics of one gateway, on a registry of its own (not the process-global one),
so several gateways in one process (the tests) never mix their counts."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages = Counter(
            "tongban_messages", "Federation messages by direction, type and result",
            ["direction", "type", "result"], registry=self.registry)
        self.delivery_seconds = Histogram(
            "tongban_delivery_seconds", "From queueing a message to its verified receipt",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=self.registry)
        self.outbox = Gauge("tongban_outbox_messages", "Outgoing messages by state",
                            ["state"], registry=self.registry)
        self.registry_version = Gauge("tongban_registry_version",
                                      "Version of the trust registry held",
                                      registry=self.registry)
        self.registry_age = Gauge("tongban_registry_age_seconds",
                                  "Seconds since the held registry version was issued",
                                  registry=self.registry)
        self.registry_expires = Gauge("tongban_registry_expires_in_seconds",
                                      "Seconds until the held registry version expires",
                                      registry=self.registry)
        self.adapter_errors = Counter("tongban_adapter_errors",
                                      "Failed calls to the local case system",
                                      ["kind", "transient"], registry=self.registry)

    def message(self, direction: str, type_: str, result: str) -> None:
        self.messages.labels(direction, type_, result).inc()
