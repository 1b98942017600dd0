//! The contract pages in `docs/` agree with the wire types: the error table lists exactly the
//! codes of [`ErrorCode`] with their statuses, and every RPC method and event routing key the
//! RabbitMQ page names exists.

use std::collections::BTreeMap;
use std::path::Path;

use authstack_protocol::rpc::RpcRequest;
use authstack_protocol::{ErrorCode, EventKind};

fn page(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text under the `## {heading}` line, up to the next `## ` heading.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let marker = format!("\n## {heading}\n");
    let start = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("no `## {heading}` section"))
        + marker.len();
    let rest = &doc[start..];
    rest.find("\n## ").map_or(rest, |end| &rest[..end])
}

/// The cells of every table row whose first cell is a single backticked name.
fn rows(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let cells: Vec<String> = line
                .strip_prefix('|')?
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            let name = cells
                .first()?
                .strip_prefix('`')?
                .split('`')
                .next()?
                .to_owned();
            (cells[0] == format!("`{name}`")).then(|| (name, cells[1..].to_vec()))
        })
        .collect()
}

#[test]
fn error_table_lists_every_code_with_its_status() {
    let doc = page("errors.md");
    let documented: BTreeMap<String, u16> = rows(section(&doc, "Codes"))
        .into_iter()
        .map(|(code, cells)| {
            let status = cells[0]
                .parse()
                .unwrap_or_else(|_| panic!("`{code}`: `{}` is not a status", cells[0]));
            (code, status)
        })
        .collect();
    let actual: BTreeMap<String, u16> = ErrorCode::ALL
        .into_iter()
        .map(|c| (c.as_str().to_owned(), c.http_status()))
        .collect();
    assert_eq!(documented, actual, "docs/errors.md and ErrorCode disagree");
}

/// The names in the first column of the table under `## {heading}` of the RabbitMQ page.
fn rabbitmq_names(heading: &str) -> Vec<String> {
    let names: Vec<String> = rows(section(&page("rabbitmq.md"), heading))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert!(!names.is_empty(), "no table under `## {heading}`");
    names
}

#[test]
fn documented_rpc_methods_exist() {
    for method in rabbitmq_names("Methods") {
        let request = RpcRequest {
            method: method.clone(),
            params: serde_json::Value::Null,
            context: Default::default(),
        };
        if let Err(e) = request.decode() {
            assert_ne!(
                e.code,
                ErrorCode::NotImplemented,
                "unknown method `{method}`"
            );
        }
    }
}

#[test]
fn documented_events_exist() {
    for key in rabbitmq_names("Events") {
        let kind: EventKind = serde_json::from_value(serde_json::Value::from(key.as_str()))
            .unwrap_or_else(|e| panic!("unknown event `{key}`: {e}"));
        assert_eq!(kind.routing_key(), key);
    }
}

#[test]
fn websocket_close_codes_are_documented_exactly() {
    use authstack_protocol::ws::CloseCode;
    let doc = page("websocket.md");
    let documented: Vec<u16> = rows(section(&doc, "Close codes"))
        .into_iter()
        .map(|(code, _)| {
            code.parse()
                .unwrap_or_else(|_| panic!("`{code}` is not a number"))
        })
        .collect();
    let mut expected: Vec<u16> = CloseCode::ALL.iter().map(|c| c.code()).collect();
    expected.push(1000);
    expected.sort();
    let mut got = documented.clone();
    got.sort();
    assert_eq!(
        got, expected,
        "websocket.md's close codes differ from CloseCode::ALL"
    );
}
