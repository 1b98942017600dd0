//! JSON request bodies as the gateway handles them before it calls auth-svc: the first byte picks
//! the endpoint, the rest is the body. `gateway::extract::decode_json` (what `JsonBody` runs),
//! then the endpoint's `authstack_protocol::validate` function, then the RPC request built from
//! the call and decoded again the way auth-svc decodes it.
//!
//! Properties:
//! - no panic; a body is accepted exactly when it is a JSON object serde_json alone accepts,
//!   with the same value;
//! - a rejected body is one `validation.failed` error with a known reason, naming a member of
//!   the type (or `body`; an `unknown_field` never names a member); validation errors name
//!   members too;
//! - decode ∘ encode: an accepted value re-encoded decodes to itself;
//! - the RPC request auth-svc receives decodes to the same call (so auth-svc, which validates
//!   again, judges the same parameters);
//! - no error text repeats a password or token value (`rpc::Secret` members).
#![no_main]

use std::fmt::Debug;

use authstack_fuzz::{SECRET_FIELDS, assert_no_echo, echo_candidates, struct_fields};
use authstack_protocol::rpc::{
    AccessCheckParams, AdminUpdate, AdminUpdateParams, Call, CallContext, ChangePasswordParams,
    LoginParams, RefreshTokenParams, RegisterParams, RpcRequest, UpdateMeParams,
};
use authstack_protocol::{ErrorBody, ErrorCode, validate};
use gateway::extract::decode_json;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Reasons `decode_json` gives for a body it cannot use.
const DECODE_REASONS: [&str; 4] = [
    "malformed_json",
    "required",
    "unknown_field",
    "invalid_type",
];

fn check_error(error: &ErrorBody, fields: &[&str], body: &[u8]) {
    assert_eq!(error.code, ErrorCode::ValidationFailed, "{error:?}");
    assert!(!error.details.is_empty(), "{error:?}");
    for detail in &error.details {
        if detail.reason == "unknown_field" {
            let name = detail.field.as_str();
            assert!(
                !fields.contains(&name),
                "`{name}` is a member of {fields:?}, not unknown"
            );
        } else {
            let top = detail.field.split(['.', '[']).next().unwrap_or_default();
            assert!(
                top == "body" || fields.contains(&top),
                "error names `{}`, not a member of {fields:?}",
                detail.field
            );
        }
    }
    if let Ok(doc) = serde_json::from_slice(body) {
        let text = serde_json::to_string(error).expect("errors serialize");
        assert_no_echo(&text, &echo_candidates(&doc, SECRET_FIELDS), "a body error");
    }
}

fn endpoint<T>(body: &[u8], check: fn(&T) -> Result<(), ErrorBody>, call: fn(T) -> Call)
where
    T: DeserializeOwned + Serialize + PartialEq + Debug + Clone,
{
    let fields = struct_fields::<T>();
    let decoded = decode_json::<T>(body);
    // serde alone would also read a struct from an array of its fields; the gateway must not.
    let object = body.trim_ascii_start().first() == Some(&b'{');
    let plain = if object {
        serde_json::from_slice::<T>(body).map_err(|e| e.to_string())
    } else {
        Err("a body must be a JSON object".to_owned())
    };
    let value = match (decoded, plain) {
        (Ok(value), Ok(same)) => {
            assert_eq!(value, same);
            value
        }
        (Err(e), Err(_)) => {
            check_error(&e.0, fields, body);
            assert_eq!(e.0.details.len(), 1, "{:?}", e.0);
            let reason = e.0.details[0].reason.as_str();
            assert!(DECODE_REASONS.contains(&reason), "reason {reason}");
            return;
        }
        (Ok(v), Err(e)) => panic!("the gateway accepts {v:?}; expected: {e}"),
        (Err(e), Ok(v)) => panic!("the gateway rejects {v:?}: {:?}", e.0),
    };

    let wire = serde_json::to_vec(&value).expect("parameters serialize");
    let again = decode_json::<T>(&wire).map_err(|e| e.0);
    assert_eq!(again.as_ref(), Ok(&value), "decode(encode(x)) != x");

    let verdict = check(&value);
    if let Err(e) = &verdict {
        check_error(e, fields, body);
    }

    let sent = call(value.clone());
    let request = RpcRequest::new(&sent, CallContext::default());
    let bytes = serde_json::to_vec(&request).expect("requests serialize");
    let received: RpcRequest = serde_json::from_slice(&bytes).expect("auth-svc reads the request");
    let decoded = received
        .decode()
        .expect("auth-svc decodes what the gateway sent");
    assert_eq!(decoded, sent);
}

fn admin_update(update: AdminUpdate) -> Call {
    Call::UpdateUser(AdminUpdateParams {
        id: uuid::Uuid::nil(),
        update,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    match selector % 7 {
        0 => endpoint::<RegisterParams>(body, validate::register, Call::Register),
        1 => endpoint::<LoginParams>(body, validate::login, Call::Login),
        2 => endpoint::<RefreshTokenParams>(body, validate::refresh_token, Call::Refresh),
        3 => endpoint::<UpdateMeParams>(body, validate::update_me, Call::UpdateMe),
        4 => {
            endpoint::<ChangePasswordParams>(body, validate::change_password, Call::ChangePassword)
        }
        5 => endpoint::<AdminUpdate>(body, validate::admin_update, admin_update),
        _ => endpoint::<AccessCheckParams>(body, validate::access_check, Call::CheckAccess),
    }
});
