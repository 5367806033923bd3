//! Collapsible-section outlines for CI logs (std only).
//!
//! [`Outline`] is fed a stream's text entries in order ([`Outline::push_entry`]) and
//! keeps the outline of the collapsible sections the log declares with GitLab,
//! GitHub Actions or Buildkite markup. It is incremental: between calls it holds only
//! the outline, the stack of open sections and at most one pending partial line
//! (capped at [`MAX_LINE_BYTES`]); [`Outline::state_bytes`] /
//! [`Outline::from_state_bytes`] persist and resume it.
//!
//! Lines are numbered from 0 across the stream. A line split over several entries
//! (empty delimiter) is joined before recognition, is numbered where it starts and
//! ends in the entry holding its delimiter. Lines longer than [`MAX_LINE_BYTES`] are
//! never markers.
//!
//! # Markup rules
//!
//! * **GitLab** (docs.gitlab.com "CI/CD job logs", custom collapsible sections; and
//!   GitLab's `Ansi2json::Converter`/`Gitlab::Regex.build_trace_section_regex`):
//!   `section_(start|end):TS:NAME[opts]\r\e[0K` where TS is `\d+`, NAME is
//!   `[A-Za-z0-9_.-]+`, opts is optional `[k=v(, ?k=v)*]` (`\w` keys/values) and the
//!   trailing `\r\e[0K` is mandatory. GitLab tries the pattern at every position of a
//!   line (escape sequences are skipped as units), so a token is recognised mid-line
//!   too, but a line that merely *mentions* `section_start:1:x` without the exact
//!   suffix is ordinary text. The header text is what follows the token (ANSI
//!   stripped; NAME if empty). `collapsed=true` folds the section by default,
//!   `hide_duration=true` is reported. An end closes the innermost open GitLab
//!   section of that name (names compared the way GitLab sanitises them:
//!   lowercased, anything outside `[a-z0-9]` as `-`) and whatever was opened inside
//!   it; an end for a name that is not open is ignored. Deviations, chosen for a
//!   well-nested outline: GitLab keeps sections in a map, so closing an outer section
//!   leaves inner ones open and a repeated start just restarts the entry; here inner
//!   sections close with their parent and a start whose name is already open closes
//!   that section (at the previous line) and opens a new one in its place.
//!   Times: TS seconds × 10⁶.
//! * **GitHub Actions** (docs.github.com "Workflow commands", grouping log lines; the
//!   runner's `ActionCommand.TryParseV2`): after trimming leading whitespace a line
//!   starting `::group::TITLE` opens a group and `::endgroup::` closes it; command
//!   names are case-insensitive, properties (`::group k=v::`) are allowed, the title
//!   is unescaped (`%25`, `%0D`, `%0A`). The runner's own output form `##[group]TITLE`
//!   / `##[endgroup]` is accepted as well. Groups do not nest on GitHub
//!   (actions/runner#802, actions/runner#1477, rust-lang/rust#114062), so a group
//!   opened while one is open closes the open one at the previous line. Groups are
//!   collapsed by default. `::stop-commands::TOKEN` … `::TOKEN::` suspends `::`
//!   commands as the runner does. Times: entry time.
//! * **Buildkite** (buildkite.com/docs "Managing log output"; the agent's header
//!   regex `^(?:---|\+\+\+|~~~)\s(.+)?$` applied after removing colour codes): a line
//!   starting `--- ` (collapsed), `+++ ` (expanded) or `~~~ ` (collapsed and
//!   de-emphasised, i.e. rendered non-bold) starts a section and closes the previous
//!   Buildkite section at the previous line; the title may be empty. No leading
//!   whitespace is allowed. `^^^ +++` alone on a line expands the open Buildkite
//!   section. At [`Outline::finish`], if no Buildkite section ended up expanded,
//!   the last `---` section is expanded, as Buildkite does. Times: entry time.
//!
//! ANSI escape sequences (CSI, OSC, other ESC sequences, C1 forms) are removed for
//! GitHub/Buildkite recognition and from all titles.
//!
//! A section's `first_index` is the entry where its opening line starts; its
//! `last_index` is the entry where its closing line ends. Entry times used for
//! GitHub/Buildkite are those of the entry where the marker line starts.

use std::borrow::Cow;

/// At most this many sections are kept per stream; later starts are counted in
/// [`Outline::dropped`].
pub const MAX_SECTIONS: usize = 10_000;
/// A line (joined from partial pieces) longer than this is not a marker and is not
/// buffered.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Longest accepted `::stop-commands::` token.
const MAX_STOP_TOKEN: usize = 1024;

/// The markup family a section was declared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Markup {
    GitLab,
    GitHub,
    Buildkite,
}

impl Markup {
    const ALL: u8 = 0b111;

    fn bit(self) -> u8 {
        match self {
            Markup::GitLab => 1,
            Markup::GitHub => 2,
            Markup::Buildkite => 4,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(Markup::GitLab),
            1 => Some(Markup::GitHub),
            2 => Some(Markup::Buildkite),
            _ => None,
        }
    }

    fn tag(self) -> u8 {
        match self {
            Markup::GitLab => 0,
            Markup::GitHub => 1,
            Markup::Buildkite => 2,
        }
    }
}

/// One collapsible section of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// GitLab: NAME as written (GitLab logs may reuse a name for sequential
    /// sections). GitHub/Buildkite: `github:N` / `buildkite:N`, N being the index
    /// in [`Outline::sections`]; `:` cannot occur in GitLab names, so these are unique.
    pub name: String,
    /// Header text, ANSI stripped and trimmed.
    pub title: String,
    pub markup: Markup,
    /// 0 = top level.
    pub depth: u32,
    /// Index of the enclosing section in [`Outline::sections`].
    pub parent: Option<usize>,
    /// The marker line that opens the section.
    pub first_line: u64,
    /// Stream index of the entry where `first_line` starts.
    pub first_index: u64,
    /// The closing line: the end marker line, the line before the marker that
    /// implicitly closed it, or the stream's last line (see [`Outline::finish`]).
    /// `None` while open.
    pub last_line: Option<u64>,
    /// Stream index of the entry where `last_line` ends.
    pub last_index: Option<u64>,
    pub start_us: Option<i64>,
    pub end_us: Option<i64>,
    /// Folded by default.
    pub collapsed: bool,
    /// Buildkite `~~~`: de-emphasised header.
    pub deemphasized: bool,
    /// GitLab `hide_duration=true`.
    pub hide_duration: bool,
    /// Closed by [`Outline::finish`] rather than by markup.
    pub closed_at_eof: bool,
}

/// What a marker line does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    Start,
    End,
    /// Buildkite `^^^ +++`: expand the open section.
    Expand,
}

/// A recognised marker line, as returned by [`Outline::classify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub markup: Markup,
    pub kind: MarkerKind,
    /// GitLab NAME.
    pub name: Option<String>,
    /// Header text for `Start` (GitLab falls back to NAME); empty otherwise.
    pub title: String,
    /// `Start`: folded by default.
    pub collapsed: bool,
    /// Buildkite `~~~`.
    pub deemphasized: bool,
    /// GitLab `hide_duration=true`.
    pub hide_duration: bool,
    /// GitLab only: visible text before the first token (GitLab shows it as a line of
    /// its own). Usually empty.
    pub leading_text: String,
}

/// The section outline of one stream plus the parser state needed to continue it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outline {
    /// Sections in order of their opening line.
    pub sections: Vec<Section>,
    /// Section starts ignored because [`MAX_SECTIONS`] was reached.
    pub dropped: u64,
    /// Indices of open sections, outermost first; each is the parent of the next.
    stack: Vec<usize>,
    pending: Option<Pending>,
    next_line: u64,
    /// Entry where the most recently completed line ended.
    prev_line_end_index: Option<u64>,
    /// (stream index, time) of the last entry fed.
    last_entry: Option<(u64, i64)>,
    gh_stop_token: Option<String>,
    enabled: u8,
    finished: bool,
}

/// A partial line waiting for its delimiter.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    text: String,
    /// Longer than [`MAX_LINE_BYTES`]: `text` is dropped, the line is not a marker.
    overflow: bool,
    first_index: u64,
    last_index: u64,
    time_us: i64,
}

