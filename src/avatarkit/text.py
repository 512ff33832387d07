"""Text on its way to speech: a streaming sentence splitter and markdown cleanup.

The splitter releases a sentence the moment its end is certain, without waiting for the next
token when the full stop is unambiguous ("Hello there." is released at the ``.``). It holds a
sentence only when the punctuation could still belong to something else: an abbreviation
("Dr."), an initial ("J."), a number ("3." may become "3.5"), a domain ("example.c..."), an
ellipsis, or a list marker ("1."). Code fences are never cut and never spoken.

We tried pysbd (the usual library for sentence boundaries): it works on whole texts, costs
about a millisecond per call and would have to be re-run on the growing buffer at every token,
which alone would exceed the engine's whole latency budget. The rules here are few, cheap, and
tested by property tests (no text lost or duplicated; any chunking gives the same sentences).

Releasing at the full stop assumes what LLM tokenizers guarantee in practice: a token that ends
in ``.``, ``!`` or ``?`` is followed by a space or the end, unless the word itself is ambiguous
(tokenizers keep "3.14", "example.com", "..." and "?!" together). Under that assumption any
chunking of a stream gives exactly the sentences of the whole text.

Chinese and Japanese end sentences with ``。！？`` (and fullwidth ``．``, halfwidth ``｡``) and no
space after: those cut whatever follows (closing brackets and quotes such as ``」`` stay with the
sentence). A fullwidth ``．`` between digits is a decimal point, not an end.

A reply with no sentence ends at all must not make the first speech wait for the whole reply, so
a sentence that grows past :data:`MAX_SENTENCE_CHARS` characters without an end is cut at its
last clause mark (``,`` ``;`` ``:`` ``—`` ``、`` ``，`` ...) in its second half, else at its last
space; text with no space in its first :data:`MAX_UNSPACED_CHARS` characters (Chinese, Japanese)
is cut at that many characters, or at a clause mark before. These cuts depend only on the text,
so they too are the same for any chunking.
"""

from __future__ import annotations

import re

