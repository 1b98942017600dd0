//! The role policy behind `access.check`: which roles may call which method and path.

use serde::Deserialize;

/// One rule: callers with `role` may use `methods` on paths matching `path`.
///
/// Path patterns match segment by segment: `*` matches one segment, a trailing `**` matches any
/// rest (including nothing). Methods are upper-case HTTP methods or `*`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Rule {
    /// The role the rule applies to.
    pub role: String,
    /// Allowed methods.
    pub methods: Vec<String>,
    /// Path pattern.
    pub path: String,
}

/// An allow-list of rules.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Policy {
    /// The rules; a request is allowed when any rule of any of the caller's roles matches.
    pub rules: Vec<Rule>,
}

fn rule(role: &str, methods: &[&str], path: &str) -> Rule {
    Rule {
        role: role.into(),
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        path: path.into(),
    }
}

impl Default for Policy {
    /// Users manage their own account and sessions; admins may do everything under `/api/v1`.
    fn default() -> Self {
        Policy {
            rules: vec![
                rule("user", &["GET", "PATCH", "DELETE"], "/api/v1/users/me"),
                rule("user", &["POST"], "/api/v1/users/me/password"),
                rule("user", &["GET", "POST"], "/api/v1/auth/**"),
                rule("user", &["POST"], "/api/v1/access/check"),
                rule("user", &["GET"], "/api/v1/ws"),
                rule("admin", &["*"], "/api/v1/**"),
            ],
        }
    }
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or("");
    let mut pat = pattern.trim_end_matches('/').split('/');
    let mut segs = path.trim_end_matches('/').split('/');
    loop {
        match (pat.next(), segs.next()) {
            (Some("**"), _) => return true,
            (Some(p), Some(s)) if p == "*" || p == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl Policy {
    /// Whether a caller with `roles` may send `method` to `path`.
    pub fn allows(&self, roles: &[String], method: &str, path: &str) -> bool {
        let method = method.to_ascii_uppercase();
        self.rules.iter().any(|r| {
            roles.contains(&r.role)
                && r.methods.iter().any(|m| m == "*" || *m == method)
                && path_matches(&r.path, path)
        })
    }

    /// Loads a policy from a JSON file `{"rules": [{"role", "methods", "path"}]}`.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn users_reach_their_own_resources_only() {
        let p = Policy::default();
        let user = roles(&["user"]);
        assert!(p.allows(&user, "GET", "/api/v1/users/me"));
        assert!(p.allows(&user, "post", "/api/v1/users/me/password"));
        assert!(p.allows(&user, "POST", "/api/v1/auth/logout-all"));
        assert!(!p.allows(&user, "GET", "/api/v1/users"));
        assert!(!p.allows(&user, "DELETE", "/api/v1/users/0b5e"));
        assert!(!p.allows(&user, "PUT", "/api/v1/users/me"));
        assert!(!p.allows(&roles(&[]), "GET", "/api/v1/users/me"));
    }

    #[test]
    fn admins_reach_everything_under_the_api() {
        let p = Policy::default();
        let admin = roles(&["user", "admin"]);
        assert!(p.allows(&admin, "DELETE", "/api/v1/users/0b5e"));
        assert!(p.allows(&admin, "GET", "/api/v1/users?limit=5"));
        assert!(!p.allows(&admin, "GET", "/internal/debug"));
    }

    #[test]
    fn patterns_match_by_segment() {
        assert!(path_matches("/a/*/c", "/a/b/c"));
        assert!(!path_matches("/a/*/c", "/a/b/c/d"));
        assert!(path_matches("/a/**", "/a"));
        assert!(path_matches("/a/**", "/a/b/c"));
        assert!(!path_matches("/a/b", "/a/bb"));
    }
}
