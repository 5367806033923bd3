//! LogDog's naming rules: projects, stream names and prefixes, paths (`prefix/+/name`),
//! tag keys, and the stream id (hex SHA-256 of the path).

use sha2::{Digest, Sha256};

/// Longest stream name, prefix or path in bytes (LogDog's limit).
pub const MAX_NAME_BYTES: usize = 4096;
/// Longest tag key in bytes.
pub const MAX_TAG_KEY_BYTES: usize = 64;
/// Longest tag value in bytes.
pub const MAX_TAG_VALUE_BYTES: usize = 4096;
/// The separator between a stream's prefix and its name.
pub const PATH_SEP: &str = "/+/";

/// Why a name was refused; the message is shown to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

fn err<T>(msg: String) -> Result<T, NameError> {
    Err(NameError(msg))
}

/// A LUCI project name: `^[a-z][a-z0-9_-]{0,99}$`.
pub fn validate_project(project: &str) -> Result<(), NameError> {
    let mut chars = project.chars();
    let first_ok = matches!(chars.next(), Some('a'..='z'));
    let rest_ok = chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'));
    if !first_ok || !rest_ok || project.len() > 100 {
        return err(format!(
            "invalid project name {project:?}: must match ^[a-z][a-z0-9_-]{{0,99}}$"
        ));
    }
    Ok(())
}

fn validate_segment(what: &str, full: &str, segment: &str) -> Result<(), NameError> {
    let mut chars = segment.chars();
    match chars.next() {
        None => return err(format!("invalid {what} {full:?}: empty segment")),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return err(format!(
                "invalid {what} {full:?}: segment {segment:?} must start with a letter or digit"
            ))
        }
        _ => {}
    }
    if let Some(c) =
        chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-')))
    {
        return err(format!(
            "invalid {what} {full:?}: character {c:?} is not allowed (segments are [A-Za-z0-9][A-Za-z0-9:_.-]*)"
        ));
    }
    Ok(())
}

/// Segments of `[A-Za-z0-9][A-Za-z0-9:_.-]*` joined by `/`, at most `max` bytes.
fn validate_segments(what: &str, s: &str, max: usize) -> Result<(), NameError> {
    if s.is_empty() {
        return err(format!("invalid {what}: must not be empty"));
    }
    if s.len() > max {
        return err(format!("invalid {what}: longer than {max} bytes"));
    }
    s.split('/')
        .try_for_each(|seg| validate_segment(what, s, seg))
}

/// A stream name: segments joined by `/`.
pub fn validate_stream_name(name: &str) -> Result<(), NameError> {
    validate_segments("stream name", name, MAX_NAME_BYTES)
}

/// A prefix follows the stream-name rules.
pub fn validate_prefix(prefix: &str) -> Result<(), NameError> {
    validate_segments("prefix", prefix, MAX_NAME_BYTES)
}

/// A tag key follows the stream-name rules and is at most 64 bytes.
pub fn validate_tag(key: &str, value: &str) -> Result<(), NameError> {
    validate_segments("tag key", key, MAX_TAG_KEY_BYTES)?;
    if value.len() > MAX_TAG_VALUE_BYTES {
        return err(format!(
            "invalid tag {key:?}: value longer than {MAX_TAG_VALUE_BYTES} bytes"
        ));
    }
    Ok(())
}

/// A validated stream path `prefix/+/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamPath {
    pub prefix: String,
    pub name: String,
}

impl StreamPath {
    /// Parses and validates `prefix/+/name`.
    pub fn parse(path: &str) -> Result<Self, NameError> {
        if path.len() > MAX_NAME_BYTES {
            return err(format!(
                "invalid stream path: longer than {MAX_NAME_BYTES} bytes"
            ));
        }
        let Some((prefix, name)) = path.split_once(PATH_SEP) else {
            return err(format!(
                "invalid stream path {path:?}: expected PREFIX/+/NAME"
            ));
        };
        Self::new(prefix, name)
    }

    /// Validates the two halves of a path.
    pub fn new(prefix: &str, name: &str) -> Result<Self, NameError> {
        validate_prefix(prefix)?;
        validate_stream_name(name)?;
        let path = Self {
            prefix: prefix.to_owned(),
            name: name.to_owned(),
        };
        if path.to_string().len() > MAX_NAME_BYTES {
            return err(format!(
                "invalid stream path: longer than {MAX_NAME_BYTES} bytes"
            ));
        }
        Ok(path)
    }

    /// The stream id: lowercase hex SHA-256 of the path.
    pub fn id(&self) -> String {
        stream_id(&self.to_string())
    }
}

impl std::fmt::Display for StreamPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}", self.prefix, PATH_SEP, self.name)
    }
}

/// Lowercase hex SHA-256 of a stream path.
pub fn stream_id(path: &str) -> String {
    hex::encode(Sha256::digest(path.as_bytes()))
}

/// A Query name glob: `*` matches one or more characters within one segment; `**` (a
/// whole segment) matches zero or more whole segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameGlob {
    segments: Vec<String>,
}

