//! The OpenAPI 3.1 description of the gateway, generated from the handlers' own annotations and
//! the wire types (`utoipa`), served at `/openapi.json`, with Swagger UI at `/docs` and ReDoc at
//! `/redoc` — both compiled into the binary, so they work without internet access.
//!
//! Routes are registered through `utoipa_axum` ([`crate::routes::router`]), so a route without a
//! description cannot exist. The WebSocket protocol is described on `GET /api/v1/ws` (close
//! codes generated from [`CloseCode::ALL`]) and by the frame schemas in the components.

use std::collections::BTreeMap;

use authstack_protocol::model::PublicJwk;
use authstack_protocol::ws::{CloseCode, PATH as WS_PATH};
use authstack_protocol::{Event, EventKind, FieldError};
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

/// The JWKS document (RFC 7517) of `/.well-known/jwks.json`.
#[derive(Serialize, ToSchema)]
pub struct Jwks<'a> {
    /// Every key that may verify a live token: pending, active and retiring.
    pub keys: &'a [PublicJwk],
}

/// The discovery document of `/.well-known/openid-configuration` (the subset that applies).
#[derive(Serialize, ToSchema)]
pub struct OpenIdConfiguration {
    /// The `iss` of every token.
    pub issuer: String,
    /// Where the public keys are.
    pub jwks_uri: String,
    /// Where tokens are issued (password login).
    pub token_endpoint: String,
    /// `password`, `refresh_token`.
    pub grant_types_supported: Vec<&'static str>,
    /// `token`.
    pub response_types_supported: Vec<&'static str>,
    /// `public`.
    pub subject_types_supported: Vec<&'static str>,
    /// Signature algorithms of the published keys.
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// Claims of the access tokens.
    pub claims_supported: Vec<&'static str>,
}

/// Name of the bearer security scheme.
pub const BEARER: &str = "bearer";
/// Tag of the WebSocket operation.
pub const TAG_WS: &str = "websocket";

/// The description's fixed parts; paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "AuthStack gateway",
        description = "REST and WebSocket API of AuthStack. Errors are \
            `{\"error\": {\"code\", \"message\", \"request_id\", \"details\"?}}` with a stable \
            code; every response carries `X-Request-Id`. Access tokens are JWTs (`at+jwt`) \
            verifiable from `/.well-known/jwks.json`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&Describe),
    components(schemas(
        ErrorResponse,
        authstack_protocol::ws::ClientFrame,
        authstack_protocol::ws::CallFrame,
        authstack_protocol::ws::ServerFrame,
        authstack_protocol::ws::FrameError,
        Event,
        EventKind,
    )),
    tags(
        (name = "auth", description = "Registration, login, tokens and sessions"),
        (name = "users", description = "The caller's account and account administration"),
        (name = "access", description = "The role policy"),
        (name = "keys", description = "Public keys and discovery"),
        (name = "health", description = "Probes"),
        (name = "websocket", description = "Live events and RPC over a WebSocket"),
    )
)]
pub struct ApiDoc;

struct Describe;

impl Modify for Describe {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        if let Some(op) = api
            .paths
            .paths
            .get_mut(WS_PATH)
            .and_then(|p| p.get.as_mut())
        {
            let mut text = op.description.clone().unwrap_or_default();
            text.push_str("\n\n| close code | meaning | reconnect |\n|---|---|---|\n");
            for c in CloseCode::ALL {
                text.push_str(&format!(
                    "| {} | {} | {} |\n",
                    c.code(),
                    c.reason(),
                    if c.reconnect() { "yes" } else { "no" }
                ));
            }
            op.description = Some(text);
        }
    }
}

/// The error envelope of every non-2xx response.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorResponse {
    error: ErrorObject,
}

/// The error object.
#[derive(ToSchema)]
#[allow(dead_code)]
struct ErrorObject {
    /// Stable code (`docs/errors.md`).
    code: authstack_protocol::ErrorCode,
    /// Human-readable message; never secrets.
    message: String,
    /// The request id (also the `X-Request-Id` header).
    request_id: String,
    /// Per-field problems of `validation.failed`.
    #[schema(nullable = false)]
    details: Option<Vec<FieldError>>,
}

fn error(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorResponse")))
                .build(),
        )
        .build()
        .into()
}

/// Declares a group of error responses shared by several operations.
macro_rules! error_responses {
    ($(#[$doc:meta])* $name:ident { $($status:literal => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                BTreeMap::from([$(($status.to_owned(), error($text))),+])
            }
        }
    };
}

error_responses!(
    /// A request body, path or query the gateway refuses.
    BadInput {
        "400" => "`validation.failed`: malformed JSON, a wrong type, a missing or unknown field, or a value out of range (`details` names each field)",
        "408" => "`common.request_timeout`: the body did not arrive in time",
        "413" => "`common.payload_too_large`: the body exceeds the limit",
    }
);
error_responses!(
    /// A missing, invalid, expired or revoked bearer token.
    Unauthenticated {
        "401" => "`auth.invalid_token` (missing, malformed, forged, revoked) or `auth.token_expired`; `auth.invalid_credentials` when a current password is wrong",
    }
);
error_responses!(
    /// The caller lacks the role.
    AdminOnly {
        "403" => "`auth.forbidden`: the `admin` role is required (or the change would leave no active admin)",
    }
);
error_responses!(
    /// The account does not exist.
    Missing {
        "404" => "`common.not_found`: no such account",
    }
);
error_responses!(
    /// A conflict with existing state.
    Conflicting {
        "409" => "`auth.user_exists` (the user name is taken) or `common.conflict` (a replayed request)",
    }
);
error_responses!(
    /// Throttled.
    Throttled {
        "429" => "`auth.account_locked` or `common.rate_limited`, with `Retry-After`",
    }
);
error_responses!(
    /// auth-svc did not answer usefully.
    Upstream {
        "502" => "`rpc.bad_response`",
        "503" => "`rpc.unavailable`: the broker or every auth-svc replica is unreachable, or auth-svc is at capacity (`Retry-After`)",
        "504" => "`rpc.timeout`",
    }
);
error_responses!(
    /// Keys are not loaded yet.
    KeysUnavailable {
        "503" => "`rpc.unavailable`: the verification keys are not loaded yet",
    }
);

/// `/openapi.json`, Swagger UI at `/docs` and ReDoc at `/redoc`.
pub fn docs_router<S: Clone + Send + Sync + 'static>(api: utoipa::openapi::OpenApi) -> Router<S> {
    Router::new()
        .merge(
            SwaggerUi::new("/docs")
                .url("/openapi.json", api)
                // No calls to the public validator: the page works offline.
                .config(utoipa_swagger_ui::Config::from("/openapi.json").validator_url("none")),
        )
        .route("/redoc", get(redoc_page))
        .route("/redoc/redoc.standalone.js", get(redoc_script))
}

const REDOC_JS: &[u8] = include_bytes!("../assets/redoc/redoc.standalone.js");

async fn redoc_page() -> Html<&'static str> {
    Html(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>AuthStack gateway API</title>
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="/redoc/redoc.standalone.js"></script>
</body>
</html>
"#,
    )
}

async fn redoc_script() -> Response {
    let mut response = REDOC_JS.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}
