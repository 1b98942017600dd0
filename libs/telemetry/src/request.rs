//! The request a log line belongs to, without a `tracing` span per request.
//!
//! A span per request costs the subscriber a slab entry, its fields formatted (as JSON in
//! containers) and the enter and exit of every poll: about a tenth of the gateway's CPU on
//! `GET /api/v1/auth/session` at the default `info` level. [`in_request`] instead marks the
//! thread for the duration of a call, and [`RequestFormat`] writes any line logged meanwhile as
//! if it came from inside a span `request` with a field `request_id`: the outermost entry of a
//! JSON line's `spans`, `request{request_id=…}:` in text — the lines a real span would give.
//!
//! The marker belongs to the thread, not to a span tree: a span created while a request is
//! polled does not have `request` as its parent (a task spawned with `in_current_span()` or
//! `.instrument(..)` logs without the request: spawn it [`InRequest`], as the WebSocket's tasks
//! are), a span entered during the poll is written inside `request`, span-based
//! filters (`RUST_LOG='[request{request_id=…}]=debug'`) see no request, and a request's future
//! dropped before it finished (the client went away) is dropped outside the marker.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The name of the span [`RequestFormat`] writes.
pub const REQUEST_SPAN: &str = "request";

thread_local! {
    static CURRENT: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Runs `f` as part of request `request_id`: every line it logs on this thread is written
/// inside the request's span ([`RequestFormat`]). Nests: the previous request (if any) is
/// current again afterwards, also when `f` panics. Wrap each poll of a request's future, not
/// the future's creation alone.
pub fn in_request<R>(request_id: &Arc<str>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<str>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            let _ = CURRENT.try_with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = CURRENT
        .try_with(|c| c.replace(Some(request_id.clone())))
        .ok()
        .flatten();
    let _restore = Restore(previous);
    f()
}

pin_project! {
    /// A future each poll of which runs [`in_request`]: for work of a request that outlives its
    /// handler's polls, such as a WebSocket's tasks. Costs the marker per poll, where real spans
    /// hold a slab entry and their formatted fields for the future's life (a WebSocket's two,
    /// `request` and `ws`, cost ~3 KiB of gateway RSS per idle socket at `info`). Unlike
    /// `tracing::Instrumented`, the inner future is dropped outside the marker.
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct InRequest<F> {
        #[pin]
        inner: F,
        request_id: Arc<str>,
    }
}

impl<F> InRequest<F> {
    /// `inner`, polled as part of request `request_id`.
    pub fn new(request_id: Arc<str>, inner: F) -> Self {
        Self { inner, request_id }
    }
}

impl<F: Future> Future for InRequest<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        in_request(this.request_id, || this.inner.poll(cx))
    }
}

/// The request [`in_request`] marked this thread with, if any.
pub fn current_request() -> Option<Arc<str>> {
    CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
}

/// An event format writing lines logged [`in_request`] inside that request's span; every other
/// line as the inner format writes it.
#[derive(Clone, Debug)]
pub struct RequestFormat<F> {
    inner: F,
    json: bool,
}

impl<F> RequestFormat<F> {
    /// Around `tracing_subscriber`'s JSON format (`.json()` with the span list on and the
    /// current span off, as [`init_tracing`](crate::init_tracing) sets it: a line logged in a
    /// request and no other span gets no `span` key).
    pub fn json(inner: F) -> Self {
        RequestFormat { inner, json: true }
    }

    /// Around its text format (`Full`, the default, without thread names or ids, which it would
    /// write between the level and the spans). Lines logged in a request are written without
    /// colours.
    pub fn text(inner: F) -> Self {
        RequestFormat { inner, json: false }
    }
}

impl<S, N, F> FormatEvent<S, N> for RequestFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(request_id) = current_request() else {
            return self.inner.format_event(ctx, writer, event);
        };
        // Written plain (no colours) so that the span can be placed where the inner format
        // puts spans.
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let line = if self.json {
            json_in_request(&line, &request_id)
        } else {
            let in_span = event
                .parent()
                .and_then(|id| ctx.span(id))
                .or_else(|| ctx.lookup_current())
                .is_some();
            text_in_request(&line, &request_id, event.metadata().level(), in_span)
        };
        writer.write_str(&line)
    }
}

