//! Database URLs: which backend, SQLite file paths, and scrubbing passwords before printing.

use std::path::{Path, PathBuf};

/// Returns `url` safe to print: the password in `user:password@` becomes `***`, and so does the
/// value of a `password=` query parameter. Anything else is left as is.
///
/// When unsure where the user info ends (a password with a raw `/` or `@` in it), more is
/// hidden rather than less: everything up to the last `@` before the query.
pub fn scrub_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // `sqlite:path` and bare paths carry no credentials.
        return url.to_owned();
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let (before_query, query) = match rest.find('?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match before_query.rfind('@') {
        Some(at) => {
            let userinfo = &before_query[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&before_query[at..]);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

/// The two databases the store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A URL resolved for connecting.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) backend: Backend,
    /// The URL handed to sqlx (SQLite: with `mode=rwc` added unless a mode was given).
    pub(crate) url: String,
    /// SQLite only: the database file, `None` for in-memory databases.
    pub(crate) file: Option<PathBuf>,
}

/// Sorts `url` into PostgreSQL (`postgres://`, `postgresql://`), SQLite (`sqlite:` URLs and bare
/// file paths), or `None` for any other scheme.
pub(crate) fn resolve(url: &str) -> Option<Target> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return Some(Target {
            backend: Backend::Postgres,
            url: url.to_owned(),
            file: None,
        });
    }
    let (prefix, rest) = if lower.starts_with("sqlite://") {
        url.split_at(9)
    } else if lower.starts_with("sqlite:") {
        url.split_at(7)
    } else if has_scheme(url) {
        return None;
    } else {
        return Some(sqlite_target(Path::new(url)));
    };
    let (path, params) = match rest.split_once('?') {
        Some((path, params)) => (path, Some(params)),
        None => (rest, None),
    };
    let in_memory = path.is_empty()
        || path == ":memory:"
        || params.is_some_and(|p| p.split('&').any(|kv| kv == "mode=memory"));
    let has_mode = params.is_some_and(|p| p.split('&').any(|kv| kv.starts_with("mode=")));
    let url = match (params, has_mode || in_memory) {
        (_, true) => url.to_owned(),
        (Some(params), false) => format!("{prefix}{path}?{params}&mode=rwc"),
        (None, false) => format!("{prefix}{path}?mode=rwc"),
    };
    let file = (!in_memory).then(|| PathBuf::from(percent_decode(path)));
    Some(Target {
        backend: Backend::Sqlite,
        url,
        file,
    })
}

/// The `sqlite:` URL of a database file, percent-encoded so that any path survives URL parsing.
pub(crate) fn sqlite_url(path: &Path) -> String {
    let mut url = String::from("sqlite:");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

fn sqlite_target(path: &Path) -> Target {
    Target {
        backend: Backend::Sqlite,
        url: format!("{}?mode=rwc", sqlite_url(path)),
        file: Some(path.to_owned()),
    }
}

/// `scheme:` as RFC 3986 spells it (a letter, then letters, digits, `+`, `-`, `.`).
fn has_scheme(s: &str) -> bool {
    let Some(colon) = s.find(':') else {
        return false;
    };
    let scheme = &s[..colon];
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_hides_passwords_only() {
        assert_eq!(
            scrub_url("postgres://alice:s3cret@db.example:5432/dexlab"),
            "postgres://alice:***@db.example:5432/dexlab"
        );
        assert_eq!(
            scrub_url("postgresql://bob@127.0.0.1/x"),
            "postgresql://bob@127.0.0.1/x"
        );
        assert_eq!(
            scrub_url("postgres://h/db?user=u&password=pw&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
        // A raw '@' or '/' in the password: hide everything up to the last '@'.
        let odd = scrub_url("postgres://carol:p@ss/w0rd@host/db");
        assert!(!odd.contains("ss/w0rd") && !odd.contains("p@ss"), "{odd}");
        assert_eq!(
            scrub_url("sqlite:/tmp/a@b.sqlite"),
            "sqlite:/tmp/a@b.sqlite"
        );
    }

    #[test]
    fn resolve_sorts_backends() {
        let pg = resolve("postgresql://u:p@h/db").unwrap();
        assert_eq!(pg.backend, Backend::Postgres);
        assert_eq!(pg.url, "postgresql://u:p@h/db");

        let file = resolve("/tmp/a b/dexlab.sqlite").unwrap();
        assert_eq!(file.backend, Backend::Sqlite);
        assert_eq!(file.url, "sqlite:/tmp/a%20b/dexlab.sqlite?mode=rwc");
        assert_eq!(
            file.file.as_deref(),
            Some(Path::new("/tmp/a b/dexlab.sqlite"))
        );

        let url = resolve("sqlite:///tmp/x%3F.sqlite").unwrap();
        assert_eq!(url.url, "sqlite:///tmp/x%3F.sqlite?mode=rwc");
        assert_eq!(url.file.as_deref(), Some(Path::new("/tmp/x?.sqlite")));

        let ro = resolve("sqlite:x.sqlite?mode=ro").unwrap();
        assert_eq!(ro.url, "sqlite:x.sqlite?mode=ro");

        let mem = resolve("sqlite::memory:").unwrap();
        assert_eq!(mem.file, None);

        assert_eq!(resolve("mysql://root:pw@h/db"), None);
    }

    #[test]
    fn sqlite_url_round_trips_odd_paths() {
        let path = Path::new("/tmp/we?ird#dir %/dexlab.sqlite");
        let target = resolve(&sqlite_url(path)).unwrap();
        assert_eq!(target.file.as_deref(), Some(path));
    }
}
