//! The configuration contract with the services, checked against their own definitions: the
//! environment the builders write is parsed by auth-svc's and the gateway's real clap
//! configurations. A variable the service does not read, a value it refuses, or a required one
//! missing fails here. The services are dev-dependencies only, so the operator binary links
//! none of sqlx, lapin or argon2; the names live once, in each service's `Config`.

use clap::ArgAction;
use k8s_openapi::api::core::v1::EnvVar;

use crate::builders::auth_svc as auth_builder;
use crate::builders::gateway as gateway_builder;
use crate::builders::test_support::settings_with;
use crate::crd::AuthStack;
use crate::settings::Settings;

/// Variables read outside clap (by `authstack_telemetry`).
const AMBIENT: &[&str] = &[authstack_telemetry::LOG_FORMAT_ENV];

/// A variable's value as the pod would see it: literal, or a placeholder for a Secret key.
fn value(e: &EnvVar) -> String {
    match (
        &e.value,
        e.value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref()),
    ) {
        (Some(v), _) => v.clone(),
        (None, Some(r)) => format!("secret:{}/{}", r.name, r.key),
        (None, None) => panic!("{} has neither a value nor a Secret key", e.name),
    }
}

/// The command line that means to `C` what `env` means: every variable must be one `C` reads.
fn parse<C: clap::Parser>(env: &[EnvVar]) -> C {
    let cmd = C::command();
    let mut args = vec![cmd.get_name().to_owned()];
    for e in env {
        if AMBIENT.contains(&e.name.as_str()) {
            continue;
        }
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|n| n == e.name.as_str()))
            .unwrap_or_else(|| {
                panic!("{} sets {}, which it does not read", cmd.get_name(), e.name)
            });
        let flag = format!("--{}", arg.get_long().expect("every knob has a long flag"));
        let v = value(e);
        match arg.get_action() {
            ArgAction::SetTrue if v == "true" => args.push(flag),
            ArgAction::SetTrue if v == "false" => {}
            ArgAction::SetTrue => panic!("{}={v} is not a boolean", e.name),
            _ => args.extend([flag, v]),
        }
    }
    C::try_parse_from(&args).unwrap_or_else(|err| panic!("{args:?}:\n{err}"))
}

fn auth_env(s: &Settings) -> Vec<EnvVar> {
    auth_builder::environment(s)
}

fn stacks() -> Vec<Settings> {
    let tuned = |st: &mut AuthStack| {
        let a = &mut st.spec.auth_service;
        a.tokens.access_token_ttl = "5m".into();
        a.tokens.refresh_token_ttl = "24h".into();
        a.tokens.refresh_reuse_grace = "10s".into();
        a.argon2.memory_kib = 47_104;
        a.argon2.iterations = 1;
        a.argon2.parallelism = 4;
        a.lockout.max_failures = 3;
        a.lockout.window = "1h".into();
        st.spec.gateway.rpc_timeout = "250ms".into();
        st.spec.gateway.max_body_bytes = 1 << 20;
        st.spec.gateway.trusted_proxies = vec!["10.0.0.0/8".into(), "192.0.2.7".into()];
        st.spec.gateway.trusted_proxy_hops = 2;
    };
    vec![settings_with(|_| {}), settings_with(tuned)]
}

#[test]
fn auth_svc_reads_every_variable_the_operator_sets() {
    for s in stacks() {
        let c: ::auth_svc::Config = parse(&auth_env(&s));
        c.check().unwrap();
        let t = &s.tokens;
        let a = &s.auth;
        assert_eq!(c.broker.names(), authstack_bus::Names::defaults());
        assert_eq!(c.key_dir, std::path::Path::new(auth_builder::KEY_DIR));
        assert_eq!(c.http_listen.port(), auth_builder::HTTP_PORT as u16);
        assert_eq!(
            (c.issuer.as_str(), c.audience.as_str()),
            (t.issuer.as_str(), t.audience.as_str())
        );
        assert_eq!(c.access_ttl(), t.access_ttl);
        assert_eq!(c.refresh_token_ttl, t.refresh_ttl.as_secs());
        assert_eq!(c.refresh_reuse_grace, t.reuse_grace.as_secs());
        assert_eq!(
            (
                c.argon2_memory_kib,
                c.argon2_iterations,
                c.argon2_parallelism
            ),
            (
                a.argon2.memory_kib as u32,
                a.argon2.iterations as u32,
                a.argon2.parallelism as u32
            )
        );
        assert_eq!(c.lockout_threshold, a.lockout.max_failures as u32);
        assert_eq!(
            c.address_lockout_threshold,
            a.lockout.address_max_failures as u32
        );
        assert_eq!(c.lockout_window, s.lockout_window.as_secs());
        assert_eq!(c.lockout_duration, s.lockout_duration.as_secs());
        assert!(c.database_url.starts_with("secret:"), "{}", c.database_url);
        assert!(
            c.broker.amqp_url.starts_with("secret:"),
            "{}",
            c.broker.amqp_url
        );
    }
}

#[test]
fn gateway_reads_every_variable_the_operator_sets() {
    for s in stacks() {
        let c: ::gateway::Config = parse(&gateway_builder::environment(&s));
        assert_eq!(c.broker.names(), authstack_bus::Names::defaults());
        assert_eq!(c.listen.port(), gateway_builder::HTTP_PORT as u16);
        assert_eq!(
            c.metrics_listen.port(),
            gateway_builder::METRICS_PORT as u16
        );
        let proxies: Vec<_> = s
            .gateway
            .trusted_proxies
            .iter()
            .map(|p| ::gateway::client_ip::parse_proxy(p).unwrap())
            .collect();
        assert_eq!(c.trusted_proxies.0, proxies);
        assert_eq!(c.trusted_proxy_hops as i32, s.gateway.trusted_proxy_hops);
        assert_eq!(c.rpc_timeout_ms, s.rpc_timeout.as_millis() as u64);
        assert_eq!(c.max_body_bytes as i64, s.gateway.max_body_bytes);
        assert_eq!(c.issuer, s.tokens.issuer);
        assert!(
            c.broker.amqp_url.starts_with("secret:"),
            "{}",
            c.broker.amqp_url
        );
    }
}

/// The check itself: a misspelt or unknown variable is caught.
#[test]
#[should_panic(expected = "which it does not read")]
fn an_unknown_variable_fails() {
    let mut env = auth_env(&stacks()[0]);
    env.push(crate::builders::env("AUTH_ACCESS_TOKEN_TTL_SECS", "900"));
    let _: ::auth_svc::Config = parse(&env);
}

/// The schema auth-svc's role owns is the one auth-svc migrates.
#[test]
fn the_database_role_owns_auth_svcs_schema() {
    assert_eq!(
        crate::builders::database_role::SCHEMA,
        ::auth_svc::db::SCHEMA
    );
}