impl Pending {
    fn append(&mut self, piece: &str, index: u64) {
        self.last_index = index;
        if self.overflow {
            return;
        }
        if self.text.len() + piece.len() > MAX_LINE_BYTES {
            self.overflow = true;
            self.text = String::new();
        } else {
            self.text.push_str(piece);
        }
    }
}

/// Where a completed line sits in the stream.
#[derive(Debug, Clone, Copy)]
struct LineCtx {
    line: u64,
    first_index: u64,
    end_index: u64,
    time_us: i64,
}

impl Default for Outline {
    fn default() -> Self {
        Self::new()
    }
}

impl Outline {
    /// An empty outline recognising all three markups.
    pub fn new() -> Self {
        Self::with_markups(&[Markup::GitLab, Markup::GitHub, Markup::Buildkite])
    }

    /// An empty outline recognising only `markups` (e.g. a GitHub log that prints
    /// unified diffs, whose `--- a/file` lines would otherwise be Buildkite headers).
    pub fn with_markups(markups: &[Markup]) -> Self {
        Outline {
            sections: Vec::new(),
            dropped: 0,
            stack: Vec::new(),
            pending: None,
            next_line: 0,
            prev_line_end_index: None,
            last_entry: None,
            gh_stop_token: None,
            enabled: markups.iter().fold(0, |m, k| m | k.bit()),
            finished: false,
        }
    }

    /// Number of complete lines seen so far (a pending partial line is not counted).
    pub fn lines_seen(&self) -> u64 {
        self.next_line
    }

    /// Indices of the open sections, outermost first.
    pub fn open_sections(&self) -> &[usize] {
        &self.stack
    }

    /// Index of the first section opened by `line`, if any.
    pub fn section_at_line(&self, line: u64) -> Option<usize> {
        let i = self.sections.partition_point(|s| s.first_line < line);
        self.sections
            .get(i)
            .filter(|s| s.first_line == line)
            .map(|_| i)
    }

    /// Feeds one entry's text lines; `lines` yields (value, delimiter) pairs, an empty
    /// delimiter meaning the line continues in the next entry. Ignored after
    /// [`finish`](Self::finish).
    pub fn push_entry<'a>(
        &mut self,
        stream_index: u64,
        time_us: i64,
        lines: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        self.push(stream_index, None, time_us, lines)
    }

    /// [`push_entry`](Self::push_entry) numbering lines the way a stream's entries do:
    /// `sequence` is the entry's sequence (the number of line pieces before it), and a
    /// line that starts at the entry's piece k is line `sequence + k` (a line joined from
    /// several pieces keeps the number of its first). Gaps in the numbering are allowed.
    pub fn push_entry_numbered<'a>(
        &mut self,
        stream_index: u64,
        sequence: u64,
        time_us: i64,
        lines: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        self.push(stream_index, Some(sequence), time_us, lines)
    }

    fn push<'a>(
        &mut self,
        stream_index: u64,
        sequence: Option<u64>,
        time_us: i64,
        lines: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        if self.finished {
            return;
        }
        self.last_entry = Some((stream_index, time_us));
        for (k, (value, delimiter)) in lines.into_iter().enumerate() {
            if let (Some(seq), None) = (sequence, &self.pending) {
                self.next_line = seq + k as u64;
            }
            let complete = !delimiter.is_empty();
            match self.pending.take() {
                Some(mut p) => {
                    p.append(value, stream_index);
                    if !complete {
                        self.pending = Some(p);
                        continue;
                    }
                    let ctx = LineCtx {
                        line: self.next_line,
                        first_index: p.first_index,
                        end_index: stream_index,
                        time_us: p.time_us,
                    };
                    let text = (!p.overflow).then_some(p.text.as_str());
                    self.complete_line(text, ctx);
                }
                None if !complete => {
                    let mut p = Pending {
                        text: String::new(),
                        overflow: false,
                        first_index: stream_index,
                        last_index: stream_index,
                        time_us,
                    };
                    p.append(value, stream_index);
                    self.pending = Some(p);
                }
                None => {
                    let ctx = LineCtx {
                        line: self.next_line,
                        first_index: stream_index,
                        end_index: stream_index,
                        time_us,
                    };
                    let text = (value.len() <= MAX_LINE_BYTES).then_some(value);
                    self.complete_line(text, ctx);
                }
            }
        }
    }

    /// Marks the stream ended: a pending partial line is taken as the last line, and
    /// every section still open is closed at the stream's last line (`last_line`,
    /// `last_index` of that line, `end_us` = time of the last entry) with
    /// `closed_at_eof` set, so a viewer can fold every section by its line range and
    /// still tell an unterminated GitLab/GitHub section apart. Then Buildkite's
    /// "expand the last `---` group if none is expanded" rule is applied.
    /// Idempotent; later entries are ignored.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        if let Some(p) = self.pending.take() {
            let ctx = LineCtx {
                line: self.next_line,
                first_index: p.first_index,
                end_index: p.last_index,
                time_us: p.time_us,
            };
            let text = (!p.overflow).then_some(p.text.as_str());
            self.complete_line(text, ctx);
        }
        if self.next_line > 0 {
            let last_line = self.next_line - 1;
            let last_index = self.prev_line_end_index.unwrap_or(0);
            let end_us = self.last_entry.map(|(_, t)| t);
            for idx in self.stack.drain(..) {
                if let Some(s) = self.sections.get_mut(idx) {
                    s.last_line = Some(last_line);
                    s.last_index = Some(last_index);
                    s.end_us = end_us;
                    s.closed_at_eof = true;
                }
            }
        }
        let buildkite = |s: &&Section| s.markup == Markup::Buildkite;
        if self.sections.iter().filter(buildkite).all(|s| s.collapsed) {
            if let Some(s) = self
                .sections
                .iter_mut()
                .rev()
                .find(|s| s.markup == Markup::Buildkite && !s.deemphasized)
            {
                s.collapsed = false;
            }
        }
        self.finished = true;
    }

    /// Recognises a marker line (any markup; stateless, so GitHub `stop-commands`
    /// and [`with_markups`](Self::with_markups) are not taken into account — consult
    /// the outline for what actually opened or closed a section). For a GitLab line
    /// holding several tokens this describes the last start token, or else the first
    /// end token.
    pub fn classify(line: &str) -> Option<Marker> {
        let marker = |markup, kind| Marker {
            markup,
            kind,
            name: None,
            title: String::new(),
            collapsed: false,
            deemphasized: false,
            hide_duration: false,
            leading_text: String::new(),
        };
        if line.len() > MAX_LINE_BYTES {
            return None;
        }
        match scan_line(line, Markup::ALL) {
            Scan::Plain => None,
            Scan::GitLab { leading, tokens } => {
                let tok = tokens
                    .iter()
                    .rev()
                    .find(|t| t.start)
                    .or_else(|| tokens.first())?;
                let kind = if tok.start {
                    MarkerKind::Start
                } else {
                    MarkerKind::End
                };
                Some(Marker {
                    name: Some(tok.name.clone()),
                    title: if tok.start {
                        tok.title.clone()
                    } else {
                        String::new()
                    },
                    collapsed: tok.collapsed,
                    hide_duration: tok.hide_duration,
                    leading_text: leading,
                    ..marker(Markup::GitLab, kind)
                })
            }
            Scan::GitHub(cmd) => match cmd.action() {
                GhAction::Group(title) => Some(Marker {
                    title,
                    collapsed: true,
                    ..marker(Markup::GitHub, MarkerKind::Start)
                }),
                GhAction::EndGroup => Some(marker(Markup::GitHub, MarkerKind::End)),
                GhAction::Other => None,
            },
            Scan::Buildkite(BkLine::Header {
                expanded,
                deemphasized,
                title,
            }) => Some(Marker {
                title,
                collapsed: !expanded,
                deemphasized,
                ..marker(Markup::Buildkite, MarkerKind::Start)
            }),
            Scan::Buildkite(BkLine::Expand) => Some(marker(Markup::Buildkite, MarkerKind::Expand)),
        }
    }

    fn complete_line(&mut self, text: Option<&str>, ctx: LineCtx) {
        if let Some(text) = text {
            self.process_line(text, ctx);
        }
        self.prev_line_end_index = Some(ctx.end_index);
        self.next_line += 1;
    }

    fn process_line(&mut self, raw: &str, ctx: LineCtx) {
        match scan_line(raw, self.enabled) {
            Scan::Plain => {}
            Scan::GitLab { tokens, .. } => {
                for tok in tokens {
                    let open = self.find_open(|s| {
                        s.markup == Markup::GitLab && same_gitlab_name(&s.name, &tok.name)
                    });
                    let ts_us = tok.ts.and_then(|t| t.checked_mul(1_000_000));
                    if tok.start {
                        if let Some(pos) = open {
                            self.close_from(pos, ctx, false, ts_us);
                        }
                        self.open(Section {
                            name: tok.name,
                            title: tok.title,
                            markup: Markup::GitLab,
                            collapsed: tok.collapsed,
                            hide_duration: tok.hide_duration,
                            start_us: ts_us,
                            ..blank_section(ctx)
                        });
                    } else if let Some(pos) = open {
                        self.close_from(pos, ctx, true, ts_us);
                    }
                }
            }
            Scan::GitHub(cmd) => {
                if !cmd.legacy {
                    if let Some(token) = &self.gh_stop_token {
                        if cmd.name.eq_ignore_ascii_case(token) {
                            self.gh_stop_token = None;
                        }
                        return;
                    }
                    if cmd.name.eq_ignore_ascii_case("stop-commands") {
                        let token = cmd.data.trim();
                        if !token.is_empty() && token.len() <= MAX_STOP_TOKEN {
                            self.gh_stop_token = Some(token.to_owned());
                        }
                        return;
                    }
                }
                let open = self.find_open(|s| s.markup == Markup::GitHub);
                match cmd.action() {
                    GhAction::Group(title) => {
                        if let Some(pos) = open {
                            self.close_from(pos, ctx, false, Some(ctx.time_us));
                        }
                        self.open(Section {
                            title,
                            markup: Markup::GitHub,
                            collapsed: true,
                            start_us: Some(ctx.time_us),
                            ..blank_section(ctx)
                        });
                    }
                    GhAction::EndGroup => {
                        if let Some(pos) = open {
                            self.close_from(pos, ctx, true, Some(ctx.time_us));
                        }
                    }
                    GhAction::Other => {}
                }
            }
            Scan::Buildkite(line) => {
                let open = self.find_open(|s| s.markup == Markup::Buildkite);
                match line {
                    BkLine::Header {
                        expanded,
                        deemphasized,
                        title,
                    } => {
                        if let Some(pos) = open {
                            self.close_from(pos, ctx, false, Some(ctx.time_us));
                        }
                        self.open(Section {
                            title,
                            markup: Markup::Buildkite,
                            collapsed: !expanded,
                            deemphasized,
                            start_us: Some(ctx.time_us),
                            ..blank_section(ctx)
                        });
                    }
                    BkLine::Expand => {
                        let idx = open.and_then(|pos| self.stack.get(pos).copied());
                        if let Some(s) = idx.and_then(|i| self.sections.get_mut(i)) {
                            s.collapsed = false;
                        }
                    }
                }
            }
        }
    }

    /// Position in the stack of the innermost open section matching `pred`.
    fn find_open(&self, pred: impl Fn(&Section) -> bool) -> Option<usize> {
        self.stack
            .iter()
            .rposition(|&i| self.sections.get(i).is_some_and(&pred))
    }

    /// Opens `section` inside the innermost open section (or counts it as dropped).
    fn open(&mut self, mut section: Section) {
        if self.sections.len() >= MAX_SECTIONS {
            self.dropped += 1;
            return;
        }
        let idx = self.sections.len();
        section.parent = self.stack.last().copied();
        section.depth = u32::try_from(self.stack.len()).unwrap_or(u32::MAX);
        match section.markup {
            Markup::GitLab => {}
            Markup::GitHub => section.name = format!("github:{idx}"),
            Markup::Buildkite => section.name = format!("buildkite:{idx}"),
        }
        self.sections.push(section);
        self.stack.push(idx);
    }

    /// Closes the open sections from stack position `pos` inward. `inclusive`: they
    /// end at the current line (an end marker); otherwise at the line before it (the
    /// current line opens a new section), unless they started on this very line.
    fn close_from(&mut self, pos: usize, ctx: LineCtx, inclusive: bool, end_us: Option<i64>) {
        let prev_end = self.prev_line_end_index.unwrap_or(ctx.first_index);
        for idx in self.stack.drain(pos..) {
            if let Some(s) = self.sections.get_mut(idx) {
                let (line, index) = if inclusive || s.first_line >= ctx.line {
                    (ctx.line, ctx.end_index)
                } else {
                    (ctx.line - 1, prev_end)
                };
                s.last_line = Some(line);
                s.last_index = Some(index);
                s.end_us = end_us;
            }
        }
    }
}

