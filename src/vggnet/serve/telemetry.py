"""Prometheus metrics of one server (`GET /metrics`): requests and errors by route and status, latency, batch sizes,
queue depth and model load time, in a registry of the app's own (so that several apps in one process, as in tests,
count separately)."""

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Latency buckets from 5 ms to 30 s: a batch of a big VGG on a CPU takes seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Telemetry:
    """The server's metrics, and the ASGI middleware that counts every request (`middleware`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        kwargs = {"registry": self.registry}
        self.requests = Counter(
            "vggnet_requests", "HTTP requests answered, by route and status", ["route", "method", "status"], **kwargs
        )
        self.errors = Counter("vggnet_request_errors", "Requests answered 4xx or 5xx", ["route", "status"], **kwargs)
        self.latency = Histogram(
            "vggnet_request_duration_seconds", "Time to answer a request", ["route"], buckets=LATENCY_BUCKETS, **kwargs
        )
        self.in_flight = Gauge("vggnet_requests_in_flight", "Requests being answered", **kwargs)
        self.batch_size = Histogram(
            "vggnet_batch_size", "Images per model batch", ["model"], buckets=BATCH_BUCKETS, **kwargs
        )
        self.queue_depth = Gauge("vggnet_queue_depth", "Images waiting for a batch", ["model"], **kwargs)
        self.load_seconds = Gauge(
            "vggnet_model_load_seconds", "Time to load the model and run its warm-up batch", ["model"], **kwargs
        )

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def middleware(self, app):
        """`app` wrapped so that every HTTP request is counted, timed and labelled with its route template
        (`/v1/models/{name}/predict`, never the raw path, so that the label set stays bounded), and its answer
        carries the server's time for it (`Server-Timing: total;dur=12.3`, in milliseconds)."""

        async def counted(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            status = 500  # if the app fails before it answers
            started = time.perf_counter()

            async def send_with_status(message):
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    milliseconds = (time.perf_counter() - started) * 1000
                    timing = (b"server-timing", f"total;dur={milliseconds:.1f}".encode())
                    message = {**message, "headers": [*message.get("headers", []), timing]}
                await send(message)

            self.in_flight.inc()
            try:
                await app(scope, receive, send_with_status)
            finally:
                self.in_flight.dec()
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                self.requests.labels(route, scope["method"], str(status)).inc()
                if status >= 400:
                    self.errors.labels(route, str(status)).inc()
                self.latency.labels(route).observe(time.perf_counter() - started)

        return counted