/// A JSON line with the request's span first in `spans` (the key added if the line had none).
fn json_in_request(line: &str, request_id: &str) -> String {
    let span = format!(
        r#"{{"request_id":{},"name":"{REQUEST_SPAN}"}}"#,
        serde_json::Value::from(request_id)
    );
    // A raw `"` only ever delimits a string, so `"spans":[` can only be a key with an array:
    // the line's span list, or an event field named `spans` (none is), which the formatter
    // writes before the span list.
    const KEY: &str = r#","spans":["#;
    if let Some(at) = line.find(KEY) {
        let at = at + KEY.len();
        return format!("{}{span},{}", &line[..at], &line[at..]);
    }
    match line.rfind('}') {
        Some(end) => format!(r#"{},"spans":[{span}]{}"#, &line[..end], &line[end..]),
        None => line.to_owned(),
    }
}

/// A text line (`Full` format) with `request{request_id=…}:` as the outermost span, right after
/// the level.
fn text_in_request(line: &str, request_id: &str, level: &Level, in_span: bool) -> String {
    let marker = format!("{level:>5} ");
    let Some(at) = line.find(&marker) else {
        return line.to_owned();
    };
    let at = at + marker.len();
    let gap = if in_span { "" } else { " " };
    format!(
        "{}{REQUEST_SPAN}{{request_id={request_id}}}:{gap}{}",
        &line[..at],
        &line[at..]
    )
}

#[cfg(test)]
mod tests {
    //! Judged against lines written by `tracing_subscriber` itself with a real `request` span.

    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    impl Buffer {
        fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
        }
    }

    /// Logs the same events once inside a real span and once [`in_request`], with `subscriber`
    /// built around `out`; returns both outputs.
    fn both_ways<S>(subscriber: S, out: &Buffer) -> (String, String)
    where
        S: Subscriber + Send + Sync + 'static,
    {
        let id: Arc<str> = "req-\"7\"".into();
        let events = || {
            tracing::info!(answer = 42, "outside any other span");
            tracing::warn_span!("inner", call = "c-1").in_scope(|| {
                tracing::warn!(path = "/x", "inside another span");
            });
        };
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("request", request_id = %id).in_scope(events);
            let real = out.take();
            in_request(&id, events);
            (real, out.take())
        })
    }

    /// The lines without their timestamps.
    fn untimed(text: &str) -> Vec<String> {
        text.lines()
            .map(|l| match l.split_once(' ') {
                Some((_, rest)) if !l.starts_with('{') => rest.to_owned(),
                _ => l.to_owned(),
            })
            .collect()
    }

    fn json_lines(text: &str) -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("timestamp");
                v
            })
            .collect()
    }

    /// The request id of each line's outermost span, if any.
    fn outer_request_ids(lines: &[serde_json::Value]) -> Vec<Option<String>> {
        lines
            .iter()
            .map(|l| l["spans"][0]["request_id"].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn json_lines_in_a_request_are_those_of_a_real_request_span() {
        for flatten in [true, false] {
            let out = Buffer::default();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .flatten_event(flatten)
                .with_current_span(false)
                .map_event_format(RequestFormat::json)
                .with_writer(out.clone())
                .finish();
            let (real, ours) = both_ways(subscriber, &out);
            assert_eq!(real.lines().count(), 2, "{real}");
            assert_eq!(json_lines(&real), json_lines(&ours), "{real}\n{ours}");
        }
    }

    #[test]
    fn text_lines_in_a_request_are_those_of_a_real_request_span() {
        let out = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .map_event_format(RequestFormat::text)
            .with_writer(out.clone())
            .finish();
        let (real, ours) = both_ways(subscriber, &out);
        assert_eq!(real.lines().count(), 2, "{real}");
        assert_eq!(untimed(&real), untimed(&ours));
    }

    /// JSON lines (not flattened, current span on: tracing-subscriber's defaults) into `out`.
    fn json_subscriber(out: &Buffer) -> impl Subscriber + Send + Sync + 'static {
        tracing_subscriber::fmt()
            .json()
            .map_event_format(RequestFormat::json)
            .with_writer(out.clone())
            .finish()
    }

    #[test]
    fn lines_outside_a_request_are_untouched_and_requests_nest() {
        let out = Buffer::default();
        let subscriber = json_subscriber(&out);
        let (outer, inner): (Arc<str>, Arc<str>) = ("outer".into(), "inner".into());
        tracing::subscriber::with_default(subscriber, || {
            in_request(&outer, || {
                in_request(&inner, || tracing::info!("a"));
                tracing::info!("b");
            });
            tracing::info!("c");
        });
        let lines = json_lines(&out.take());
        let ids = outer_request_ids(&lines);
        assert_eq!(
            ids,
            [Some("inner".to_owned()), Some("outer".to_owned()), None]
        );
        assert!(lines[2].get("spans").is_none(), "{}", lines[2]);
        assert_eq!(current_request(), None);
    }

    /// Every poll of an [`InRequest`] future is inside its request, and only its polls: a line
    /// logged between two polls is not.
    #[test]
    fn every_poll_of_an_in_request_future_and_only_its_polls_are_in_the_request() {
        let out = Buffer::default();
        let subscriber = json_subscriber(&out);
        let mut polls = 0;
        let future = std::future::poll_fn(|cx| {
            polls += 1;
            tracing::info!(poll = polls, "polled");
            if polls < 2 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(polls)
            }
        });
        let mut future = std::pin::pin!(InRequest::new("socket-1".into(), future));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        tracing::subscriber::with_default(subscriber, || {
            assert!(future.as_mut().poll(&mut cx).is_pending());
            tracing::info!("between");
            assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(2));
        });
        let ids = outer_request_ids(&json_lines(&out.take()));
        let inside = Some("socket-1".to_owned());
        assert_eq!(ids, [inside.clone(), None, inside]);
        assert_eq!(current_request(), None);
    }
}