fn blank_section(ctx: LineCtx) -> Section {
    Section {
        name: String::new(),
        title: String::new(),
        markup: Markup::GitLab,
        depth: 0,
        parent: None,
        first_line: ctx.line,
        first_index: ctx.first_index,
        last_line: None,
        last_index: None,
        start_us: None,
        end_us: None,
        collapsed: false,
        deemphasized: false,
        hide_duration: false,
        closed_at_eof: false,
    }
}

/// GitLab compares section names after `downcase.gsub(/[^a-z0-9]/, '-')`.
fn same_gitlab_name(a: &str, b: &str) -> bool {
    let norm = |c: u8| {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            b'-'
        }
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| norm(x) == norm(y))
}

// ---------------------------------------------------------------------------
// Line recognition

#[derive(Debug)]
struct GlToken {
    start: bool,
    ts: Option<i64>,
    name: String,
    collapsed: bool,
    hide_duration: bool,
    /// Start tokens: cleaned text up to the next token or the end of the line,
    /// NAME if empty.
    title: String,
}

#[derive(Debug)]
struct GhCommand {
    name: String,
    data: String,
    /// `##[name]data` (runner output) rather than `::name::data`.
    legacy: bool,
}

enum GhAction {
    Group(String),
    EndGroup,
    Other,
}

impl GhCommand {
    fn action(&self) -> GhAction {
        if self.name.eq_ignore_ascii_case("group") {
            let title = if self.legacy {
                clean_title(&self.data)
            } else {
                clean_title(&unescape_gh_data(&self.data))
            };
            GhAction::Group(title)
        } else if self.name.eq_ignore_ascii_case("endgroup") {
            GhAction::EndGroup
        } else {
            GhAction::Other
        }
    }
}

#[derive(Debug)]
enum BkLine {
    Header {
        expanded: bool,
        deemphasized: bool,
        title: String,
    },
    Expand,
}

#[derive(Debug)]
enum Scan {
    Plain,
    GitLab {
        leading: String,
        tokens: Vec<GlToken>,
    },
    GitHub(GhCommand),
    Buildkite(BkLine),
}

/// Recognises the markups enabled in `mask` (bits of [`Markup::bit`]).
fn scan_line(raw: &str, mask: u8) -> Scan {
    if mask & Markup::GitLab.bit() != 0 {
        if let Some((leading, tokens)) = scan_gitlab(raw) {
            return Scan::GitLab { leading, tokens };
        }
    }
    if mask & (Markup::GitHub.bit() | Markup::Buildkite.bit()) == 0 || !may_start_a_marker(raw) {
        return Scan::Plain;
    }
    let text = strip_ansi(raw);
    if mask & Markup::GitHub.bit() != 0 {
        if let Some(cmd) = scan_github(&text) {
            return Scan::GitHub(cmd);
        }
    }
    if mask & Markup::Buildkite.bit() != 0 {
        if let Some(line) = scan_buildkite(&text) {
            return Scan::Buildkite(line);
        }
    }
    Scan::Plain
}

/// Whether a line can be a GitHub or Buildkite marker at all: its first byte after
/// leading whitespace (as the GitHub rule trims it) starts a command (`:`, `#`), a header (`-`, `+`, `~`, `^`) or an
/// escape sequence (ESC, or U+0080–U+009F's lead byte 0xC2) that may hide one. Most lines
/// are told apart here without removing their escape codes.
fn may_start_a_marker(raw: &str) -> bool {
    raw.trim_start()
        .as_bytes()
        .first()
        .is_some_and(|b| matches!(b, b':' | b'#' | b'-' | b'+' | b'~' | b'^' | 0x1b | 0xc2))
}

