//! The RabbitMQ RPC envelope: every input is read both as a request (what auth-svc's RPC server
//! does with a delivery: `RpcRequest` then `decode()`) and as a reply (what the gateway's RPC
//! client does: `RpcReply`).
//!
//! Properties:
//! - no panic;
//! - a decoded call has the envelope's method, and decode ∘ encode is the identity: the
//!   request rebuilt from the call (same context) decodes to the same call and context;
//! - a request that does not decode is `common.not_implemented` (unknown method) or
//!   `validation.failed` (bad parameters), and its message repeats no password or token value;
//! - a reply re-encodes to a fixed point (encode ∘ decode ∘ encode = encode), carries exactly
//!   one of `result` or `error`, and a result is valid JSON passed through unchanged.
#![no_main]

use authstack_fuzz::{SECRET_FIELDS, assert_no_echo, echo_candidates};
use authstack_protocol::rpc::{RpcReply, RpcRequest};
use authstack_protocol::{ErrorCode, rpc::Call};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn request(data: &[u8]) {
    let Ok(req) = serde_json::from_slice::<RpcRequest>(data) else {
        return;
    };
    match req.decode() {
        Ok(call) => {
            assert_eq!(call.method(), req.method);
            let _ = call.is_mutation();
            let rebuilt = RpcRequest::new(&call, req.context.clone());
            let wire = serde_json::to_vec(&rebuilt).expect("requests serialize");
            let back: RpcRequest = serde_json::from_slice(&wire).expect("a rebuilt request parses");
            assert_eq!(back.method, req.method);
            assert_eq!(back.context, req.context);
            let again: Call = back.decode().expect("a rebuilt request decodes");
            assert_eq!(again, call);
        }
        Err(e) => {
            assert!(
                matches!(
                    e.code,
                    ErrorCode::NotImplemented | ErrorCode::ValidationFailed
                ),
                "{e:?}"
            );
            if let Ok(doc) = serde_json::from_slice::<Value>(data) {
                assert_no_echo(
                    &e.message,
                    &echo_candidates(&doc, SECRET_FIELDS),
                    "an RPC error",
                );
            }
        }
    }
}

fn reply(data: &[u8]) {
    let Ok(reply) = serde_json::from_slice::<RpcReply>(data) else {
        return;
    };
    // serde_json skips unknown members without checking them (even their UTF-8), so the input
    // as a whole need not be JSON; when it is, it has exactly one member.
    let doc: Option<Value> = serde_json::from_slice(data).ok();
    if let Some(doc) = &doc {
        let members = doc.as_object().map(|m| m.len());
        assert_eq!(
            members,
            Some(1),
            "a reply is an object with one member: {doc}"
        );
    }

    let first = serde_json::to_string(&reply).expect("replies serialize");
    let reread: RpcReply = serde_json::from_str(&first).expect("an encoded reply parses");
    let second = serde_json::to_string(&reread).expect("replies serialize");
    assert_eq!(first, second);

    let (result, error) = match reply.into_result() {
        Ok(raw) => {
            // JSON, though not always representable as serde_json::Value (numbers beyond f64).
            serde_json::from_str::<serde::de::IgnoredAny>(raw.get()).expect("a result is JSON");
            (serde_json::from_str::<Value>(raw.get()).ok(), None)
        }
        Err(e) => (None, Some(e)),
    };
    if let Some(doc) = &doc {
        assert_eq!(
            result.as_ref(),
            doc.get("result"),
            "the result is passed through"
        );
        assert_eq!(
            error.is_some(),
            doc.get("error").is_some(),
            "{error:?} from {doc}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    request(data);
    reply(data);
});
