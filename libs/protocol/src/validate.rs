//! Field validation shared by the gateway (early 400s) and auth-svc (the authority).

use crate::error::{ErrorBody, FieldError};
use crate::rpc::{
    AccessCheckParams, AdminUpdate, Call, ChangePasswordParams, DeleteMeParams, ListUsersParams,
    LoginParams, RefreshTokenParams, RegisterParams, UpdateMeParams,
};

/// Shortest accepted password, in characters (NIST SP 800-63B).
pub const PASSWORD_MIN: usize = 8;
/// Longest accepted password, in characters (bounds hashing cost).
pub const PASSWORD_MAX: usize = 128;
/// Largest page of `users.list`.
pub const LIST_LIMIT_MAX: i64 = 200;

/// Collects field errors and turns them into one `validation.failed` error.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: &str, reason: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, reason, message));
    }

    fn finish(self) -> Result<(), ErrorBody> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ErrorBody::validation(self.0))
        }
    }
}

fn email(errors: &mut Errors, field: &str, value: &str) {
    let len = value.chars().count();
    if value.is_empty() {
        return errors.push(field, "required", "email is required");
    }
    if len > 254 {
        return errors.push(field, "too_long", "email must be at most 254 characters");
    }
    let valid = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 64
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
                && value.chars().all(|c| c.is_ascii_graphic() || !c.is_ascii())
                && !value.chars().any(char::is_control)
        }
        None => false,
    };
    if !valid {
        errors.push(
            field,
            "invalid_format",
            "email must look like name@example.com",
        );
    }
}

fn username(errors: &mut Errors, field: &str, value: &str) {
    let len = value.chars().count();
    if value.is_empty() {
        return errors.push(field, "required", "username is required");
    }
    if !(3..=32).contains(&len) {
        return errors.push(
            field,
            "invalid_length",
            "username must be 3 to 32 characters",
        );
    }
    let first_ok = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let chars_ok = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !chars_ok {
        errors.push(
            field,
            "invalid_format",
            "username must start with a letter or digit and contain only letters, digits, '_', '.', '-'",
        );
    }
}

fn password(errors: &mut Errors, field: &str, value: &str) {
    let len = value.chars().count();
    if value.is_empty() {
        return errors.push(field, "required", "password is required");
    }
    if len < PASSWORD_MIN {
        errors.push(
            field,
            "too_short",
            format!("password must be at least {PASSWORD_MIN} characters"),
        );
    } else if len > PASSWORD_MAX {
        errors.push(
            field,
            "too_long",
            format!("password must be at most {PASSWORD_MAX} characters"),
        );
    } else if value.trim().is_empty() {
        errors.push(
            field,
            "invalid_format",
            "password must not be only white space",
        );
    }
}

fn display_name(errors: &mut Errors, field: &str, value: &str) {
    if value.chars().count() > 64 {
        errors.push(
            field,
            "too_long",
            "display_name must be at most 64 characters",
        );
    } else if value.chars().any(char::is_control) {
        errors.push(
            field,
            "invalid_format",
            "display_name must not contain control characters",
        );
    }
}

fn non_empty(errors: &mut Errors, field: &str, value: &str, max: usize) {
    if value.is_empty() {
        errors.push(field, "required", format!("{field} is required"));
    } else if value.len() > max {
        errors.push(
            field,
            "too_long",
            format!("{field} must be at most {max} bytes"),
        );
    }
}