__all__ = [
    "SentenceSplitter",
    "clean_for_speech",
    "estimate_speech_seconds",
    "split_sentences",
    "spoken_prefix",
]

ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st vs etc e.g i.e eg ie cf approx inc ltd co corp no vol fig
    dept est jan feb mar apr jun jul aug sep sept oct nov dec mt ft rev gen col lt sgt capt gov
    sen rep pres ave blvd rd u.s u.k a.m p.m""".split()
)
# Abbreviations that commonly end a sentence too: released when a capital letter follows.
SENTENCE_FINAL_ABBREVIATIONS = frozenset({"etc", "inc", "ltd", "co", "corp", "a.m", "p.m"})

#: A sentence with no end is cut before it grows longer than this (see the module docstring).
MAX_SENTENCE_CHARS = 200
#: The same for text with no spaces (Chinese, Japanese): fewer characters carry more speech.
MAX_UNSPACED_CHARS = 80

_CJK_TERMINATORS = "。！？｡"
_FULLWIDTH_STOP = "．"
_TERMINATORS = ".!?…" + _CJK_TERMINATORS + _FULLWIDTH_STOP
_CLOSERS = "\"')]}»”’" + "」』）】〕〉》〙〛＂＇］｝"
#: Where an over-long sentence may be cut: ASCII marks only before a space, CJK ones anywhere.
_CLAUSE_MARKS = ",;:—–"
_CJK_CLAUSE_MARKS = "、，；："
_FENCE = "```"
_LIST_MARKER = re.compile(r"(?:^|\n)[ \t]*(?:\d{1,3}|[a-zA-Z])[.)]$")


class SentenceSplitter:
    """Feed text deltas, get complete sentences back as soon as they are certain.

    ``feed`` returns the sentences completed by that delta (often none); ``flush`` returns what
    is left at the end of the stream. Sentences are returned raw (markdown included); pass them
    through :func:`clean_for_speech` before speaking. Joining every returned sentence gives back
    the input, except code fences, which are dropped whole.
    """

    __slots__ = ("_buf", "_in_fence", "_scan")

    def __init__(self) -> None:
        self._buf = ""
        self._scan = 0  # where to resume looking for a boundary
        self._in_fence = False

    def feed(self, delta: str) -> list[str]:
        if not delta:
            return []
        self._buf += delta
        return self._drain(final=False)

    def flush(self) -> list[str]:
        out = self._drain(final=True)
        rest = self._buf
        self._buf, self._scan = "", 0
        if self._in_fence:
            self._in_fence = False
            return out  # an unterminated code block is not spoken
        if rest.strip():
            out.append(rest)
        return out

    def _drain(self, *, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            if self._in_fence:
                end = self._buf.find(_FENCE, max(self._scan, 0))
                if end < 0:
                    self._scan = max(0, len(self._buf) - len(_FENCE) + 1)
                    return out
                # Drop the fenced block, keep what follows it.
                self._buf = self._buf[end + len(_FENCE) :]
                self._scan = 0
                self._in_fence = False
                continue
            cut, fence = self._find_boundary(final)
            if fence is not None:
                before = self._buf[:fence]
                if before.strip():
                    out.append(before)
                self._buf = self._buf[fence + len(_FENCE) :]
                self._scan = 0
                self._in_fence = True
                continue
            if cut is None:
                return out
            sentence, self._buf = self._buf[:cut], self._buf[cut:]
            self._scan = 0
            if sentence.strip():
                out.append(sentence)
            elif out:
                out[-1] += sentence
            else:
                self._buf = sentence + self._buf
                self._scan = len(sentence)

    def _limit(self) -> int:
        """Index at which the pending sentence is too long to wait for its end any longer."""
        buf = self._buf
        start = len(buf) - len(buf.lstrip())
        head = buf[start : start + MAX_UNSPACED_CHARS]
        if len(head) == MAX_UNSPACED_CHARS and not any(c.isspace() for c in head):
            return start + MAX_UNSPACED_CHARS
        return start + MAX_SENTENCE_CHARS

    def _forced_cut(self, limit: int) -> int:
        """Where to cut a sentence that reached ``limit`` with no end: a clause, a word, or
        (text without spaces) the limit itself."""
        buf = self._buf
        start = len(buf) - len(buf.lstrip())
        half = start + (limit - start) // 2
        for k in range(limit - 1, half, -1):
            ch = buf[k]
            if ch in _CJK_CLAUSE_MARKS or (ch in _CLAUSE_MARKS and buf[k + 1].isspace()):
                return k + 1
        for k in range(limit, start, -1):
            if buf[k].isspace() and not buf[k - 1].isspace():
                return k
        while limit > start + 1 and buf[limit - 1] == "`":
            limit -= 1  # never split a run of backticks: it may be a code fence
        return limit

    def _find_boundary(self, final: bool) -> tuple[int | None, int | None]:
        """Index just past the first certain sentence end, or where a code fence opens."""
        buf = self._buf
        n = len(buf)
        i = self._scan
        limit = self._limit()
        while i < n:
            if i >= limit:
                return self._forced_cut(limit), None
            ch = buf[i]
            if ch == "`" and buf.startswith(_FENCE, i):
                return None, i
            if ch == "`" and n - i < len(_FENCE) and _FENCE.startswith(buf[i:]) and not final:
                self._scan = i
                return None, None  # maybe the start of a fence: wait
            if ch == "\n":
                if buf[:i].strip():
                    j = i
                    while j < n and buf[j] == "\n":
                        j += 1
                    if j == n and not final:
                        self._scan = i
                        return None, None  # more newlines may follow: keep them together
                    return j, None
                i += 1
                continue
            if ch in _TERMINATORS:
                decision = self._decide(i, final)
                if decision is None:
                    self._scan = i
                    return None, None
                if decision >= 0:
                    return decision, None
                while i + 1 < n and buf[i + 1] in _TERMINATORS:
                    i += 1  # the whole run ("...", "?!") was judged at once
            i += 1
        self._scan = n
        return None, None

    def _decide(self, i: int, final: bool) -> int | None:
        """For the terminator at ``i``: the cut index, -1 if not a boundary, None to wait."""
        buf = self._buf
        n = len(buf)
        j = i + 1
        while j < n and buf[j] in _TERMINATORS:
            j += 1
        while j < n and buf[j] in _CLOSERS:
            j += 1
        if buf[i] in _CJK_TERMINATORS:
            return j  # never ambiguous, and no space follows in Chinese or Japanese
        if buf[i] == _FULLWIDTH_STOP:
            before = buf[i - 1] if i else ""
            if not before.isdigit():
                return j
            if j == n and not final:
                return None  # "３．" may become "３．１４"
            return -1 if j < n and buf[j].isdigit() else j
        if j == n:
            if final:
                return j
            # At the end of what we have: release now only if the stop is unambiguous.
            if buf[i] == "." and (j - i == 1) and self._period_is_ambiguous(i):
                return None
            if buf[i] == "." and j - i > 1 and buf[i + 1] == ".":
                return None  # an ellipsis may go on mid-sentence
            if buf[i] == "…":
                return None
            return j
        nxt = buf[j]
        if not nxt.isspace():
            return -1  # "3.5", "example.com", "e.g", "?!" handled above
        # Find the first non-space character after the boundary.
        k = j
        while k < n and buf[k] in " \t":
            k += 1
        following = buf[k] if k < n else ""
        if buf[i] == ".":
            word = self._word_before(i).lower()
            if buf[i + 1 : i + 2] == "." or buf[i] == "…":
                # ellipsis: a boundary only if what follows starts a new sentence
                if not following and not final:
                    return None
                return j if (not following or not following.islower()) else -1
            if word.rstrip(".") in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                if word.rstrip(".") in SENTENCE_FINAL_ABBREVIATIONS:
                    if not following and not final:
                        return None
                    return j if following[:1].isupper() or following == "\n" else -1
                return -1
            if _LIST_MARKER.search(buf[: i + 1]):
                return -1
        return j

    def _period_is_ambiguous(self, i: int) -> bool:
        word = self._word_before(i)
        if not word:
            return False
        lowered = word.lower()
        if lowered in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            return True
        if word[-1].isdigit():
            return True  # "3." may become "3.5", or be a list marker
        if "." in word or "/" in word or "@" in word:
            return True  # "example.co" may go on, "e.g" is an abbreviation
        return bool(_LIST_MARKER.search(self._buf[: i + 1]))

    def _word_before(self, i: int) -> str:
        start = i
        buf = self._buf
        while start > 0 and not buf[start - 1].isspace() and buf[start - 1] not in "(\"'“‘[":
            start -= 1
        return buf[start:i]


def split_sentences(text: str) -> list[str]:
    """Split a whole text into sentences (the streaming splitter, fed at once)."""
    splitter = SentenceSplitter()
    return [*splitter.feed(text), *splitter.flush()]


_MD_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"```.*?(```|$)", re.S), " "),  # fenced code
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images -> alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links -> their text
    (re.compile(r"`([^`]*)`"), r"\1"),  # inline code
    (re.compile(r"(^|\n)[ \t]*#{1,6}[ \t]+"), r"\1"),  # headings
    (re.compile(r"(^|\n)[ \t]*>[ \t]?"), r"\1"),  # block quotes
    (re.compile(r"(^|\n)[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+"), r"\1"),  # list markers
    (re.compile(r"(\*\*|__|~~)(.+?)\1", re.S), r"\2"),  # bold, strike
    (re.compile(r"(?<![\w*])[*_](?!\s)(.+?)(?<!\s)[*_](?![\w*])", re.S), r"\1"),  # italics
    (re.compile(r"\*\*|__|~~"), ""),  # unmatched leftovers
    (re.compile(r"(^|\n)[ \t]*([-*_])(?:[ \t]*\2){2,}[ \t]*(?=\n|$)"), r"\1"),  # rules
    (re.compile(r"[ \t]*\|[ \t]*"), ", "),  # table pipes
    (re.compile(r"\s+"), " "),
]


#: HTML elements whose tags are removed (when written as real tags, see :func:`_strip_html`).
HTML_ELEMENTS = frozenset(
    """a abbr b blockquote br caption cite code dd del details div dl dt em figcaption figure
    font h1 h2 h3 h4 h5 h6 hr i img ins kbd li mark ol p pre q s samp small span strike strong
    sub summary sup table tbody td tfoot th thead tr u ul var wbr""".split()
)
_VOID_ELEMENTS = frozenset({"br", "hr", "img", "wbr"})
#: Inline elements sit inside words' sentences: removed with no space (``<b>bold</b>.``).
_INLINE_ELEMENTS = frozenset(
    "a abbr b cite code del em font i ins kbd mark q s samp small span strike strong sub sup "
    "u var".split()
)
_TAG = re.compile(
    r"<!--.*?-->"  # a comment
    r"|<(?P<close>/?)(?P<name>[A-Za-z][A-Za-z0-9]*)"
    r"(?P<attrs>(?:\s+[A-Za-z_:][-\w:.]*(?:\s*=\s*(?:\"[^\"<>]*\"|'[^'<>]*'|[^\s\"'=<>`]+))?)*)"
    r"\s*(?P<selfclose>/?)>",
    re.S,
)


_CODE_SPAN = re.compile(r"`[^`\n]*`")


def _strip_html(text: str) -> str:
    """Remove HTML tags, conservatively: only a well-formed tag of a real HTML element; one with
    no attributes only when its partner is in the text too or it is not glued to a word on its
    outer side. So ``Vec<String>``, ``Array<Object>``, ``a<b>c``, ``x <b and y> z`` and
    ``x < 5 and y > 3`` keep every word."""
    if "<" not in text:
        return text
    code = [m.span() for m in _CODE_SPAN.finditer(text)]  # `<div>` is talked about: keep it
    matches = [m for m in _TAG.finditer(text) if not any(a <= m.start() < b for a, b in code)]
    if not matches:
        return text
    opened = {m["name"].lower() for m in matches if m["name"] and not m["close"]}
    closed = {m["name"].lower() for m in matches if m["name"] and m["close"]}
    out: list[str] = []
    last = 0
    for m in matches:
        name = (m["name"] or "").lower()
        if m["name"] is None:  # a comment
            remove, spaced = True, False
        elif name not in HTML_ELEMENTS:
            remove, spaced = False, False
        else:
            partner = name in (opened if m["close"] else closed)
            # A bare tag without its partner (a sentence holds half of `<p>...</p>`) is removed
            # when it is not glued to the word it would belong to: `<p>Hi` and `Hi.</p>`, not
            # the `<b>` of `a<b>c`.
            outside = (
                text[m.start() - 1 : m.start()] if not m["close"] else text[m.end() : m.end() + 1]
            )
            bare = not m["attrs"].strip() and not outside.isalnum()
            remove = (
                partner
                or bare
                or name in _VOID_ELEMENTS
                or "=" in m["attrs"]  # `<a href="...">`, not `a<b and c>d`
                or bool(m["selfclose"])
            )
            spaced = name not in _INLINE_ELEMENTS
        if remove:
            out.append(text[last : m.start()])
            out.append(" " if spaced else "")
            last = m.end()
    out.append(text[last:])
    return "".join(out)


# Something one of _MD_PATTERNS (but the last) could change: without it, a sentence (most are
# plain) skips a dozen regular expressions.
_MARKUP = re.compile(r"[`\[#>*_~|\u2022\n\r]|(?:^|\n)[ \t]*(?:[-+]|\d{1,3}[.)])")
_SPACES = _MD_PATTERNS[-1][0]


def clean_for_speech(text: str) -> str:
    """Remove markdown and HTML tags that should not be spoken; never remove a word outside
    them (a ``<`` or ``>`` that is not part of a real tag is kept)."""
    text = _strip_html(text)
    if _MARKUP.search(text) is None:
        return _SPACES.sub(" ", text).strip(" ,")
    for pattern, repl in _MD_PATTERNS:
        text = pattern.sub(repl, text)
    return text.strip(" ,")


def estimate_speech_seconds(text: str, words_per_minute: float = 160.0) -> float:
    """A rough duration of ``text`` spoken aloud, for renderers that report none."""
    words = len(text.split())
    return words * 60.0 / words_per_minute


def spoken_prefix(text: str, fraction: float) -> str:
    """The first ``fraction`` of ``text``, cut at a word boundary: what an interrupted
    utterance got to say."""
    if fraction >= 1:
        return text
    if fraction <= 0:
        return ""
    words = text.split()
    keep = int(len(words) * fraction)
    return " ".join(words[:keep])