impl NameGlob {
    pub fn parse(glob: &str) -> Result<Self, NameError> {
        if glob.is_empty() || glob.len() > MAX_NAME_BYTES {
            return err(format!("invalid name glob {glob:?}: empty or too long"));
        }
        for seg in glob.split('/') {
            if seg.is_empty() {
                return err(format!("invalid name glob {glob:?}: empty segment"));
            }
            if seg.contains("**") && seg != "**" {
                return err(format!(
                    "invalid name glob {glob:?}: ** must be a whole segment"
                ));
            }
            if let Some(c) = seg
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-' | '*')))
            {
                return err(format!(
                    "invalid name glob {glob:?}: character {c:?} is not allowed"
                ));
            }
        }
        Ok(Self {
            segments: glob.split('/').map(str::to_owned).collect(),
        })
    }

    /// The glob's literal beginning (before the first wildcard, without a trailing `/`):
    /// every matching name starts with it.
    pub fn literal_prefix(&self) -> String {
        let joined = self.segments.join("/");
        let lit = &joined[..joined.find('*').unwrap_or(joined.len())];
        lit.strip_suffix('/').unwrap_or(lit).to_owned()
    }

    pub fn matches(&self, name: &str) -> bool {
        let parts: Vec<&str> = name.split('/').collect();
        match_segments(&self.segments, &parts)
    }
}

fn match_segments(pattern: &[String], parts: &[&str]) -> bool {
    match pattern.split_first() {
        None => parts.is_empty(),
        Some((p, rest)) if p == "**" => {
            (0..=parts.len()).any(|skip| match_segments(rest, &parts[skip..]))
        }
        Some((p, rest)) => match parts.split_first() {
            Some((part, more)) => {
                match_segment(p.as_bytes(), part.as_bytes()) && match_segments(rest, more)
            }
            None => false,
        },
    }
}

/// `*` matches one or more bytes of one segment.
fn match_segment(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (1..=s.len()).any(|n| match_segment(rest, &s[n..])),
        Some((c, rest)) => s.first() == Some(c) && match_segment(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects() {
        for ok in ["a", "chromium", "v8", "a-b_c", &"a".repeat(100)] {
            assert!(validate_project(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "1abc",
            "-a",
            "a.b",
            "a/b",
            "ab ",
            &"a".repeat(101),
            "é",
        ] {
            assert!(validate_project(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stream_names() {
        for ok in ["stdout", "a/b/c", "steps/compile:1/std.out", "A-1_b.c", "0"] {
            assert!(validate_stream_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "_a", ".a", "a/-b", "a b", "a+b", "+", "é", "a\nb",
        ] {
            assert!(validate_stream_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_stream_name(&"a".repeat(4096)).is_ok());
        assert!(validate_stream_name(&"a".repeat(4097)).is_err());
    }

    #[test]
    fn paths() {
        let p = StreamPath::parse("bb/123/+/steps/compile/stdout").unwrap();
        assert_eq!(p.prefix, "bb/123");
        assert_eq!(p.name, "steps/compile/stdout");
        assert_eq!(p.to_string(), "bb/123/+/steps/compile/stdout");
        for bad in ["bb/123", "/+/name", "bb/+/", "bb/+/+/x", "bb//+/x", "+/x"] {
            assert!(StreamPath::parse(bad).is_err(), "{bad}");
        }
        // The whole path is bounded too, not only each half.
        let long = "a".repeat(3000);
        assert!(StreamPath::new(&long, &long).is_err());
    }

    #[test]
    fn ids_are_sha256_of_the_path() {
        // sha256("test") — a well-known vector.
        assert_eq!(
            stream_id("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        let p = StreamPath::parse("a/+/b").unwrap();
        assert_eq!(p.id(), stream_id("a/+/b"));
    }

    #[test]
    fn name_globs() {
        let m = |g: &str, n: &str| NameGlob::parse(g).unwrap().matches(n);
        assert!(m("**", "a") && m("**", "a/b/c"));
        assert!(m("a/**", "a") && m("a/**", "a/b") && m("a/**", "a/b/c"));
        assert!(!m("a/**", "ab") && !m("a/**", "b/a"));
        assert!(m("*", "stdout") && !m("*", "a/b"));
        assert!(
            m("steps/*/stdout", "steps/compile/stdout") && !m("steps/*/stdout", "steps/stdout")
        );
        assert!(
            m("std*", "stdout") && !m("std*", "std"),
            "* is one or more characters"
        );
        assert!(
            m("**/stdout", "stdout") && m("**/stdout", "a/b/stdout") && !m("**/stdout", "a/stderr")
        );
        assert!(m("a/**/z", "a/z") && m("a/**/z", "a/b/c/z"));
        assert!(m("*o*", "foo") && !m("*o*", "o"));
        for bad in ["", "a//b", "a**", "a/**b", "a b", "/a", "a/"] {
            assert!(NameGlob::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(NameGlob::parse("a/b*").unwrap().literal_prefix(), "a/b");
        assert_eq!(NameGlob::parse("a/**").unwrap().literal_prefix(), "a");
        assert_eq!(NameGlob::parse("**").unwrap().literal_prefix(), "");
        assert_eq!(NameGlob::parse("x/y").unwrap().literal_prefix(), "x/y");
    }

    #[test]
    fn tags() {
        assert!(validate_tag("step", "").is_ok());
        assert!(validate_tag("a/b", "value").is_ok());
        assert!(validate_tag(&"k".repeat(64), "v").is_ok());
        assert!(validate_tag(&"k".repeat(65), "v").is_err());
        assert!(validate_tag("bad key", "v").is_err());
        assert!(validate_tag("", "v").is_err());
        assert!(validate_tag("k", &"v".repeat(4097)).is_err());
    }
}
