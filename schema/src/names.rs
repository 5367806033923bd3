//! LogDog's naming rules: projects, stream names and prefixes, paths (`prefix/+/name`),
//! tag keys, and the stream id (hex SHA-256 of the path).

use sha2::{Digest, Sha256};

/// Longest stream name, prefix or path in bytes (LogDog's limit).
pub const MAX_NAME_BYTES: usize = 4096;
/// Longest tag key in bytes.
pub const MAX_TAG_KEY_BYTES: usize = 64;
/// Longest tag value in bytes.
pub const MAX_TAG_VALUE_BYTES: usize = 4096;
/// Most tags one stream may carry.
pub const MAX_TAGS: usize = 64;
/// Most `tag=` filters one Query may carry.
pub const MAX_TAG_FILTERS: usize = 16;
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
        if path.len() > 2 * MAX_NAME_BYTES + PATH_SEP.len() {
            return err(format!(
                "invalid stream path: longer than a {MAX_NAME_BYTES}-byte prefix and name"
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
        // Each half is bounded on its own, as LogDog does: a whole path may be longer.
        Ok(Self {
            prefix: prefix.to_owned(),
            name: name.to_owned(),
        })
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
///
/// The glob is parsed once into segments and matched as an automaton: the set of glob
/// positions still alive after each name segment, and inside a segment the set of
/// pattern positions after each byte. Time is bounded by the product of the glob's and
/// the name's lengths, never exponential, whatever the glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameGlob {
    segments: Vec<GlobSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobSegment {
    /// `**`: zero or more whole segments.
    AnySegments,
    /// Literal bytes and `*` (one or more bytes of one segment).
    Pattern(Vec<u8>),
}

impl NameGlob {
    /// Parses a glob. Its segments follow the name rules, with `*` allowed anywhere a
    /// character is (`_x` is not a valid segment, `*_x` is).
    pub fn parse(glob: &str) -> Result<Self, NameError> {
        if glob.is_empty() || glob.len() > MAX_NAME_BYTES {
            return err(format!(
                "invalid name glob {glob:?}: empty or longer than {MAX_NAME_BYTES} bytes"
            ));
        }
        let mut segments: Vec<GlobSegment> = Vec::new();
        for seg in glob.split('/') {
            if seg.is_empty() {
                return err(format!("invalid name glob {glob:?}: empty segment"));
            }
            if seg == "**" {
                // `**/**` means the same as `**`.
                if segments.last() != Some(&GlobSegment::AnySegments) {
                    segments.push(GlobSegment::AnySegments);
                }
                continue;
            }
            if seg.contains("**") {
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
            let first = seg.as_bytes()[0];
            if !(first.is_ascii_alphanumeric() || first == b'*') {
                return err(format!(
                    "invalid name glob {glob:?}: segment {seg:?} must start with a letter, a digit or *"
                ));
            }
            segments.push(GlobSegment::Pattern(seg.as_bytes().to_vec()));
        }
        Ok(Self { segments })
    }

    /// The glob's literal beginning (before the first wildcard, without a trailing `/`):
    /// every matching name starts with it.
    pub fn literal_prefix(&self) -> String {
        let mut lit = String::new();
        for seg in &self.segments {
            let GlobSegment::Pattern(p) = seg else { break };
            let text = std::str::from_utf8(p).expect("globs are ASCII");
            if !lit.is_empty() {
                lit.push('/');
            }
            match text.find('*') {
                Some(i) => {
                    lit.push_str(&text[..i]);
                    break;
                }
                None => lit.push_str(text),
            }
        }
        lit.strip_suffix('/').unwrap_or(&lit).to_owned()
    }

    /// Whether `name` matches: one pass over the name's segments, carrying the set of
    /// glob positions that are still alive.
    pub fn matches(&self, name: &str) -> bool {
        let n = self.segments.len();
        let mut alive = vec![false; n + 1];
        alive[0] = true;
        self.close(&mut alive);
        let mut next = vec![false; n + 1];
        for part in name.split('/') {
            next.iter_mut().for_each(|b| *b = false);
            for (i, seg) in self.segments.iter().enumerate() {
                if !alive[i] {
                    continue;
                }
                match seg {
                    GlobSegment::AnySegments => next[i] = true,
                    GlobSegment::Pattern(p) => {
                        if !next[i + 1] && match_segment(p, part.as_bytes()) {
                            next[i + 1] = true;
                        }
                    }
                }
            }
            std::mem::swap(&mut alive, &mut next);
            self.close(&mut alive);
            if !alive.iter().any(|&b| b) {
                return false;
            }
        }
        alive[n]
    }

    /// Adds the positions reachable without consuming a segment (past each `**`).
    fn close(&self, alive: &mut [bool]) {
        for (i, seg) in self.segments.iter().enumerate() {
            if alive[i] && *seg == GlobSegment::AnySegments {
                alive[i + 1] = true;
            }
        }
    }
}

/// Whether one glob segment matches one name segment; `*` matches one or more bytes. A
/// set of pattern positions is carried across the bytes: O(pattern × segment).
fn match_segment(p: &[u8], s: &[u8]) -> bool {
    let n = p.len();
    // at[k]: the first k pattern bytes match the bytes read so far; for a `*` at k-1,
    // "matched" means it has taken at least one byte.
    let mut at = vec![false; n + 1];
    let mut next = vec![false; n + 1];
    at[0] = true;
    for &c in s {
        next.iter_mut().for_each(|b| *b = false);
        for k in 0..n {
            match p[k] {
                b'*' => {
                    // Start the star with this byte, or let it take one more.
                    if at[k] || at[k + 1] {
                        next[k + 1] = true;
                    }
                }
                lit => {
                    if at[k] && lit == c {
                        next[k + 1] = true;
                    }
                }
            }
        }
        std::mem::swap(&mut at, &mut next);
        if !at.iter().any(|&b| b) {
            return false;
        }
    }
    at[n]
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
        // Each half is bounded on its own (LogDog's rule): the whole may be longer.
        let long = "a".repeat(4096);
        assert!(StreamPath::new(&long, &long).is_ok());
        assert!(StreamPath::parse(&format!("{long}/+/{long}")).is_ok());
        assert!(StreamPath::new(&format!("{long}a"), "b").is_err());
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
        for bad in [
            "", "a//b", "a**", "a/**b", "a b", "/a", "a/", "_x", "a/.b", "-*", "a/+/b",
        ] {
            assert!(NameGlob::parse(bad).is_err(), "{bad:?}");
        }
        for ok in ["*_x", "a*b*c", "**/**", "x.y:z-1"] {
            assert!(NameGlob::parse(ok).is_ok(), "{ok:?}");
        }
        assert!(m("a/**/**/z", "a/z") && m("**/**", "q"));
        assert!(m("*a*b", "xaxb") && m("*a*b", "xaab") && !m("*a*b", "aab") && !m("*a*b", "ab"));
        assert!(m("a*", "ab") && !m("a*", "a") && m("*", "x") && !m("x*y", "xy"));
        assert_eq!(NameGlob::parse("a/b*").unwrap().literal_prefix(), "a/b");
        assert_eq!(NameGlob::parse("a/**").unwrap().literal_prefix(), "a");
        assert_eq!(NameGlob::parse("**").unwrap().literal_prefix(), "");
        assert_eq!(NameGlob::parse("x/y").unwrap().literal_prefix(), "x/y");
    }

    /// A glob that backtracks exponentially in a naive matcher answers at once.
    #[test]
    fn hostile_globs_match_in_polynomial_time() {
        let many = format!("{}zz", "**/".repeat(1000));
        let g = NameGlob::parse(&many).unwrap();
        assert!(!g.matches("a/b/c/d/e"));
        assert!(g.matches("a/b/zz"));
        let stars = format!("{}b", "*a".repeat(1000));
        let g = NameGlob::parse(&stars).unwrap();
        assert!(!g.matches(&"a".repeat(3000)));
        assert!(g.matches(&format!("{}b", "xa".repeat(1000))));
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