/// All GitLab tokens of a line, scanning like GitLab's converter: at each position
/// try a token, else skip an escape sequence as a unit, else one byte.
fn scan_gitlab(raw: &str) -> Option<(String, Vec<GlToken>)> {
    if !raw.contains("section_") {
        return None;
    }
    let b = raw.as_bytes();
    let mut tokens: Vec<GlToken> = Vec::new();
    let mut leading = String::new();
    let mut seg_start = 0;
    let mut i = 0;
    let mut set_text = |tokens: &mut Vec<GlToken>, text: &str| match tokens.last_mut() {
        None => leading = clean_title(text),
        Some(t) if t.start => {
            t.title = clean_title(text);
            if t.title.is_empty() {
                t.title = t.name.clone();
            }
        }
        Some(_) => {}
    };
    while i < b.len() {
        if b[i] == b's' {
            if let Some((tok, end)) = parse_gitlab_token(b, i) {
                // Token boundaries are ASCII, so these slices are on char boundaries.
                set_text(&mut tokens, raw.get(seg_start..i).unwrap_or(""));
                tokens.push(tok);
                i = end;
                seg_start = end;
                continue;
            }
        }
        if b[i] == 0x1b {
            // GitLab: /\e([@-_])(.*?)([@-~])/ is skipped; an unterminated one ends the line.
            match b.get(i + 1) {
                Some(&c) if (0x40..=0x5f).contains(&c) => {
                    match b[i + 2..]
                        .iter()
                        .position(|&c| (0x40..=0x7e).contains(&c) || c == b'\n')
                    {
                        Some(off) if b[i + 2 + off] != b'\n' => i += 3 + off,
                        _ => break,
                    }
                }
                None => break,
                Some(_) => i += 1,
            }
            continue;
        }
        i += 1;
    }
    if tokens.is_empty() {
        return None;
    }
    set_text(&mut tokens, raw.get(seg_start..).unwrap_or(""));
    Some((leading, tokens))
}