/// Checks a role name: lower-case letters, digits, `_` and `-`, starting with a letter.
pub fn is_valid_role(role: &str) -> bool {
    let mut chars = role.chars();
    role.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

/// Validates `auth.register`.
pub fn register(p: &RegisterParams) -> Result<(), ErrorBody> {
    let mut e = Errors::default();
    email(&mut e, "email", &p.email);
    username(&mut e, "username", &p.username);
    password(&mut e, "password", p.password.expose());
    if let Some(name) = &p.display_name {
        display_name(&mut e, "display_name", name);
    }
    e.finish()
}

/// Validates `auth.login` (only presence and size: wrong values are `auth.invalid_credentials`).
pub fn login(p: &LoginParams) -> Result<(), ErrorBody> {
    let mut e = Errors::default();
    non_empty(&mut e, "login", &p.login, 254);
    // No email or user name has them, and PostgreSQL refuses NUL in text.
    if p.login.chars().any(char::is_control) {
        e.push(
            "login",
            "invalid_format",
            "login must not contain control characters",
        );
    }
    non_empty(&mut e, "password", p.password.expose(), PASSWORD_MAX * 4);
    e.finish()
}

/// Validates `auth.refresh` / `auth.logout`.
pub fn refresh_token(p: &RefreshTokenParams) -> Result<(), ErrorBody> {
    let mut e = Errors::default();
    non_empty(&mut e, "refresh_token", p.refresh_token.expose(), 512);
    e.finish()
}

fn current_password(errors: &mut Errors, value: Option<&str>) {
    non_empty(
        errors,
        "current_password",
        value.unwrap_or(""),
        PASSWORD_MAX * 4,
    );
}

/// Validates `users.update_me`: a new email needs the current password.
pub fn update_me(p: &UpdateMeParams) -> Result<(), ErrorBody> {
    let mut e = Errors::default();
    match (&p.email, &p.current_password) {
        (Some(v), given) => {
            email(&mut e, "email", v);
            current_password(&mut e, given.as_ref().map(|s| s.expose()));
        }
        // Not needed without a new email, but never accepted beyond its limit.
        (None, Some(given)) if given.expose().len() > PASSWORD_MAX * 4 => e.push(
            "current_password",
            "too_long",
            format!(
                "current_password must be at most {} bytes",
                PASSWORD_MAX * 4
            ),
        ),
        _ => {}
    }
    if let Some(v) = &p.username {
        username(&mut e, "username", v);
    }
    if let Some(v) = &p.display_name {
        display_name(&mut e, "display_name", v);
    }
    e.finish()
}

/// Validates `users.delete_me`.
pub fn delete_me(p: &DeleteMeParams) -> Result<(), ErrorBody> {
    let mut e = Errors::default();
    current_password(&mut e, Some(p.current_password.expose()));
    e.finish()
}

/// Validates `users.change_password`.
pub fn change_password(p: &ChangePasswordParams) -> Result<(), ErrorBody> {
    let mut e = Errors::default();
    current_password(&mut e, Some(p.current_password.expose()));
    password(&mut e, "new_password", p.new_password.expose());
    e.finish()
}

/// Validates `users.list`.
pub fn list_users(p: &ListUsersParams) -> Result<(), ErrorBody> {
    let mut e = Errors::default();
    if let Some(limit) = p.limit
        && !(1..=LIST_LIMIT_MAX).contains(&limit)
    {
        e.push(
            "limit",
            "out_of_range",
            format!("limit must be 1 to {LIST_LIMIT_MAX}"),
        );
    }
    if let Some(offset) = p.offset
        && offset < 0
    {
        e.push("offset", "out_of_range", "offset must not be negative");
    }
    e.finish()
}

/// Validates an administrator's update.
pub fn admin_update(p: &AdminUpdate) -> Result<(), ErrorBody> {
    let mut e = Errors::default();
    if let Some(roles) = &p.roles {
        if roles.len() > 16 {
            e.push("roles", "too_many", "at most 16 roles");
        }
        if let Some(bad) = roles.iter().find(|r| !is_valid_role(r)) {
            e.push(
                "roles",
                "invalid_format",
                format!("invalid role `{bad}`: lower-case letters, digits, '_' and '-', starting with a letter"),
            );
        }
    }
    if let Some(v) = &p.display_name {
        display_name(&mut e, "display_name", v);
    }
    if p.roles.is_none() && p.disabled.is_none() && p.display_name.is_none() {
        e.push("body", "empty", "nothing to update");
    }
    e.finish()
}

/// Validates `access.check`.
pub fn access_check(p: &AccessCheckParams) -> Result<(), ErrorBody> {
    let mut e = Errors::default();
    const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    if !METHODS.contains(&p.method.to_ascii_uppercase().as_str()) {
        e.push(
            "method",
            "invalid_value",
            "method must be an HTTP method such as GET or POST",
        );
    }
    if !p.path.starts_with('/') || p.path.len() > 2048 {
        e.push(
            "path",
            "invalid_format",
            "path must start with '/' and be at most 2048 bytes",
        );
    }
    e.finish()
}

/// Validates the parameters of any call (what the gateway checks before it forwards one).
pub fn call(c: &Call) -> Result<(), ErrorBody> {
    match c {
        Call::Register(p) => register(p),
        Call::Login(p) => login(p),
        Call::Refresh(p) | Call::Logout(p) => refresh_token(p),
        Call::UpdateMe(p) => update_me(p),
        Call::DeleteMe(p) => delete_me(p),
        Call::ChangePassword(p) => change_password(p),
        Call::ListUsers(p) => list_users(p),
        Call::UpdateUser(p) => admin_update(&p.update),
        Call::CheckAccess(p) => access_check(p),
        Call::LogoutAll | Call::GetMe | Call::GetUser(_) | Call::DeleteUser(_) | Call::ListKeys => {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Secret;

    #[test]
    fn a_login_with_control_characters_is_a_validation_error() {
        // schemathesis sent "\u0000…" as a login: PostgreSQL refuses NUL in text, so it
        // reached auth-svc's query and came back as a 500.
        for login in ["a\u{0}b", "ann\u{7}"] {
            let p = LoginParams {
                login: login.into(),
                password: "correct horse battery".into(),
            };
            let e = super::login(&p).unwrap_err();
            assert_eq!(e.details[0].field, "login", "{login:?}");
        }
    }

    #[test]
    fn an_oversized_current_password_is_refused_even_when_not_needed() {
        let p = UpdateMeParams {
            display_name: Some("Ann".into()),
            current_password: Some(Secret("x".repeat(PASSWORD_MAX * 4 + 1))),
            ..Default::default()
        };
        let e = update_me(&p).unwrap_err();
        assert_eq!(e.details[0].field, "current_password");
        let fine = UpdateMeParams {
            current_password: Some(Secret("x".into())),
            ..p
        };
        assert!(update_me(&fine).is_ok());
    }

    fn reg(email: &str, username: &str, password: &str) -> RegisterParams {
        RegisterParams {
            email: email.into(),
            username: username.into(),
            password: password.into(),
            display_name: None,
        }
    }

    fn fields(r: Result<(), ErrorBody>) -> Vec<String> {
        r.err()
            .map(|e| e.details.into_iter().map(|d| d.field).collect())
            .unwrap_or_default()
    }

    #[test]
    fn good_registration_passes() {
        assert!(register(&reg("ann@example.com", "ann_1", "correct horse")).is_ok());
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        assert_eq!(
            fields(register(&reg("nope", "a", "short"))),
            ["email", "username", "password"]
        );
    }

    #[test]
    fn emails_are_checked_for_shape() {
        for bad in [
            "a@b",
            "@b.com",
            "a@@b.com",
            "a b@c.com",
            "a@.com",
            "a@b..com",
            "a@b.com.",
        ] {
            assert_eq!(
                fields(register(&reg(bad, "ann", "longenough"))),
                ["email"],
                "{bad}"
            );
        }
    }

    #[test]
    fn usernames_cannot_look_like_emails_or_start_with_punctuation() {
        for bad in [
            "ann@x.com",
            "_ann",
            "an",
            "a".repeat(33).as_str(),
            "ann smith",
        ] {
            assert_eq!(
                fields(register(&reg("a@b.co", bad, "longenough"))),
                ["username"],
                "{bad}"
            );
        }
    }

    #[test]
    fn passwords_have_bounds() {
        assert_eq!(
            fields(register(&reg("a@b.co", "ann", &"x".repeat(129)))),
            ["password"]
        );
        assert_eq!(
            fields(register(&reg("a@b.co", "ann", "        "))),
            ["password"]
        );
        assert!(register(&reg("a@b.co", "ann", &"x".repeat(128))).is_ok());
    }

    #[test]
    fn roles_are_checked() {
        assert!(is_valid_role("admin"));
        assert!(!is_valid_role("Admin"));
        assert!(!is_valid_role(""));
        let upd = AdminUpdate {
            roles: Some(vec!["ok".into(), "NOT OK".into()]),
            ..Default::default()
        };
        assert_eq!(fields(admin_update(&upd)), ["roles"]);
        assert_eq!(fields(admin_update(&AdminUpdate::default())), ["body"]);
    }

    #[test]
    fn a_new_email_needs_the_current_password() {
        let mut p = UpdateMeParams {
            email: Some("new@example.com".into()),
            ..Default::default()
        };
        assert_eq!(fields(update_me(&p)), ["current_password"]);
        p.current_password = Some("hunter22".into());
        assert!(update_me(&p).is_ok());
        let name_only = UpdateMeParams {
            display_name: Some("Ann".into()),
            ..Default::default()
        };
        assert!(update_me(&name_only).is_ok());
        let empty = DeleteMeParams {
            current_password: "".into(),
        };
        assert_eq!(fields(delete_me(&empty)), ["current_password"]);
    }

    #[test]
    fn list_bounds() {
        let p = ListUsersParams {
            limit: Some(0),
            offset: Some(-1),
        };
        assert_eq!(fields(list_users(&p)), ["limit", "offset"]);
    }
}
