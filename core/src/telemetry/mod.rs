//! Logging and, when an OTLP endpoint is configured, trace export, set up once per process.
//!
//! Two layers over one registry, each with its own filter: the log layer (`RUST_LOG`, else
//! the config's `log_level`) and, only when an endpoint is configured, the OpenTelemetry
//! layer of [`crate::telemetry::otel`]. Span fields use the OpenTelemetry semantic-convention names
//! (`http.request.method`, `url.path`, ...) because that is what exporters want; text logs
//! print them under their short names (`method`, `path`, `status`, `route`) and leave out
//! the `otel.*` fields, which are instructions to the exporter.

pub(crate) mod metrics;
pub(crate) mod otel;

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::Registry;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

/// Installs the global subscriber: `RUST_LOG` wins over the config's `log_level`. Logs go
/// to stderr; stdout carries only the "listening on" line scripts read. Starts the trace
/// exporter when an endpoint is configured (see [`crate::telemetry::otel`]); call [`shutdown`] when
/// the server has stopped.
pub fn init(cfg: &TelemetryConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let text = cfg.log_format == LogFormat::Text;
    // Colour codes only for a person at a terminal, never into a file or a collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    match crate::telemetry::otel::layer::<Registry>(cfg) {
        // Logs only: one global filter, the cheapest set-up (disabled call sites cost one
        // cached check).
        None => {
            let registry = tracing_subscriber::registry().with(filter);
            let fmt = tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .with_writer(std::io::stderr);
            let _ = if text {
                registry.with(fmt.fmt_fields(LogFields)).try_init()
            } else {
                registry.with(fmt.json()).try_init()
            };
        }
        // Each layer filters for itself: the exporter wants `debug` cache spans the logs
        // may not.
        Some(otel) => {
            let fmt = tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .with_writer(std::io::stderr);
            let logs: Box<dyn Layer<Registry> + Send + Sync> = if text {
                fmt.fmt_fields(LogFields).with_filter(filter).boxed()
            } else {
                fmt.json().with_filter(filter).boxed()
            };
            let _ = tracing_subscriber::registry()
                .with(vec![logs, otel])
                .try_init();
        }
    }
}

/// Flushes and stops the trace exporter, if one runs. Call once after the server drained
/// (the `serve` command does); spans still open then are not exported.
pub fn shutdown() {
    crate::telemetry::otel::shutdown();
}

/// Short names in text logs for the semantic-convention span fields.
fn log_name(field: &str) -> Option<&'static str> {
    Some(match field {
        "http.request.method" => "method",
        "url.path" => "path",
        "http.response.status_code" => "status",
        "http.route" => "route",
        _ => return None,
    })
}

/// Text-log field formatter: the default one, with the renames of [`log_name`] and without
/// `otel.*` fields.
struct LogFields;

impl<'w> FormatFields<'w> for LogFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = LogVisitor {
            writer,
            empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct LogVisitor<'w> {
    writer: Writer<'w>,
    empty: bool,
    result: fmt::Result,
}

impl LogVisitor<'_> {
    /// Formats one field: renamed ones here, the rest exactly as the default formatter does.
    fn field(&mut self, field: &Field, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("otel.") {
            return;
        }
        let mut inner = DefaultVisitor::new(self.writer.by_ref(), self.empty);
        record(&mut inner);
        self.result = inner.finish();
        self.empty = false;
    }

    fn renamed(&mut self, short: &str, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let pad = if self.empty { "" } else { " " };
        self.result = write!(self.writer, "{pad}{short}={value:?}");
        self.empty = false;
    }
}

impl Visit for LogVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match log_name(field.name()) {
            Some(short) => self.renamed(short, &value),
            None => self.field(field, |v| v.record_str(field, value)),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, |v| v.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match log_name(field.name()) {
            Some(short) => self.renamed(short, value),
            None => self.field(field, |v| v.record_debug(field, value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn text_logs_use_short_names_and_hide_otel_fields() {
        let buf = Buf::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .without_time()
                .fmt_fields(LogFields)
                .with_writer(move || sink.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                otel.kind = "server",
                http.request.method = %"GET",
                url.path = %"/a/b",
                http.response.status_code = tracing::field::Empty,
            );
            let _g = span.enter();
            tracing::info!(n = 1, text = "x", "inside");
            span.record("http.response.status_code", 200);
            tracing::info!("after");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(
            out.contains(
                r#"request{method=GET path=/a/b}: larder_core::telemetry::tests: inside n=1 text="x""#
            ),
            "{out}"
        );
        assert!(
            out.contains("request{method=GET path=/a/b status=200}"),
            "{out}"
        );
        assert!(!out.contains("otel"), "{out}");
    }
}
