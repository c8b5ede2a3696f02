//! The process's log: KEYWARD_LOG's filter, KEYWARD_LOG_FORMAT's format, and what libraries
//! may say at which level.
//!
//! lapin (the AMQP client) logs a broker restart at ERROR, about 25 lines each time, for an
//! outage Keyward recovers from by itself and reports at WARN in its own words (the relay, the
//! worker, the broadcast listener). An operator alerting on ERROR would be paged for every
//! broker restart. So lapin's ERROR lines are written at WARN (the same text, with lapin's
//! target in `lapin_target`), unless KEYWARD_LOG names lapin: then the operator asked for its
//! own levels.
//!
//! Refuses: dropping a library's lines, or changing any level but lapin's ERROR.

use std::fmt;
use std::io::IsTerminal;

use keyward_config::{LogFormat, Settings};
use tracing::callsite::{Callsite, Identifier};
use tracing::field::{FieldSet, Visit};
use tracing::metadata::Kind;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the process's subscriber: KEYWARD_LOG's filter (with the defaults below before it)
/// and KEYWARD_LOG_FORMAT's format, on standard error.
pub fn init(settings: &Settings) {
    // NOTE: lapin logs a returned message with its body at WARN; an email job's body holds a
    // one-time link, so that target is kept quiet (the relay reports returns without bodies).
    // actix-http logs every malformed request a client sends at ERROR; that is the client's
    // fault (the client gets its 400) and would let anyone flood the error log, so it is off.
    // Directives in KEYWARD_LOG come later and can override both.
    const QUIET: &str = "lapin::returned_messages=error,actix_http::h1::dispatcher=off";
    let directives = format!("{QUIET},{}", settings.log);
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("info,{QUIET}")));
    let demote = !settings.log.contains("lapin");
    let json = match settings.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .map_event_format(|f| LapinAtWarn::new(f, demote))
            .init();
    } else {
        builder
            .map_event_format(|f| LapinAtWarn::new(f, demote))
            .init();
    }
}

/// An event format that writes lapin's ERROR events as WARN events (when `on`), and every other
/// event as the wrapped format does.
pub struct LapinAtWarn<F> {
    inner: F,
    on: bool,
}

impl<F> LapinAtWarn<F> {
    pub fn new(inner: F, on: bool) -> Self {
        Self { inner, on }
    }
}

struct DemotedCallsite;

impl Callsite for DemotedCallsite {
    fn set_interest(&self, _: Interest) {}
    fn metadata(&self) -> &Metadata<'_> {
        &DEMOTED
    }
}

static DEMOTED_CALLSITE: DemotedCallsite = DemotedCallsite;

/// What a lapin ERROR event is written as: a WARN event of target `lapin` whose message is the
/// original event's fields, and whose `lapin_target` is its target.
static DEMOTED: Metadata<'static> = Metadata::new(
    "lapin error, written as a warning",
    "lapin",
    Level::WARN,
    None,
    None,
    None,
    FieldSet::new(&["message", "lapin_target"], Identifier(&DEMOTED_CALLSITE)),
    Kind::EVENT,
);

fn is_lapin(target: &str) -> bool {
    target == "lapin" || target.starts_with("lapin::")
}

/// Writes an event's fields as one line: the message, then `name=value` for the others.
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        use fmt::Write;
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}{rest}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S, N, F> FormatEvent<S, N> for LapinAtWarn<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if !self.on || *meta.level() != Level::ERROR || !is_lapin(meta.target()) {
            return self.inner.format_event(ctx, writer, event);
        }
        let fields = DEMOTED.fields();
        let mut names = fields.iter();
        let (Some(message), Some(origin)) = (names.next(), names.next()) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut text = Text(String::new());
        event.record(&mut text);
        let text = tracing::field::display(text.0.trim_start());
        let target = meta.target();
        let values: [(&tracing::field::Field, Option<&dyn tracing::Value>); 2] =
            [(&message, Some(&text)), (&origin, Some(&target))];
        let values = fields.value_set(&values);
        let demoted = if event.is_contextual() {
            Event::new(&DEMOTED, &values)
        } else {
            Event::new_child_of(event.parent().cloned(), &DEMOTED, &values)
        };
        self.inner.format_event(ctx, writer, &demoted)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};

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

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn broker_restart() {
        tracing::error!(target: "lapin::io_loop", error = "Io(ConnectionReset)", "error doing IO");
        tracing::error!(target: "keyward_actors::bus", "a failure of Keyward's own");
    }

    fn pretty(on: bool) -> String {
        let buf = Buf::default();
        let b = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || b.clone())
            .map_event_format(|f| LapinAtWarn::new(f, on))
            .finish();
        tracing::subscriber::with_default(subscriber, broker_restart);
        buf.text()
    }

    #[test]
    fn lapins_errors_are_written_as_warnings_with_their_text_and_target() {
        let out = pretty(true);

        let lapin = out.lines().find(|l| l.contains("error doing IO")).unwrap();
        assert!(lapin.contains(" WARN "), "{lapin}");
        assert!(!lapin.contains("ERROR"), "{lapin}");
        assert!(lapin.contains("Io(ConnectionReset)"), "{lapin}");
        assert!(lapin.contains("lapin::io_loop"), "{lapin}");
    }

    #[test]
    fn keywards_own_errors_keep_their_level() {
        let out = pretty(true);

        let own = out
            .lines()
            .find(|l| l.contains("of Keyward's own"))
            .unwrap();
        assert!(own.contains("ERROR"), "{own}");
    }

    #[test]
    fn an_operator_who_names_lapin_gets_its_own_levels() {
        let out = pretty(false);

        let lapin = out.lines().find(|l| l.contains("error doing IO")).unwrap();
        assert!(lapin.contains("ERROR"), "{lapin}");
    }

    #[test]
    fn the_json_format_writes_lapins_errors_as_warnings_too() {
        let buf = Buf::default();
        let b = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || b.clone())
            .map_event_format(|f| LapinAtWarn::new(f, true))
            .finish();
        tracing::subscriber::with_default(subscriber, broker_restart);

        let out = buf.text();
        let lapin: serde_json::Value = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v: &serde_json::Value| v["lapin_target"] == "lapin::io_loop")
            .unwrap();
        assert_eq!(lapin["level"], "WARN", "{out}");
        assert_eq!(lapin["target"], "lapin", "{out}");
        assert!(
            lapin["message"]
                .as_str()
                .unwrap()
                .starts_with("error doing IO"),
            "{out}"
        );
    }
}
