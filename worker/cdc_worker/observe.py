"""Structured JSON logs (structlog) and OpenTelemetry tracing, set up once at start."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

import structlog
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from cdc_worker.redact import RedactingFilter, Redactor, from_environment


def setup_logging(level: str = "INFO", redact_columns: Iterable[str] = ()) -> Redactor:
    """JSON logs with credentials, URL/DSN passwords and `redact_columns` masked (redact.py)."""
    redactor = from_environment(redact_columns)
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s", force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(redactor))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    return redactor


def setup_tracing(service: str, pipeline: str, otlp_endpoint: str | None) -> trace.Tracer:
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "cdc.pipeline": pipeline})
    )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    return trace.get_tracer("cdc_worker")
