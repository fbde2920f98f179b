package netdoc

import (
	"strings"
	"unicode/utf8"

	"github.com/chive-net/chive/exitpolicy"
)

// MaxLineLen bounds one line (keyword, arguments, not the newline).
const MaxLineLen = 16 << 10

// line is one parsed line of a document. Its strings point into the
// document.
type line struct {
	num  int      // 1-based
	off  int      // byte offset of the line's first byte
	text string   // the line without its newline
	kw   string   // keyword
	rest string   // everything after "kw " ("" when there are no arguments)
	args []string // rest split at single spaces (reused between lines)
}

// lexer walks a document line by line, enforcing the syntax shared by every
// chive document:
//
//   - UTF-8, lines end with "\n" (the last one too), no empty lines;
//   - no control characters (nothing below 0x20, no DEL), so no tabs or CR;
//   - a line is a keyword, then zero or more arguments, each preceded by
//     exactly one space: no leading, trailing or double spaces;
//   - keywords are ASCII: a lower-case letter, then lower-case letters,
//     digits and '-', at most 32 bytes.
type lexer struct {
	docName string // for errors
	doc     string
	pos     int  // offset of the next unread line
	num     int  // number of the current line
	unread  bool // next() returns cur again
	cur     line
	known   map[string]bool // every keyword of this document type

	// Values repeated across the entries of a vote or consensus are parsed
	// once per document: most relays share a handful of exit summaries,
	// protocol lists and delay-class lists. Entries then share these
	// values' backing arrays (see ConsensusEntry).
	summaries map[string]exitpolicy.Summary
	protocols map[string]Protocols
	classes   map[string][]uint8
}

func newLexer(docName string, b []byte, max int, known map[string]bool) (*lexer, error) {
	l := &lexer{docName: docName, known: known}
	if len(b) > max {
		return nil, l.docErr(errorf(ErrTooLarge, "%d bytes; at most %d", len(b), max))
	}
	l.doc = string(b)
	if !utf8.ValidString(l.doc) {
		return nil, l.docErr(errorf(ErrSyntax, "not valid UTF-8"))
	}
	l.cur.args = make([]string, 0, 16)
	return l, nil
}

// docErr wraps err as a ParseError for the whole document.
func (l *lexer) docErr(err error) error { return &ParseError{Doc: l.docName, Err: err} }

// errf makes a ParseError for the current line.
func (l *lexer) errf(sentinel error, format string, args ...any) error {
	return &ParseError{Doc: l.docName, Line: l.cur.num, Keyword: l.cur.kw, Err: errorf(sentinel, format, args...)}
}

// wrap makes a ParseError for the current line around err. A nil err and
// an error that already is a *ParseError are returned unchanged.
func (l *lexer) wrap(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*ParseError); ok {
		return err
	}
	return &ParseError{Doc: l.docName, Line: l.cur.num, Keyword: l.cur.kw, Err: err}
}

// back makes the next call to next return the current line again.
func (l *lexer) back() { l.unread = true }

// atEOF reports whether every line has been read.
func (l *lexer) atEOF() bool { return !l.unread && l.pos >= len(l.doc) }

// next reads the next line into l.cur. It returns false at the end of the
// document.
func (l *lexer) next() (bool, error) {
	if l.unread {
		l.unread = false
		return true, nil
	}
	if l.pos >= len(l.doc) {
		return false, nil
	}
	l.num++
	start := l.pos
	end := strings.IndexByte(l.doc[start:], '\n')
	c := &l.cur
	c.num, c.off, c.kw, c.rest, c.args = l.num, start, "", "", c.args[:0]
	if end < 0 {
		c.text = l.doc[start:]
		l.pos = len(l.doc)
		return false, l.errf(ErrSyntax, "the last line does not end with a newline")
	}
	c.text = l.doc[start : start+end]
	l.pos = start + end + 1
	if len(c.text) > MaxLineLen {
		return false, l.errf(ErrSyntax, "line is %d bytes; at most %d", len(c.text), MaxLineLen)
	}
	if c.text == "" {
		return false, l.errf(ErrSyntax, "empty line")
	}
	for i := 0; i < len(c.text); i++ {
		if ch := c.text[i]; ch < 0x20 || ch == 0x7f {
			return false, l.errf(ErrSyntax, "control character %#02x at byte %d", ch, i+1)
		}
	}
	kwEnd := strings.IndexByte(c.text, ' ')
	if kwEnd < 0 {
		kwEnd = len(c.text)
	}
	c.kw = c.text[:kwEnd]
	if !validKeyword(c.kw) {
		kw := c.kw
		c.kw = ""
		return false, l.errf(ErrSyntax, "bad keyword %q (keywords are a-z, 0-9 and '-', starting with a letter)", kw)
	}
	if kwEnd == len(c.text) {
		return true, nil
	}
	c.rest = c.text[kwEnd+1:]
	rest := c.rest
	for {
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			if rest == "" {
				return false, l.errf(ErrSyntax, "trailing space")
			}
			c.args = append(c.args, rest)
			break
		}
		if i == 0 {
			return false, l.errf(ErrSyntax, "two spaces in a row (arguments are separated by exactly one space)")
		}
		c.args = append(c.args, rest[:i])
		rest = rest[i+1:]
	}
	return true, nil
}

