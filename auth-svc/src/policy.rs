//! The role policy behind `access.check`: which roles may call which method and path.
//!
//! Paths are normalised before matching ([`normalize_path`]): percent-encoded unreserved
//! characters are decoded (`%2e` is `.`, `%61` is `a`) and dot segments removed as RFC 3986
//! section 5.2.4 says, so `/api/v1/auth/../users` is judged as `/api/v1/users`. Paths that
//! servers disagree about are refused instead: an encoded `/` or `\`, a `\`, empty segments
//! (`//`), dot segments with parameters (`..;`), malformed percent-encoding.

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

/// Why a path cannot be judged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadPercentEncoding,
    /// Something servers interpret differently (encoded separators, backslashes, `//`, `..;`).
    #[error("ambiguous path: {0}")]
    Ambiguous(&'static str),
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes percent-encoded unreserved characters; other escapes stay, upper-cased.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b as char);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadPercentEncoding);
        };
        let decoded = hi << 4 | lo;
        match decoded {
            b'/' | b'\\' => return Err(PathError::Ambiguous("encoded path separator")),
            d if is_unreserved(d) => out.push(d as char),
            d => out.push_str(&format!("%{d:02X}")),
        }
        i += 3;
    }
    Ok(out)
}

/// The path part of `raw` (no query), decoded and with dot segments removed (RFC 3986
/// section 5.2.4), or an error for paths different servers would read differently.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    let path = raw.split('?').next().unwrap_or("");
    if path.contains('\\') {
        return Err(PathError::Ambiguous("backslash"));
    }
    if path.contains('#') || path.chars().any(char::is_control) || !path.is_ascii() {
        return Err(PathError::Ambiguous(
            "fragment, control or non-ASCII characters",
        ));
    }
    let decoded = decode_unreserved(path)?;
    let Some(rest) = decoded.strip_prefix('/') else {
        return Err(PathError::Ambiguous("not an absolute path"));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if seg.is_empty() && !last {
            return Err(PathError::Ambiguous("empty path segment"));
        }
        let bare = seg.split(';').next().unwrap_or("");
        if seg.contains(';') && (bare == "." || bare == "..") {
            return Err(PathError::Ambiguous("dot segment with parameters"));
        }
        trailing_slash = last && (seg.is_empty() || *seg == "." || *seg == "..");
        match *seg {
            "." | "" => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut normalized = format!("/{}", out.join("/"));
    if trailing_slash && !out.is_empty() {
        normalized.push('/');
    }
    Ok(normalized)
}

/// Matches a normalised path against a pattern, segment by segment.
fn path_matches(pattern: &str, path: &str) -> bool {
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
    /// Whether a caller with `roles` may send `method` to `path` (normalised first; an
    /// ambiguous path is an error, never allowed).
    pub fn allows(&self, roles: &[String], method: &str, path: &str) -> Result<bool, PathError> {
        let path = normalize_path(path)?;
        let method = method.to_ascii_uppercase();
        Ok(self.rules.iter().any(|r| {
            roles.contains(&r.role)
                && r.methods.iter().any(|m| m == "*" || *m == method)
                && path_matches(&r.path, &path)
        }))
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

    fn allows(p: &Policy, roles: &[String], method: &str, path: &str) -> bool {
        p.allows(roles, method, path).unwrap()
    }

    #[test]
    fn users_reach_their_own_resources_only() {
        let p = &Policy::default();
        let user = &roles(&["user"]);
        assert!(allows(p, user, "GET", "/api/v1/users/me"));
        assert!(allows(p, user, "post", "/api/v1/users/me/password"));
        assert!(allows(p, user, "POST", "/api/v1/auth/logout-all"));
        assert!(!allows(p, user, "GET", "/api/v1/users"));
        assert!(!allows(p, user, "DELETE", "/api/v1/users/0b5e"));
        assert!(!allows(p, user, "PUT", "/api/v1/users/me"));
        assert!(!allows(p, &roles(&[]), "GET", "/api/v1/users/me"));
    }

    #[test]
    fn admins_reach_everything_under_the_api() {
        let p = &Policy::default();
        let admin = &roles(&["user", "admin"]);
        assert!(allows(p, admin, "DELETE", "/api/v1/users/0b5e"));
        assert!(allows(p, admin, "GET", "/api/v1/users?limit=5"));
        assert!(!allows(p, admin, "GET", "/internal/debug"));
    }

    #[test]
    fn dot_segments_are_removed_and_unreserved_escapes_decoded() {
        for (raw, want) in [
            ("/api/v1/auth/../users", "/api/v1/users"),
            ("/api/v1/auth/%2e%2e/users", "/api/v1/users"),
            ("/api/v1/auth/%2E./users?x=1", "/api/v1/users"),
            ("/a/./b/../../c", "/c"),
            ("/../../a", "/a"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/", "/a/"),
            ("/", "/"),
            ("/%61%7E/%3f", "/a~/%3F"),
        ] {
            assert_eq!(normalize_path(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for raw in [
            "/a/..%2fb",
            "/a/%2F",
            "/a/%5c..",
            "/a\\..",
            "/a//../b",
            "/a/..;/b",
            "/a/.;x/b",
            "/a/%zz",
            "/a/%2",
            "relative/path",
            "/a#frag",
        ] {
            assert!(normalize_path(raw).is_err(), "{raw}");
        }
        let p = Policy::default();
        assert!(
            p.allows(&roles(&["user"]), "GET", "/api/v1/auth/..;/users")
                .is_err()
        );
    }

    #[test]
    fn a_user_cannot_climb_out_of_their_own_paths() {
        let p = &Policy::default();
        let user = &roles(&["user"]);
        assert!(!allows(p, user, "GET", "/api/v1/auth/../users"));
        assert!(!allows(p, user, "GET", "/api/v1/auth/%2e%2e/users"));
        assert!(!allows(p, user, "GET", "/api/v1/users/me/../../users"));
        assert!(allows(p, user, "GET", "/api/v1/auth/./session"));
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
