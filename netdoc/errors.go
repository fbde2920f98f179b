package netdoc

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chive-net/chive/layercrypt"
)

// Sentinel errors. Every error from this package wraps one of them, so a
// caller can branch with errors.Is; parse errors also carry the document
// type, line number and keyword in a *ParseError.
var (
	// Document structure.
	ErrWrongType        = errors.New("netdoc: not the expected document type")
	ErrUnknownVersion   = errors.New("netdoc: unsupported document version")
	ErrSyntax           = errors.New("netdoc: malformed line")
	ErrTooLarge         = errors.New("netdoc: document too large")
	ErrUnknownKeyword   = errors.New("netdoc: unknown keyword")
	ErrMissingKeyword   = errors.New("netdoc: missing required keyword")
	ErrDuplicateKeyword = errors.New("netdoc: duplicate keyword")
	ErrKeywordOrder     = errors.New("netdoc: keyword out of order")
	ErrDuplicateEntry   = errors.New("netdoc: duplicate entry")
	ErrUnsorted         = errors.New("netdoc: entries not sorted")
	ErrBadValue         = errors.New("netdoc: bad value")
	ErrNonCanonical     = errors.New("netdoc: value not in canonical form")

	// Signatures and authorities.
	ErrBadSignature        = errors.New("netdoc: bad signature")
	ErrWrongKey            = errors.New("netdoc: signing key does not match the document's identity")
	ErrUnknownAuthority    = errors.New("netdoc: not a configured authority")
	ErrNotEnoughSignatures = errors.New("netdoc: not enough authority signatures")
	ErrNoAuthorities       = errors.New("netdoc: no authorities configured")

	// Time.
	ErrExpired     = errors.New("netdoc: document expired")
	ErrNotYetValid = errors.New("netdoc: document not yet valid")

	// Consensus computation.
	ErrNotEnoughVotes    = errors.New("netdoc: not enough votes")
	ErrDuplicateVote     = errors.New("netdoc: two votes from one authority")
	ErrNoConsensusMethod = errors.New("netdoc: no consensus method supported by a majority of votes")

	// ErrUnusable: a valid consensus lists too few Running relays to build
	// a circuit (Consensus.Usable).
	ErrUnusable = errors.New("netdoc: consensus not usable")
)

// ParseError says where in which document a parse failed.
type ParseError struct {
	Doc     string // "descriptor", "vote", "consensus"
	Line    int    // 1-based; 0 when the error concerns the whole document
	Keyword string // the line's keyword, if known
	Err     error  // wraps a sentinel
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString("netdoc: ")
	b.WriteString(e.Doc)
	if e.Line > 0 {
		fmt.Fprintf(&b, " line %d", e.Line)
	}
	if e.Keyword != "" {
		fmt.Fprintf(&b, " (%s)", e.Keyword)
	}
	b.WriteString(": ")
	b.WriteString(strings.TrimPrefix(e.Err.Error(), "netdoc: "))
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// detailError is an error with its own message that still matches a
// sentinel under errors.Is.
type detailError struct {
	msg string
	err error
}

func (e *detailError) Error() string { return e.msg }
func (e *detailError) Unwrap() error { return e.err }

// errorf makes an error whose text is "<sentinel text>: <details>" and which
// wraps the sentinel.
func errorf(sentinel error, format string, args ...any) error {
	return &detailError{msg: sentinel.Error() + ": " + fmt.Sprintf(format, args...), err: sentinel}
}

// timeError builds the message for a document outside its validity window.
func timeError(doc string, sentinel error, edge, now time.Time) error {
	var msg string
	switch sentinel {
	case ErrExpired:
		msg = fmt.Sprintf("netdoc: %s expired at %s (now %s); fetch a newer one, or check this computer's clock",
			doc, formatTime(edge), formatTime(now.UTC().Truncate(time.Second)))
	default:
		msg = fmt.Sprintf("netdoc: %s is not valid until %s (now %s); check this computer's clock",
			doc, formatTime(edge), formatTime(now.UTC().Truncate(time.Second)))
	}
	return &detailError{msg: msg, err: sentinel}
}

// SignatureReport says which authorities' signatures on a consensus
// verified.
type SignatureReport struct {
	Configured int                  // number of configured authorities
	Needed     int                  // valid signatures required: Configured/2 + 1
	Valid      []layercrypt.RelayID // configured authorities whose signature verified
	Bad        []layercrypt.RelayID // configured authorities whose signature did not verify (over other bytes, or forged)
	Unknown    []layercrypt.RelayID // signers that are not configured authorities; their signatures do not count
}

// OK reports whether enough authorities signed.
func (r SignatureReport) OK() bool { return len(r.Valid) >= r.Needed }

// SignatureError is returned when a consensus lacks a majority of valid
// authority signatures. It matches ErrNotEnoughSignatures.
type SignatureError struct {
	Report SignatureReport
}

func (e *SignatureError) Error() string {
	r := e.Report
	var b strings.Builder
	fmt.Fprintf(&b, "netdoc: consensus signed by %d of %d configured authorities; need %d", len(r.Valid), r.Configured, r.Needed)
	var notes []string
	for _, id := range r.Bad {
		notes = append(notes, "bad signature from "+id.String())
	}
	switch len(r.Unknown) {
	case 0:
	case 1:
		notes = append(notes, "1 signature from an unknown key ignored")
	default:
		notes = append(notes, fmt.Sprintf("%d signatures from unknown keys ignored", len(r.Unknown)))
	}
	if len(notes) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(notes, "; "))
		b.WriteString(")")
	}
	b.WriteString(": the consensus may be forged or signed by other authorities; check the configured authority keys")
	return b.String()
}

// Is makes errors.Is(err, ErrNotEnoughSignatures) true.
func (e *SignatureError) Is(target error) bool { return target == ErrNotEnoughSignatures }

// mustNotHappen reports a broken internal invariant as an error rather than
// a panic, so that a parser bug cannot crash a relay or client.
func mustNotHappen(format string, args ...any) error {
	return fmt.Errorf("netdoc: internal error: "+format, args...)
}