func validKeyword(kw string) bool {
	if kw == "" || len(kw) > 32 || kw[0] < 'a' || kw[0] > 'z' {
		return false
	}
	for i := 1; i < len(kw); i++ {
		c := kw[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// nargs checks the current line's argument count.
func (l *lexer) nargs(min, max int) error {
	n := len(l.cur.args)
	switch {
	case n < min && min == max:
		return l.errf(ErrBadValue, "want %d argument(s), found %d", min, n)
	case n < min:
		return l.errf(ErrBadValue, "want at least %d argument(s), found %d", min, n)
	case n > max && min == max:
		return l.errf(ErrBadValue, "want %d argument(s), found %d", max, n)
	case n > max:
		return l.errf(ErrBadValue, "want at most %d argument(s), found %d", max, n)
	}
	return nil
}

// header reads the first line, which must be "<docType> <version>".
func (l *lexer) header(docType, version string) error {
	ok, err := l.next()
	if err != nil {
		return err
	}
	if !ok {
		return l.docErr(errorf(ErrWrongType, "empty document; want %q", docType+" "+version))
	}
	if l.cur.kw != docType {
		return l.errf(ErrWrongType, "document starts with %q; want %q", l.cur.kw, docType)
	}
	if len(l.cur.args) != 1 {
		return l.errf(ErrUnknownVersion, "first line %q; want %q", l.cur.text, docType+" "+version)
	}
	if l.cur.args[0] != version {
		return l.errf(ErrUnknownVersion, "%s version %q; this software reads version %s", docType, l.cur.args[0], version)
	}
	return nil
}

// grammar is the ordered list of keywords of one section of a document
// (a descriptor's body, a vote's header, one relay entry). Keywords must
// appear in this order; an item may be optional or repeated.
type grammar struct {
	name  string // "header", "relay entry", ... for messages
	items []gitem
	index map[string]int
	entry bool // the first keyword starts a new section when seen again
}

type gitem struct {
	kws      []string // alternatives sharing one position (accept|reject)
	required bool
	repeat   bool
}

func newGrammar(name string, entry bool, items ...gitem) *grammar {
	g := &grammar{name: name, items: items, index: map[string]int{}, entry: entry}
	if len(items) > 64 {
		panic("netdoc: grammar too long")
	}
	for i, it := range items {
		for _, kw := range it.kws {
			g.index[kw] = i
		}
	}
	return g
}

func req(kw ...string) gitem  { return gitem{kws: kw, required: true} }
func opt(kw ...string) gitem  { return gitem{kws: kw} }
func reqN(kw ...string) gitem { return gitem{kws: kw, required: true, repeat: true} }
func optN(kw ...string) gitem { return gitem{kws: kw, repeat: true} }

func (it gitem) name() string { return strings.Join(it.kws, "|") }

// section reads the lines of one section, calling fn with each line's
// grammar position, until a keyword in stop (left unread) or the end of the
// document. It reports unknown, duplicate, out-of-order and missing
// keywords.
func (l *lexer) section(g *grammar, stop map[string]bool, fn func(idx int) error) error {
	pos := 0
	var seen uint64
	eof := false
	for {
		ok, err := l.next()
		if err != nil {
			return err
		}
		if !ok {
			eof = true
			break
		}
		kw := l.cur.kw
		idx, inSection := g.index[kw]
		if inSection && idx == 0 && g.entry && seen != 0 {
			l.back() // the next entry starts
			break
		}
		if !inSection {
			if stop[kw] {
				l.back()
				break
			}
			if l.known[kw] {
				return l.errf(ErrKeywordOrder, "keyword %q does not belong in the %s", kw, g.name)
			}
			return l.errf(ErrUnknownKeyword, "%q is not a %s keyword", kw, l.docName)
		}
		it := g.items[idx]
		if seen&(1<<idx) != 0 && !it.repeat {
			return l.errf(ErrDuplicateKeyword, "%q appears twice in the %s", kw, g.name)
		}
		if idx < pos {
			return l.errf(ErrKeywordOrder, "%q must come before %q", kw, g.items[pos-1].name())
		}
		for j := pos; j < idx; j++ {
			if g.items[j].required && seen&(1<<j) == 0 {
				return l.missing(g, j, stop, kw)
			}
		}
		seen |= 1 << idx
		if it.repeat {
			pos = idx
		} else {
			pos = idx + 1
		}
		if err := fn(idx); err != nil {
			return err
		}
	}
	here := l.cur.kw
	if eof {
		here = ""
	}
	for j := pos; j < len(g.items); j++ {
		if g.items[j].required && seen&(1<<j) == 0 {
			return l.missing(g, j, stop, here)
		}
	}
	return nil
}

// missing reports required item j as missing before keyword here ("" at
// the end of the document), or as out of order when it appears further on
// in the same section.
func (l *lexer) missing(g *grammar, j int, stop map[string]bool, here string) error {
	want := g.items[j]
	// Look ahead, without validating, to the end of this section (unless
	// the section has already ended).
	rest := l.doc[l.pos:]
	if l.unread {
		rest = ""
	}
	for rest != "" {
		ln := rest
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			ln, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		kw, _, _ := strings.Cut(ln, " ")
		if stop[kw] || (g.entry && kw == g.items[0].kws[0]) {
			break
		}
		for _, w := range want.kws {
			if kw == w {
				return l.errf(ErrKeywordOrder, "%q must come before %q", w, here)
			}
		}
	}
	if here == "" {
		return &ParseError{Doc: l.docName, Line: l.num, Err: errorf(ErrMissingKeyword, "%q missing from the %s at the end of the document", want.name(), g.name)}
	}
	return l.errf(ErrMissingKeyword, "%q missing from the %s (found %q)", want.name(), g.name, here)
}

// knownSet builds the set of every keyword of a document type.
func knownSet(extra []string, gs ...*grammar) map[string]bool {
	m := map[string]bool{}
	for _, g := range gs {
		for kw := range g.index {
			m[kw] = true
		}
	}
	for _, kw := range extra {
		m[kw] = true
	}
	return m
}