/// `section_(start|end):\d+:[A-Za-z0-9_.-]+(\[\w+=\w+(, ?\w+=\w+)*\])?\r\e[0K` at
/// `at`; returns the token and the offset just past it.
fn parse_gitlab_token(b: &[u8], at: usize) -> Option<(GlToken, usize)> {
    let rest = b.get(at..)?;
    let (start, mut i) = if rest.starts_with(b"section_start:") {
        (true, 14)
    } else if rest.starts_with(b"section_end:") {
        (false, 12)
    } else {
        return None;
    };
    let span = |i: usize, pred: fn(u8) -> bool| {
        i + rest
            .get(i..)
            .map_or(0, |r| r.iter().take_while(|&&c| pred(c)).count())
    };
    let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let ts_end = span(i, |c| c.is_ascii_digit());
    if ts_end == i || rest.get(ts_end) != Some(&b':') {
        return None;
    }
    let ts = std::str::from_utf8(&rest[i..ts_end])
        .ok()?
        .parse::<i64>()
        .ok();
    i = ts_end + 1;
    let name_end = span(i, |c| {
        c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')
    });
    if name_end == i {
        return None;
    }
    let name = std::str::from_utf8(&rest[i..name_end]).ok()?.to_owned();
    i = name_end;
    let (mut collapsed, mut hide_duration) = (false, false);
    if rest.get(i) == Some(&b'[') {
        i += 1;
        loop {
            let key_end = span(i, is_word);
            if key_end == i || rest.get(key_end) != Some(&b'=') {
                return None;
            }
            let value_end = span(key_end + 1, is_word);
            if value_end == key_end + 1 {
                return None;
            }
            let value = &rest[key_end + 1..value_end];
            match &rest[i..key_end] {
                b"collapsed" => collapsed = value == b"true",
                b"hide_duration" => hide_duration = value == b"true",
                _ => {}
            }
            i = value_end;
            match rest.get(i) {
                Some(b',') => {
                    i += 1;
                    if rest.get(i) == Some(&b' ') {
                        i += 1;
                    }
                }
                Some(b']') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    if !rest.get(i..)?.starts_with(b"\r\x1b[0K") {
        return None;
    }
    let tok = GlToken {
        start,
        ts,
        name,
        collapsed,
        hide_duration,
        title: String::new(),
    };
    Some((tok, at + i + 5))
}

/// `::name[ props]::data` or `##[name[ props]]data` after leading whitespace.
fn scan_github(text: &str) -> Option<GhCommand> {
    let t = text.trim_start();
    let (info, data, legacy) = if let Some(rest) = t.strip_prefix("::") {
        let end = rest.find("::")?;
        (&rest[..end], &rest[end + 2..], false)
    } else if let Some(rest) = t.strip_prefix("##[") {
        let end = rest.find(']')?;
        (&rest[..end], &rest[end + 1..], true)
    } else {
        return None;
    };
    let name = info.split(' ').next().unwrap_or(info);
    if name.is_empty() {
        return None;
    }
    Some(GhCommand {
        name: name.to_owned(),
        data: data.to_owned(),
        legacy,
    })
}

/// The runner's data unescaping: `%0D` → CR, `%0A` → LF, `%25` → `%`.
fn unescape_gh_data(s: &str) -> String {
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

fn scan_buildkite(text: &str) -> Option<BkLine> {
    if text.trim_end() == "^^^ +++" {
        return Some(BkLine::Expand);
    }
    let b = text.as_bytes();
    let (expanded, deemphasized) = match b.get(..3)? {
        b"---" => (false, false),
        b"+++" => (true, false),
        b"~~~" => (false, true),
        _ => return None,
    };
    // Go's \s: [\t\n\f\r ]
    if !matches!(b.get(3), Some(b' ' | b'\t' | b'\n' | 0x0c | b'\r')) {
        return None;
    }
    Some(BkLine::Header {
        expanded,
        deemphasized,
        title: clean_title(text.get(4..).unwrap_or("")),
    })
}

/// Removes ANSI escape sequences: CSI (`ESC [` / U+009B), OSC, DCS, SOS, PM, APC
/// (terminated by BEL or ST, or the end of the line) and other ESC sequences.
pub fn strip_ansi(s: &str) -> Cow<'_, str> {
    let starts_escape = |c: char| c == '\x1b' || ('\u{90}'..='\u{9f}').contains(&c);
    if !s.chars().any(starts_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    let skip_csi = |it: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while it.next_if(|c| ('\x20'..='\x3f').contains(c)).is_some() {}
        it.next_if(|c| ('\x40'..='\x7e').contains(c));
    };
    let skip_string = |it: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while let Some(c) = it.next() {
            match c {
                '\x07' | '\u{9c}' => break,
                '\x1b' => {
                    it.next_if_eq(&'\\');
                    break;
                }
                _ => {}
            }
        }
    };
    while let Some(c) = it.next() {
        match c {
            '\x1b' => match it.peek().copied() {
                Some('[') => {
                    it.next();
                    skip_csi(&mut it);
                }
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    it.next();
                    skip_string(&mut it);
                }
                Some('\x20'..='\x2f') => {
                    while it.next_if(|c| ('\x20'..='\x2f').contains(c)).is_some() {}
                    it.next_if(|c| ('\x30'..='\x7e').contains(c));
                }
                Some('\x30'..='\x7e') => {
                    it.next();
                }
                _ => {}
            },
            '\u{9b}' => skip_csi(&mut it),
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_string(&mut it),
            '\u{80}'..='\u{9f}' => {}
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// ANSI stripped, whitespace controls as spaces, other controls dropped, trimmed.
fn clean_title(s: &str) -> String {
    let stripped = strip_ansi(s);
    let mut out = String::with_capacity(stripped.len());
    for c in stripped.chars() {
        match c {
            '\t' | '\n' | '\r' | '\x0c' | '\x0b' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    let trimmed = out.trim();
    if trimmed.len() == out.len() {
        out
    } else {
        trimmed.to_owned()
    }
}

// ---------------------------------------------------------------------------
// Persistence: a small little-endian binary encoding.
//
//   "LDSO" version:u8 flags:u8 next_line:u64 dropped:u64
//   last_entry:opt(u64,i64) prev_line_end_index:opt(u64)
//   pending:opt(first_index:u64 last_index:u64 time:i64 overflow:u8 text:str)
//   gh_stop_token:opt(str)
//   sections:u32 × (name:str title:str markup:u8 bits:u8 depth:u32 parent:opt(u32)
//                   first_line:u64 first_index:u64 last_line:opt(u64)
//                   last_index:opt(u64) start_us:opt(i64) end_us:opt(i64))
//   stack:u32 × u32
//
// str = u32 length + UTF-8 bytes; opt = 0 | 1 value.

const MAGIC: &[u8; 4] = b"LDSO";
const VERSION: u8 = 1;

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        // Every length written is bounded by MAX_SECTIONS or MAX_LINE_BYTES.
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn len(&mut self, max: usize) -> Option<usize> {
        let n = usize::try_from(self.u32()?).ok()?;
        (n <= max).then_some(n)
    }
    fn str(&mut self) -> Option<String> {
        let n = self.len(MAX_LINE_BYTES)?;
        Some(std::str::from_utf8(self.take(n)?).ok()?.to_owned())
    }
    fn bool(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.bool()? {
            f(self).map(Some)
        } else {
            Some(None)
        }
    }
}

impl Outline {
    /// Serialises the outline and parser state (see [`from_state_bytes`](Self::from_state_bytes)).
    pub fn state_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(64 + self.sections.len() * 80));
        w.0.extend_from_slice(MAGIC);
        w.u8(VERSION);
        w.u8(self.enabled | if self.finished { 0x80 } else { 0 });
        w.u64(self.next_line);
        w.u64(self.dropped);
        w.opt(self.last_entry, |w, (i, t)| {
            w.u64(i);
            w.i64(t);
        });
        w.opt(self.prev_line_end_index, Writer::u64);
        w.opt(self.pending.as_ref(), |w, p| {
            w.u64(p.first_index);
            w.u64(p.last_index);
            w.i64(p.time_us);
            w.u8(u8::from(p.overflow));
            w.str(&p.text);
        });
        w.opt(self.gh_stop_token.as_deref(), Writer::str);
        w.len(self.sections.len());
        for s in &self.sections {
            w.str(&s.name);
            w.str(&s.title);
            w.u8(s.markup.tag());
            w.u8(u8::from(s.collapsed)
                | u8::from(s.deemphasized) << 1
                | u8::from(s.hide_duration) << 2
                | u8::from(s.closed_at_eof) << 3);
            w.u32(s.depth);
            w.opt(s.parent, |w, p| w.len(p));
            w.u64(s.first_line);
            w.u64(s.first_index);
            w.opt(s.last_line, Writer::u64);
            w.opt(s.last_index, Writer::u64);
            w.opt(s.start_us, Writer::i64);
            w.opt(s.end_us, Writer::i64);
        }
        w.len(self.stack.len());
        for &i in &self.stack {
            w.len(i);
        }
        w.0
    }

    /// Restores an outline from [`state_bytes`](Self::state_bytes). Returns `None`
    /// for anything malformed or inconsistent (bad magic/version, truncation,
    /// trailing bytes, invalid UTF-8, out-of-range indices, a broken open stack).
    pub fn from_state_bytes(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC || r.u8()? != VERSION {
            return None;
        }
        let flags = r.u8()?;
        if flags & 0x78 != 0 {
            return None;
        }
        let next_line = r.u64()?;
        let dropped = r.u64()?;
        let last_entry = r.opt(|r| Some((r.u64()?, r.i64()?)))?;
        let prev_line_end_index = r.opt(Reader::u64)?;
        let pending = r.opt(|r| {
            let first_index = r.u64()?;
            let last_index = r.u64()?;
            let time_us = r.i64()?;
            let overflow = r.bool()?;
            let text = r.str()?;
            (!overflow || text.is_empty()).then_some(Pending {
                text,
                overflow,
                first_index,
                last_index,
                time_us,
            })
        })?;
        let gh_stop_token = r.opt(Reader::str)?;
        let count = r.len(MAX_SECTIONS)?;
        let mut sections: Vec<Section> = Vec::with_capacity(count);
        for idx in 0..count {
            let name = r.str()?;
            let title = r.str()?;
            let markup = Markup::from_tag(r.u8()?)?;
            let bits = r.u8()?;
            if bits & !0x0f != 0 {
                return None;
            }
            let depth = r.u32()?;
            let parent = r.opt(|r| r.len(idx.checked_sub(1)?))?;
            let expected_depth = match parent {
                None => 0,
                Some(p) => sections.get(p)?.depth.checked_add(1)?,
            };
            let s = Section {
                name,
                title,
                markup,
                depth,
                parent,
                first_line: r.u64()?,
                first_index: r.u64()?,
                last_line: r.opt(Reader::u64)?,
                last_index: r.opt(Reader::u64)?,
                start_us: r.opt(Reader::i64)?,
                end_us: r.opt(Reader::i64)?,
                collapsed: bits & 1 != 0,
                deemphasized: bits & 2 != 0,
                hide_duration: bits & 4 != 0,
                closed_at_eof: bits & 8 != 0,
            };
            let lines_ok = s.first_line < next_line
                && s.last_line
                    .is_none_or(|l| l >= s.first_line && l < next_line)
                && s.last_line.is_some() == s.last_index.is_some();
            if depth != expected_depth || !lines_ok {
                return None;
            }
            sections.push(s);
        }
        let depth = r.len(MAX_SECTIONS)?;
        let mut stack = Vec::with_capacity(depth);
        for pos in 0..depth {
            let i = r.len(count.checked_sub(1)?)?;
            let s = sections.get(i)?;
            if s.last_line.is_some() || s.parent != stack.last().copied() || pos != s.depth as usize
            {
                return None;
            }
            stack.push(i);
        }
        let open = sections.iter().filter(|s| s.last_line.is_none()).count();
        if !r.0.is_empty() || open != stack.len() {
            return None;
        }
        Some(Outline {
            sections,
            dropped,
            stack,
            pending,
            next_line,
            prev_line_end_index,
            last_entry,
            gh_stop_token,
            enabled: flags & Markup::ALL,
            finished: flags & 0x80 != 0,
        })
    }
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000_000;

    /// Builds an entry from `(value, delimiter)` pairs.
    fn feed(o: &mut Outline, index: u64, time: i64, lines: &[(&str, &str)]) {
        o.push_entry(index, time, lines.iter().copied());
    }

    /// Feeds whole lines ("\n"-delimited), one entry.
    fn feed_lines(o: &mut Outline, index: u64, time: i64, lines: &[&str]) {
        o.push_entry(index, time, lines.iter().map(|l| (*l, "\n")));
    }

    fn sec(name: &str, title: &str, markup: Markup) -> Section {
        Section {
            name: name.into(),
            title: title.into(),
            markup,
            depth: 0,
            parent: None,
            first_line: 0,
            first_index: 0,
            last_line: None,
            last_index: None,
            start_us: None,
            end_us: None,
            collapsed: false,
            deemphasized: false,
            hide_duration: false,
            closed_at_eof: false,
        }
    }

    #[test]
    fn gitlab_nested_sections() {
        let mut o = Outline::new();
        feed_lines(&mut o, 0, T0, &[
            "Running with gitlab-runner 16.5.0 (853330f9)",
            "\x1b[0Ksection_start:1699999999:prepare_executor\r\x1b[0K\x1b[0K\x1b[36;1mPreparing the \"docker\" executor\x1b[0;m\x1b[0;m",
            "Using Docker executor with image rust:1.75 ...",
            "\x1b[0Ksection_end:1700000004:prepare_executor\r\x1b[0K",
        ]);
        feed_lines(&mut o, 1, T0 + 5_000_000, &[
            "\x1b[0Ksection_start:1700000005:step_script\r\x1b[0K\x1b[0K\x1b[36;1mExecuting \"step_script\" stage of the job script\x1b[0;m\x1b[0;m",
            "\x1b[0Ksection_start:1700000006:build[collapsed=true]\r\x1b[0KBuilding",
            "   Compiling logdog v0.1.0",
            "\x1b[0Ksection_start:1700000007:inner[collapsed=true,hide_duration=true]\r\x1b[0K",
            "inner text",
            "\x1b[0Ksection_end:1700000010:Build\r\x1b[0K",
            "test result: ok",
        ]);
        assert_eq!(o.open_sections(), &[1]);
        feed_lines(
            &mut o,
            2,
            T0 + 20_000_000,
            &["\x1b[0Ksection_end:1700000020:step_script\r\x1b[0K"],
        );
        let expected = vec![
            Section {
                first_line: 1,
                first_index: 0,
                last_line: Some(3),
                last_index: Some(0),
                start_us: Some(1_699_999_999_000_000),
                end_us: Some(1_700_000_004_000_000),
                ..sec(
                    "prepare_executor",
                    "Preparing the \"docker\" executor",
                    Markup::GitLab,
                )
            },
            Section {
                first_line: 4,
                first_index: 1,
                last_line: Some(11),
                last_index: Some(2),
                start_us: Some(1_700_000_005_000_000),
                end_us: Some(1_700_000_020_000_000),
                ..sec(
                    "step_script",
                    "Executing \"step_script\" stage of the job script",
                    Markup::GitLab,
                )
            },
            Section {
                depth: 1,
                parent: Some(1),
                first_line: 5,
                first_index: 1,
                last_line: Some(9),
                last_index: Some(1),
                start_us: Some(1_700_000_006_000_000),
                end_us: Some(1_700_000_010_000_000),
                collapsed: true,
                ..sec("build", "Building", Markup::GitLab)
            },
            Section {
                depth: 2,
                parent: Some(2),
                first_line: 7,
                first_index: 1,
                last_line: Some(9),
                last_index: Some(1),
                start_us: Some(1_700_000_007_000_000),
                end_us: Some(1_700_000_010_000_000),
                collapsed: true,
                hide_duration: true,
                ..sec("inner", "inner", Markup::GitLab)
            },
        ];
        assert_eq!(o.sections, expected);
        assert!(o.open_sections().is_empty());
        assert_eq!(o.lines_seen(), 12);
        assert_eq!(o.section_at_line(5), Some(2));
        assert_eq!(o.section_at_line(6), None);
        o.finish();
        assert_eq!(o.sections, expected);
    }

    #[test]
    fn gitlab_unclosed_section_at_end_of_stream() {
        let mut o = Outline::new();
        feed_lines(
            &mut o,
            0,
            T0,
            &[
                "\x1b[0Ksection_start:1700000000:deploy\r\x1b[0KDeploying",
                "step 1",
            ],
        );
        feed(&mut o, 1, T0 + 9, &[("step 2", "\n"), ("killed", "")]);
        let open = Section {
            first_line: 0,
            first_index: 0,
            start_us: Some(1_700_000_000_000_000),
            ..sec("deploy", "Deploying", Markup::GitLab)
        };
        assert_eq!(o.sections, vec![open.clone()]);
        o.finish();
        assert_eq!(
            o.sections,
            vec![Section {
                last_line: Some(3),
                last_index: Some(1),
                end_us: Some(T0 + 9),
                closed_at_eof: true,
                ..open
            }]
        );
        assert_eq!(o.lines_seen(), 4);
        // Entries after finish are ignored; finish is idempotent.
        feed_lines(&mut o, 2, T0, &["\x1b[0Ksection_start:1:late\r\x1b[0K"]);
        o.finish();
        assert_eq!(o.sections.len(), 1);
        assert_eq!(o.lines_seen(), 4);
    }

    #[test]
    fn gitlab_unknown_end_mentions_and_mid_line_tokens() {
        let mut o = Outline::new();
        feed_lines(&mut o, 0, T0, &[
            "\x1b[0Ksection_end:1700000000:never_opened\r\x1b[0K",
            "echo section_start:1700000000:just_text",
            "\x1b[0Ksection_start:1700000000:bad[collapsed]\r\x1b[0K",
            "section_start:1700000000:no_suffix\r",
            "progress 100%section_start:1700000001:mid\r\x1b[0KMid title",
            "body",
            "\x1b[0Ksection_end:1700000003:mid\r\x1b[0K\x1b[0Ksection_start:1700000003:next\r\x1b[0KNext",
            "\x1b[0Ksection_end:1700000004:nope\r\x1b[0K",
        ]);
        assert_eq!(
            o.sections,
            vec![
                Section {
                    first_line: 4,
                    last_line: Some(6),
                    last_index: Some(0),
                    start_us: Some(1_700_000_001_000_000),
                    end_us: Some(1_700_000_003_000_000),
                    ..sec("mid", "Mid title", Markup::GitLab)
                },
                Section {
                    first_line: 6,
                    start_us: Some(1_700_000_003_000_000),
                    ..sec("next", "Next", Markup::GitLab)
                },
            ]
        );
        assert_eq!(
            Outline::classify("echo section_start:1700000000:just_text"),
            None
        );
        let m = Outline::classify("progress 100%section_start:1700000001:mid\r\x1b[0KMid title");
        assert_eq!(
            m,
            Some(Marker {
                markup: Markup::GitLab,
                kind: MarkerKind::Start,
                name: Some("mid".into()),
                title: "Mid title".into(),
                collapsed: false,
                deemphasized: false,
                hide_duration: false,
                leading_text: "progress 100%".into(),
            })
        );
    }

    #[test]
    fn gitlab_repeated_name_restarts_and_sanitised_end() {
        let mut o = Outline::new();
        feed_lines(
            &mut o,
            0,
            T0,
            &[
                "section_start:10:Step.One\r\x1b[0KFirst",
                "a",
                "section_start:20:step_one[collapsed=true, hide_duration=true]\r\x1b[0KSecond",
                "b",
                "section_end:30:STEP-ONE\r\x1b[0K",
            ],
        );
        assert_eq!(
            o.sections,
            vec![
                Section {
                    first_line: 0,
                    last_line: Some(1),
                    last_index: Some(0),
                    start_us: Some(10_000_000),
                    end_us: Some(20_000_000),
                    ..sec("Step.One", "First", Markup::GitLab)
                },
                Section {
                    first_line: 2,
                    last_line: Some(4),
                    last_index: Some(0),
                    start_us: Some(20_000_000),
                    end_us: Some(30_000_000),
                    collapsed: true,
                    hide_duration: true,
                    ..sec("step_one", "Second", Markup::GitLab)
                },
            ]
        );
    }

    #[test]
    fn markers_split_across_entries() {
        let mut o = Outline::new();
        feed(
            &mut o,
            0,
            T0,
            &[("before", "\n"), ("\x1b[0Ksection_st", "")],
        );
        feed(
            &mut o,
            1,
            T0 + 1,
            &[("art:1700000000:split[collapsed=tr", "")],
        );
        feed(
            &mut o,
            2,
            T0 + 2,
            &[("ue]\r\x1b[0KSplit title", "\n"), ("::gro", "")],
        );
        feed(
            &mut o,
            3,
            T0 + 3,
            &[("up::Split group", "\r\n"), ("x", "\n"), ("::endgroup", "")],
        );
        feed(
            &mut o,
            4,
            T0 + 4,
            &[
                ("::", "\n"),
                ("\x1b[0Ksection_end:1700000009:split\r\x1b", ""),
            ],
        );
        feed(&mut o, 5, T0 + 5, &[("[0K", "\n")]);
        assert_eq!(
            o.sections,
            vec![
                Section {
                    first_line: 1,
                    first_index: 0,
                    last_line: Some(5),
                    last_index: Some(5),
                    start_us: Some(1_700_000_000_000_000),
                    end_us: Some(1_700_000_009_000_000),
                    collapsed: true,
                    ..sec("split", "Split title", Markup::GitLab)
                },
                Section {
                    depth: 1,
                    parent: Some(0),
                    first_line: 2,
                    first_index: 2,
                    last_line: Some(4),
                    last_index: Some(4),
                    start_us: Some(T0 + 2),
                    end_us: Some(T0 + 3),
                    collapsed: true,
                    ..sec("github:1", "Split group", Markup::GitHub)
                },
            ]
        );
        assert_eq!(o.lines_seen(), 6);
    }

    #[test]
    fn buildkite_with_ansi_and_expand() {
        let mut o = Outline::new();
        feed_lines(
            &mut o,
            0,
            T0,
            &[
                "Preparing working directory",
                "\x1b[90m~~~ Setting up plugins\x1b[0m",
                "plugin output",
                "\x1b[1;33m--- \x1b[0m:package: Running \x1b[33mspecs\x1b[0m :cow::bell:",
                "bundle install",
            ],
        );
        feed_lines(
            &mut o,
            1,
            T0 + 100,
            &[
                "+++ :rspec: Tests \x1b]8;;https://example.com\x07link\x1b]8;;\x07",
                "1 example, 0 failures",
                "--- :buildkite: Upload",
                "Error: upload failed",
                "^^^ +++",
                " --- indented is not a header",
                "---not a header",
                "----",
            ],
        );
        feed_lines(
            &mut o,
            2,
            T0 + 200,
            &["~~~ Cleanup", "^^^ +++ trailing text is not the marker"],
        );
        let mut expected = vec![
            Section {
                first_line: 1,
                first_index: 0,
                last_line: Some(2),
                last_index: Some(0),
                start_us: Some(T0),
                end_us: Some(T0),
                collapsed: true,
                deemphasized: true,
                ..sec("buildkite:0", "Setting up plugins", Markup::Buildkite)
            },
            Section {
                first_line: 3,
                first_index: 0,
                last_line: Some(4),
                last_index: Some(0),
                start_us: Some(T0),
                end_us: Some(T0 + 100),
                collapsed: true,
                ..sec(
                    "buildkite:1",
                    ":package: Running specs :cow::bell:",
                    Markup::Buildkite,
                )
            },
            Section {
                first_line: 5,
                first_index: 1,
                last_line: Some(6),
                last_index: Some(1),
                start_us: Some(T0 + 100),
                end_us: Some(T0 + 100),
                ..sec("buildkite:2", ":rspec: Tests link", Markup::Buildkite)
            },
            Section {
                first_line: 7,
                first_index: 1,
                last_line: Some(12),
                last_index: Some(1),
                start_us: Some(T0 + 100),
                end_us: Some(T0 + 200),
                collapsed: false, // ^^^ +++
                ..sec("buildkite:3", ":buildkite: Upload", Markup::Buildkite)
            },
            Section {
                first_line: 13,
                first_index: 2,
                start_us: Some(T0 + 200),
                collapsed: true,
                deemphasized: true,
                ..sec("buildkite:4", "Cleanup", Markup::Buildkite)
            },
        ];
        assert_eq!(o.sections, expected);
        o.finish();
        expected[4].last_line = Some(14);
        expected[4].last_index = Some(2);
        expected[4].end_us = Some(T0 + 200);
        expected[4].closed_at_eof = true;
        assert_eq!(o.sections, expected);
    }

    #[test]
    fn buildkite_expands_last_regular_group_when_none_expanded() {
        let mut o = Outline::new();
        feed_lines(&mut o, 0, T0, &["--- One", "--- Two", "~~~ Quiet", "+++ "]);
        // The trailing empty "+++ " group is Buildkite's way to keep all others collapsed.
        assert_eq!(o.sections[3].title, "");
        assert!(!o.sections[3].collapsed);
        o.finish();
        let collapsed: Vec<bool> = o.sections.iter().map(|s| s.collapsed).collect();
        assert_eq!(collapsed, vec![true, true, true, false]);

        let mut o = Outline::new();
        feed_lines(&mut o, 0, T0, &["--- One", "--- Two", "~~~ Quiet"]);
        o.finish();
        let collapsed: Vec<bool> = o.sections.iter().map(|s| s.collapsed).collect();
        assert_eq!(collapsed, vec![true, false, true]);
    }

    #[test]
    fn github_groups() {
        let mut o = Outline::new();
        feed_lines(
            &mut o,
            0,
            T0,
            &[
                "::group::Install dependencies",
                "npm ci",
                "::group::Build 100%25 %0Adone",
                "tsc",
                "::endgroup::",
                "::endgroup::",
                "  ::GROUP title=x::Indented",
                "\x1b[36m::endgroup::\x1b[0m",
                "##[group]Run actions/checkout@v4",
                "with: ...",
                "##[endgroup]",
                "::group::",
            ],
        );
        let g = |i: usize, title: &str, first: u64, last: Option<u64>| Section {
            first_line: first,
            last_line: last,
            last_index: last.map(|_| 0),
            start_us: Some(T0),
            end_us: last.map(|_| T0),
            collapsed: true,
            ..sec(&format!("github:{i}"), title, Markup::GitHub)
        };
        assert_eq!(
            o.sections,
            vec![
                g(0, "Install dependencies", 0, Some(1)),
                g(1, "Build 100%  done", 2, Some(4)),
                g(2, "Indented", 6, Some(7)),
                g(3, "Run actions/checkout@v4", 8, Some(10)),
                g(4, "", 11, None),
            ]
        );
    }

    #[test]
    fn github_stop_commands() {
        let mut o = Outline::new();
        feed_lines(
            &mut o,
            0,
            T0,
            &[
                "::stop-commands::pause-token-42",
                "::group::not a group",
                "::endgroup::",
                "::PAUSE-TOKEN-42::",
                "::group::Real",
            ],
        );
        assert_eq!(
            o.sections,
            vec![Section {
                first_line: 4,
                start_us: Some(T0),
                collapsed: true,
                ..sec("github:0", "Real", Markup::GitHub)
            }]
        );
    }

    #[test]
    fn mixed_nesting_and_implicit_close() {
        // A GitHub group holding a GitLab section: a new group closes both at the
        // line before it.
        let mut o = Outline::new();
        feed_lines(
            &mut o,
            0,
            T0,
            &["::group::A", "section_start:5:inner\r\x1b[0KInner", "x"],
        );
        feed_lines(&mut o, 1, T0 + 1, &["::group::B"]);
        assert_eq!(o.sections[0].last_line, Some(2));
        assert_eq!(o.sections[1].last_line, Some(2));
        assert_eq!(o.sections[1].last_index, Some(0));
        assert_eq!(o.sections[1].end_us, Some(T0 + 1));
        assert_eq!((o.sections[1].depth, o.sections[1].parent), (1, Some(0)));
        assert_eq!(
            (
                o.sections[2].depth,
                o.sections[2].parent,
                o.sections[2].first_index
            ),
            (0, None, 1)
        );
        assert_eq!(o.open_sections(), &[2]);
    }

    #[test]
    fn crlf_delimiters_and_line_numbers() {
        let mut o = Outline::new();
        feed(
            &mut o,
            7,
            T0,
            &[("line 0", "\r\n"), ("--- First", "\r\n"), ("li", "")],
        );
        feed(&mut o, 8, T0 + 1, &[("ne 2", "")]);
        feed(
            &mut o,
            9,
            T0 + 2,
            &[(" end", "\r\n"), ("+++ Second\r", "\r\n")],
        );
        feed(&mut o, 10, T0 + 3, &[("last", "\r\n")]);
        o.finish();
        assert_eq!(
            o.sections,
            vec![
                Section {
                    first_line: 1,
                    first_index: 7,
                    last_line: Some(2),
                    last_index: Some(9),
                    start_us: Some(T0),
                    end_us: Some(T0 + 2),
                    collapsed: true,
                    ..sec("buildkite:0", "First", Markup::Buildkite)
                },
                Section {
                    first_line: 3,
                    first_index: 9,
                    last_line: Some(4),
                    last_index: Some(10),
                    start_us: Some(T0 + 2),
                    end_us: Some(T0 + 3),
                    closed_at_eof: true,
                    ..sec("buildkite:1", "Second", Markup::Buildkite)
                },
            ]
        );
        assert_eq!(o.lines_seen(), 5);
    }

    #[test]
    fn overlong_partial_line_is_not_a_marker() {
        let mut o = Outline::new();
        let filler = "x".repeat(MAX_LINE_BYTES);
        feed(&mut o, 0, T0, &[("::group::", "")]);
        feed(&mut o, 1, T0, &[(filler.as_str(), "")]);
        feed(&mut o, 2, T0, &[("tail", "\n"), ("::group::After", "\n")]);
        assert_eq!(o.sections.len(), 1);
        assert_eq!(
            (o.sections[0].first_line, o.sections[0].first_index),
            (1, 2)
        );
        assert_eq!(o.lines_seen(), 2);
        let long = format!("--- {filler}");
        assert_eq!(Outline::classify(&long), None);
    }

    #[test]
    fn section_cap_counts_dropped() {
        let mut o = Outline::new();
        let lines: Vec<String> = (0..MAX_SECTIONS + 5)
            .map(|i| format!("--- step {i}"))
            .collect();
        o.push_entry(0, T0, lines.iter().map(|l| (l.as_str(), "\n")));
        assert_eq!(o.sections.len(), MAX_SECTIONS);
        assert_eq!(o.dropped, 5);
        // The last kept section was closed by the first dropped header.
        assert_eq!(
            o.sections[MAX_SECTIONS - 1].last_line,
            Some(MAX_SECTIONS as u64 - 1)
        );
        assert!(o.open_sections().is_empty());
        let back = Outline::from_state_bytes(&o.state_bytes());
        assert_eq!(back.as_ref(), Some(&o));
    }

    #[test]
    fn markups_can_be_disabled() {
        let mut o = Outline::with_markups(&[Markup::GitHub]);
        feed_lines(
            &mut o,
            0,
            T0,
            &[
                "--- a/src/main.rs",
                "+++ b/src/main.rs",
                "section_start:1:x\r\x1b[0K",
                "::group::G",
            ],
        );
        assert_eq!(o.sections.len(), 1);
        assert_eq!(o.sections[0].markup, Markup::GitHub);
        assert_eq!(o.sections[0].first_line, 3);
    }

    #[test]
    fn classify_markers() {
        let base = Marker {
            markup: Markup::GitHub,
            kind: MarkerKind::Start,
            name: None,
            title: String::new(),
            collapsed: false,
            deemphasized: false,
            hide_duration: false,
            leading_text: String::new(),
        };
        assert_eq!(Outline::classify("plain output"), None);
        assert_eq!(Outline::classify("::warning::careful"), None);
        assert_eq!(
            Outline::classify(
                "\x1b[0Ksection_start:1:a[collapsed=true]\r\x1b[0K\x1b[1mTitle\x1b[0m"
            ),
            Some(Marker {
                markup: Markup::GitLab,
                name: Some("a".into()),
                title: "Title".into(),
                collapsed: true,
                ..base.clone()
            })
        );
        assert_eq!(
            Outline::classify("\x1b[0Ksection_end:2:a\r\x1b[0K"),
            Some(Marker {
                markup: Markup::GitLab,
                kind: MarkerKind::End,
                name: Some("a".into()),
                ..base.clone()
            })
        );
        assert_eq!(
            Outline::classify("::group::Build"),
            Some(Marker {
                title: "Build".into(),
                collapsed: true,
                ..base.clone()
            })
        );
        assert_eq!(
            Outline::classify("##[endgroup]"),
            Some(Marker {
                kind: MarkerKind::End,
                ..base.clone()
            })
        );
        assert_eq!(
            Outline::classify("~~~ Quiet"),
            Some(Marker {
                markup: Markup::Buildkite,
                title: "Quiet".into(),
                collapsed: true,
                deemphasized: true,
                ..base.clone()
            })
        );
        assert_eq!(
            Outline::classify("\x1b[32m^^^ +++\x1b[0m"),
            Some(Marker {
                markup: Markup::Buildkite,
                kind: MarkerKind::Expand,
                ..base
            })
        );
    }

    /// (stream index, time, lines) of one entry.
    type Entry = (u64, i64, Vec<(&'static str, &'static str)>);

    fn sample_entries() -> Vec<Entry> {
        vec![
            (
                0,
                T0,
                vec![
                    ("\x1b[0Ksection_start:1700000000:outer\r\x1b[0KOuter", "\n"),
                    ("::group::G", "\n"),
                ],
            ),
            (
                1,
                T0 + 1,
                vec![("x", "\n"), ("\x1b[0Ksection_start:1700000001:in", "")],
            ),
            (
                2,
                T0 + 2,
                vec![("ner[collapsed=true]\r\x1b[0KInner", "\r\n"), ("y", "\n")],
            ),
            (
                3,
                T0 + 3,
                vec![("::stop-commands::tok", "\n"), ("::endgroup::", "\n")],
            ),
            (
                4,
                T0 + 4,
                vec![("::tok::", "\n"), ("::endgroup::", "\n"), ("--- B", "\n")],
            ),
            (5, T0 + 5, vec![("^^^ ", "")]),
            (
                6,
                T0 + 6,
                vec![
                    ("+++", "\n"),
                    ("\x1b[0Ksection_end:1700000009:inner\r\x1b[0K", "\n"),
                ],
            ),
            (
                7,
                T0 + 7,
                vec![("~~~ C", "\n"), ("tail without newline", "")],
            ),
        ]
    }

    fn feed_sample(o: &mut Outline, entries: &[Entry]) {
        for (i, t, lines) in entries {
            o.push_entry(*i, *t, lines.iter().copied());
        }
    }

    #[test]
    fn state_round_trip_at_every_split() {
        let entries = sample_entries();
        let mut whole = Outline::new();
        feed_sample(&mut whole, &entries);
        let mut whole_finished = whole.clone();
        whole_finished.finish();
        assert_eq!(whole.lines_seen(), 13);
        assert_eq!(whole.sections.len(), 5);
        assert_eq!(
            whole_finished.sections[1],
            Section {
                depth: 1,
                parent: Some(0),
                first_line: 1,
                first_index: 0,
                last_line: Some(8),
                last_index: Some(4),
                start_us: Some(T0),
                end_us: Some(T0 + 4),
                collapsed: true,
                ..sec("github:1", "G", Markup::GitHub)
            }
        );
        assert_eq!(
            whole_finished.sections[2],
            Section {
                depth: 2,
                parent: Some(1),
                first_line: 3,
                first_index: 1,
                last_line: Some(8),
                last_index: Some(4),
                start_us: Some(1_700_000_001_000_000),
                end_us: Some(T0 + 4),
                collapsed: true,
                ..sec("inner", "Inner", Markup::GitLab)
            }
        );
        // "--- B" expanded by "^^^ +++" (split over two entries); the GitLab end for
        // "inner" (already closed) is ignored.
        assert_eq!(
            whole_finished.sections[3],
            Section {
                depth: 1,
                parent: Some(0),
                first_line: 9,
                first_index: 4,
                last_line: Some(11),
                last_index: Some(6),
                start_us: Some(T0 + 4),
                end_us: Some(T0 + 7),
                ..sec("buildkite:3", "B", Markup::Buildkite)
            }
        );
        assert_eq!(
            whole_finished.sections[4],
            Section {
                depth: 1,
                parent: Some(0),
                first_line: 12,
                first_index: 7,
                last_line: Some(13),
                last_index: Some(7),
                start_us: Some(T0 + 7),
                end_us: Some(T0 + 7),
                collapsed: true,
                deemphasized: true,
                closed_at_eof: true,
                ..sec("buildkite:4", "C", Markup::Buildkite)
            }
        );
        assert_eq!(whole_finished.sections[0].last_line, Some(13));
        assert!(whole_finished.sections[0].closed_at_eof);

        for split in 0..=entries.len() {
            let mut first = Outline::new();
            feed_sample(&mut first, &entries[..split]);
            let bytes = first.state_bytes();
            let mut resumed = Outline::from_state_bytes(&bytes).expect("valid state");
            assert_eq!(resumed, first, "split {split}");
            feed_sample(&mut resumed, &entries[split..]);
            assert_eq!(resumed, whole, "split {split}");
            resumed.finish();
            let resumed = Outline::from_state_bytes(&resumed.state_bytes()).expect("valid state");
            assert_eq!(resumed, whole_finished, "split {split}");
        }
    }

    #[test]
    fn state_bytes_reject_malformed_input() {
        let mut o = Outline::new();
        feed_sample(&mut o, &sample_entries()[..3]);
        let bytes = o.state_bytes();
        for n in 0..bytes.len() {
            assert_eq!(Outline::from_state_bytes(&bytes[..n]), None, "prefix {n}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(Outline::from_state_bytes(&extra), None);
        let mut bad_magic = bytes.clone();
        bad_magic[0] = b'X';
        assert_eq!(Outline::from_state_bytes(&bad_magic), None);
        let mut bad_version = bytes;
        bad_version[4] = 99;
        assert_eq!(Outline::from_state_bytes(&bad_version), None);
        assert_eq!(
            Outline::from_state_bytes(&Outline::new().state_bytes()),
            Some(Outline::new())
        );
    }
}
