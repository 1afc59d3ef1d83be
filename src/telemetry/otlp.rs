//! OTLP trace export (the `otlp` feature): a span per RPC, joined to the caller's trace.

use std::collections::HashMap;

use opentelemetry::{propagation::TextMapPropagator as _, trace::TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Flushes and stops the exporter when dropped.
#[derive(Debug)]
pub struct OtlpGuard(SdkTracerProvider);

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        if let Err(error) = self.0.shutdown() {
            tracing::warn!(error = %error, "OTLP exporter did not shut down cleanly");
        }
    }
}

/// A tracing layer exporting spans to the OTLP/gRPC collector at `endpoint`. Call it inside
/// the Tokio runtime.
pub fn layer<S>(endpoint: &str) -> Result<(impl tracing_subscriber::Layer<S>, OtlpGuard), String>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("portal-gateway")
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("portal-gateway");
    Ok((
        tracing_opentelemetry::layer().with_tracer(tracer),
        OtlpGuard(provider),
    ))
}

/// A span for one RPC, child of the caller's `traceparent` when it sent a valid one.
pub fn rpc_span(method: &'static str, traceparent: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!(
        "rpc",
        otel.name = method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = method
    );
    if let Some(traceparent) = traceparent {
        let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        let _ = span.set_parent(parent);
    }
    span
}

/// The current span as a `traceparent`, when an OTLP layer is recording it.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier
        .remove("traceparent")
        .filter(|t| super::valid_traceparent(t))
}
