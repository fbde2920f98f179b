package netdoc

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	"github.com/chive-net/chive/layercrypt"
)

// Consensus document constants.
const (
	ConsensusType    = "chive-consensus"
	ConsensusVersion = "1"
	MaxConsensusSize = 64 << 20
	// MaxVoters bounds the voter lines (and authorities) of a consensus.
	MaxVoters = 64
)

// Consensus is the network's agreed view for one period: computed by every
// authority from the same votes (ComputeConsensus), byte for byte the same,
// and signed by each. A client needs only this document to build circuits.
type Consensus struct {
	Method       int // consensus method used to compute it
	ValidAfter   time.Time
	FreshUntil   time.Time
	ValidUntil   time.Time
	VotingPeriod time.Duration
	KnownFlags   Flags
	Voters       []layercrypt.RelayID // authorities whose votes were used, sorted
	Relays       []ConsensusEntry     // sorted by ID bytes
	Signatures   []Signature          // sorted by authority ID bytes; not part of the body
}

// ConsensusEntry is one relay in the consensus. In a parsed consensus,
// entries with the same delay classes or protocol list share one slice:
// treat DelayClasses, Family and Protocols as read-only (copy before
// changing them).
type ConsensusEntry struct {
	RelayStatus
	Bandwidth uint64 // weight for path selection: low median of the votes' bandwidths, bytes/s
}

// Signature is one authority's signature over a consensus body.
type Signature struct {
	Authority layercrypt.RelayID
	Sig       [layercrypt.SignatureLen]byte
}

// Consensus keywords.
const (
	kwConsensusMethod = "consensus-method"
	kwVoter           = "voter"
	kwAuthoritySig    = "authority-signature"
)

var (
	consensusHeaderGrammar = newGrammar("consensus header", false,
		req(kwConsensusMethod), req(kwValidAfter), req(kwFreshUntil), req(kwValidUntil),
		req(kwVotingPeriod), req(kwKnownFlags), reqN(kwVoter))
	consensusEntryGrammar = newGrammar("relay entry", true,
		req(kwR), req(kwA), req(kwS), req(kwW), req(kwP), req(kwD), opt(kwF), req(kwPr))
	consensusKnown = knownSet([]string{ConsensusType, kwAuthoritySig}, consensusHeaderGrammar, consensusEntryGrammar)
	consensusStop  = map[string]bool{kwR: true, kwAuthoritySig: true}
)

// Validate checks every field and the order of voters, entries and
// signatures.
func (c *Consensus) Validate() error {
	if c.Method < 1 || c.Method > 1<<20 {
		return errorf(ErrBadValue, "consensus method %d", c.Method)
	}
	if err := checkPeriod(c.ValidAfter, c.FreshUntil, c.ValidUntil, c.VotingPeriod); err != nil {
		return err
	}
	if c.KnownFlags&^AllFlags != 0 {
		return errorf(ErrBadValue, "unknown flag bits %#x", uint8(c.KnownFlags&^AllFlags))
	}
	if len(c.Voters) == 0 || len(c.Voters) > MaxVoters {
		return errorf(ErrBadValue, "%d voters; want 1-%d", len(c.Voters), MaxVoters)
	}
	if err := checkSorted(len(c.Voters), func(i int) layercrypt.RelayID { return c.Voters[i] }); err != nil {
		return fmt.Errorf("voters: %w", err)
	}
	for i := range c.Relays {
		e := &c.Relays[i]
		if err := e.validate(c.KnownFlags); err != nil {
			return fmt.Errorf("relay %d: %w", i+1, err)
		}
		if e.Bandwidth > MaxBandwidth {
			return errorf(ErrBadValue, "relay %s: bandwidth above %d", e.ID, uint64(MaxBandwidth))
		}
	}
	if err := checkSorted(len(c.Relays), func(i int) layercrypt.RelayID { return c.Relays[i].ID }); err != nil {
		return err
	}
	if err := checkSorted(len(c.Signatures), func(i int) layercrypt.RelayID { return c.Signatures[i].Authority }); err != nil {
		return fmt.Errorf("signatures: %w", err)
	}
	return nil
}

// Body returns the signed part of the consensus: every line before the
// first authority-signature line. Authorities sign it with SignConsensus.
func (c *Consensus) Body() []byte {
	return c.appendBody(make([]byte, 0, 512+400*len(c.Relays)))
}

func (c *Consensus) appendBody(b []byte) []byte {
	b = append(b, ConsensusType+" "+ConsensusVersion+"\n"...)
	b = appendUint(append(b, kwConsensusMethod+" "...), uint64(c.Method))
	b = append(b, '\n')
	b = appendPeriod(b, c.ValidAfter, c.FreshUntil, c.ValidUntil, c.VotingPeriod)
	b = appendKnownFlags(b, c.KnownFlags)
	for _, v := range c.Voters {
		b = append(append32(append(b, kwVoter+" "...), v), '\n')
	}
	for i := range c.Relays {
		e := &c.Relays[i]
		b = e.appendHead(b)
		b = append(appendUint(append(b, kwW+" "...), e.Bandwidth), '\n')
		b = e.appendTail(b)
	}
	return b
}

// Encode returns the complete document: Body followed by the signature
// lines.
func (c *Consensus) Encode() []byte {
	b := c.appendBody(make([]byte, 0, 512+400*len(c.Relays)+140*len(c.Signatures)))
	for _, s := range c.Signatures {
		b = s.appendLine(b)
	}
	return b
}

// Digest returns the SHA-256 of Body, the value every signature covers.
func (c *Consensus) Digest() Digest { return ConsensusDigest(c.Body()) }

// ConsensusDigest returns the SHA-256 of a consensus body. Clients and
// caches can name a consensus by it.
func ConsensusDigest(body []byte) Digest { return sha256.Sum256(body) }

// SignConsensus signs a consensus body (Consensus.Body) with an authority's
// identity key.
func SignConsensus(body []byte, k *layercrypt.IdentityKey) Signature {
	return Signature{Authority: k.ID(), Sig: signBytes(k, body)}
}

// Verify reports whether s is a valid signature by s.Authority over body.
func (s Signature) Verify(body []byte) bool { return verifyBytes(s.Authority, body, s.Sig) }

func (s Signature) verifyDigest(d Digest) bool {
	return layercrypt.Verify(s.Authority, sigMessageFromDigest(d), s.Sig[:])
}

func (s Signature) appendLine(b []byte) []byte {
	b = append32(append(b, kwAuthoritySig+" "...), s.Authority)
	b = b64.AppendEncode(append(b, ' '), s.Sig[:])
	return append(b, '\n')
}

// Line returns the signature as the line that carries it in a consensus,
// "authority-signature ID SIG\n"; authorities exchange signatures in this
// form.
func (s Signature) Line() []byte { return s.appendLine(nil) }

// ParseSignatureLine parses one "authority-signature ID SIG\n" line.
func ParseSignatureLine(b []byte) (Signature, error) {
	l, err := newLexer("signature", b, MaxLineLen+1, map[string]bool{kwAuthoritySig: true})
	if err != nil {
		return Signature{}, err
	}
	ok, err := l.next()
	if err != nil {
		return Signature{}, err
	}
	if !ok || l.cur.kw != kwAuthoritySig {
		return Signature{}, l.errf(ErrSyntax, "want one %q line", kwAuthoritySig)
	}
	s, err := parseSignatureArgs(l)
	if err != nil {
		return Signature{}, err
	}
	if !l.atEOF() {
		return Signature{}, l.errf(ErrSyntax, "want exactly one line")
	}
	return s, nil
}

func parseSignatureArgs(l *lexer) (Signature, error) {
	var s Signature
	if err := l.nargs(2, 2); err != nil {
		return s, err
	}
	var err error
	if s.Authority, err = parseID(l.cur.args[0]); err != nil {
		return s, l.wrap(err)
	}
	if s.Sig, err = parseSig(l.cur.args[1]); err != nil {
		return s, l.wrap(err)
	}
	return s, nil
}

// AddSignature inserts s in order. It does not verify s (see
// Signature.Verify); a second signature by the same authority is an error.
func (c *Consensus) AddSignature(s Signature) error {
	i, found := slices.BinarySearchFunc(c.Signatures, s.Authority, func(e Signature, id layercrypt.RelayID) int {
		return compareIDs(e.Authority, id)
	})
	if found {
		return errorf(ErrDuplicateEntry, "consensus already has a signature from %s", s.Authority)
	}
	c.Signatures = slices.Insert(c.Signatures, i, s)
	return nil
}

// CheckSignatures verifies the signatures against Body and the configured
// authorities. Signatures from keys that are not configured do not count;
// a configured authority's signature that does not verify does not count
// either. It returns ErrNotEnoughSignatures (a *SignatureError) unless more
// than half of the configured authorities signed.
func (c *Consensus) CheckSignatures(authorities []layercrypt.RelayID) (SignatureReport, error) {
	return checkSignatures(ConsensusDigest(c.Body()), c.Signatures, authorities)
}

func checkSignatures(d Digest, sigs []Signature, authorities []layercrypt.RelayID) (SignatureReport, error) {
	auths := slices.Clone(authorities)
	slices.SortFunc(auths, compareIDs)
	auths = slices.Compact(auths)
	var r SignatureReport
	if len(auths) == 0 {
		return r, ErrNoAuthorities
	}
	r.Configured = len(auths)
	r.Needed = len(auths)/2 + 1
	for _, s := range sigs {
		if _, ok := slices.BinarySearchFunc(auths, s.Authority, compareIDs); !ok {
			r.Unknown = append(r.Unknown, s.Authority)
			continue
		}
		if s.verifyDigest(d) {
			r.Valid = append(r.Valid, s.Authority)
		} else {
			r.Bad = append(r.Bad, s.Authority)
		}
	}
	if !r.OK() {
		return r, &SignatureError{Report: r}
	}
	return r, nil
}

// CheckTime returns ErrExpired if now is after ValidUntil and
// ErrNotYetValid if now is before ValidAfter.
func (c *Consensus) CheckTime(now time.Time) error {
	if now.After(c.ValidUntil) {
		return timeError("consensus", ErrExpired, c.ValidUntil, now)
	}
	if now.Before(c.ValidAfter) {
		return timeError("consensus", ErrNotYetValid, c.ValidAfter, now)
	}
	return nil
}

// MinUsableRelays is how many Running relays a usable consensus lists: a
// circuit has three hops on distinct relays.
const MinUsableRelays = 3

// Usable reports whether a client can build a circuit from c at now: c is
// valid at now (CheckTime) and lists at least MinUsableRelays Running
// relays, one of them a Running Exit. Otherwise it returns an error that
// wraps ErrExpired, ErrNotYetValid or ErrUnusable. Authorities run their
// initial voting schedule, and clients refetch quickly, while the
// consensus they hold is not usable.
func (c *Consensus) Usable(now time.Time) error {
	if err := c.CheckTime(now); err != nil {
		return err
	}
	running, exits := 0, 0
	for i := range c.Relays {
		if f := c.Relays[i].Flags; f.Has(FlagRunning) {
			running++
			if f.Has(FlagExit) {
				exits++
			}
		}
	}
	if running < MinUsableRelays || exits == 0 {
		return fmt.Errorf("%w: it lists %d Running relays (%d of them exits); a circuit needs %d, one an exit",
			ErrUnusable, running, exits, MinUsableRelays)
	}
	return nil
}

// ParseConsensus parses a consensus strictly, then requires valid
// signatures from more than half of the configured authorities (over the
// exact body bytes) and valid-after <= now <= valid-until.
func ParseConsensus(b []byte, authorities []layercrypt.RelayID, now time.Time) (*Consensus, error) {
	if len(authorities) == 0 {
		return nil, ErrNoAuthorities
	}
	c, bodyEnd, err := parseConsensus(b)
	if err != nil {
		return nil, err
	}
	if _, err := checkSignatures(ConsensusDigest(b[:bodyEnd]), c.Signatures, authorities); err != nil {
		return nil, err
	}
	if err := c.CheckTime(now); err != nil {
		return nil, err
	}
	return c, nil
}

// ParseConsensusUnverified checks a consensus's syntax and canonical form
// only: not its signatures nor its times. For authorities re-reading their
// own stored documents and for tools.
func ParseConsensusUnverified(b []byte) (*Consensus, error) {
	c, _, err := parseConsensus(b)
	return c, err
}

func parseConsensus(b []byte) (*Consensus, int, error) {
	l, err := newLexer("consensus", b, MaxConsensusSize, consensusKnown)
	if err != nil {
		return nil, 0, err
	}
	if err := l.header(ConsensusType, ConsensusVersion); err != nil {
		return nil, 0, err
	}
	c := new(Consensus)
	err = l.section(consensusHeaderGrammar, consensusStop, func(int) error {
		cur := &l.cur
		var err error
		switch cur.kw {
		case kwConsensusMethod:
			if err = l.nargs(1, 1); err == nil {
				var n uint64
				if n, err = parseUint(cur.args[0], 1<<20); err == nil && n == 0 {
					err = errorf(ErrBadValue, "consensus method 0")
				}
				c.Method = int(n)
			}
		case kwValidAfter, kwFreshUntil, kwValidUntil:
			err = parsePeriodLine(l, &c.ValidAfter, &c.FreshUntil, &c.ValidUntil)
		case kwVotingPeriod:
			if err = l.nargs(1, 1); err == nil {
				if c.VotingPeriod, err = parseSeconds(cur.args[0], MaxVotingPeriod); err == nil {
					err = checkPeriod(c.ValidAfter, c.FreshUntil, c.ValidUntil, c.VotingPeriod)
				}
			}
		case kwKnownFlags:
			c.KnownFlags, err = parseFlags(cur.args)
		case kwVoter:
			if err = l.nargs(1, 1); err != nil {
				break
			}
			var id layercrypt.RelayID
			if id, err = parseID(cur.args[0]); err != nil {
				break
			}
			if n := len(c.Voters); n > 0 && compareIDs(c.Voters[n-1], id) >= 0 {
				err = errorf(ErrUnsorted, "voters must be sorted by ID bytes without repeats")
			} else if n >= MaxVoters {
				err = errorf(ErrBadValue, "more than %d voters", MaxVoters)
			}
			c.Voters = append(c.Voters, id)
		}
		return l.wrap(err)
	})
	if err != nil {
		return nil, 0, err
	}
	c.Relays = make([]ConsensusEntry, 0, len(b)/300)
	err = l.readEntries(func() (layercrypt.RelayID, error) {
		c.Relays = append(c.Relays, ConsensusEntry{})
		e := &c.Relays[len(c.Relays)-1]
		err := l.section(consensusEntryGrammar, consensusStop, func(int) error {
			if l.cur.kw == kwW {
				if err := l.nargs(1, 1); err != nil {
					return err
				}
				var err error
				e.Bandwidth, err = parseUint(l.cur.args[0], MaxBandwidth)
				return l.wrap(err)
			}
			return e.parseLine(l, c.KnownFlags)
		})
		return e.ID, err
	})
	if err != nil {
		return nil, 0, err
	}
	// The body ends at the first signature line.
	bodyEnd := len(b)
	for {
		ok, err := l.next()
		if err != nil {
			return nil, 0, err
		}
		if !ok {
			break
		}
		if l.cur.kw != kwAuthoritySig {
			if !l.known[l.cur.kw] {
				return nil, 0, l.errf(ErrUnknownKeyword, "%q is not a consensus keyword", l.cur.kw)
			}
			return nil, 0, l.errf(ErrKeywordOrder, "only %q lines may follow the relay entries", kwAuthoritySig)
		}
		if len(c.Signatures) == 0 {
			bodyEnd = l.cur.off
		}
		s, err := parseSignatureArgs(l)
		if err != nil {
			return nil, 0, err
		}
		if n := len(c.Signatures); n > 0 {
			switch cmp := compareIDs(c.Signatures[n-1].Authority, s.Authority); {
			case cmp == 0:
				return nil, 0, l.errf(ErrDuplicateEntry, "two signatures from authority %s", s.Authority)
			case cmp > 0:
				return nil, 0, l.errf(ErrUnsorted, "signatures must be sorted by authority ID bytes")
			}
		}
		if len(c.Signatures) >= MaxVoters {
			return nil, 0, l.errf(ErrBadValue, "more than %d signatures", MaxVoters)
		}
		c.Signatures = append(c.Signatures, s)
	}
	return c, bodyEnd, nil
}

// Relay returns the entry for id, if listed.
func (c *Consensus) Relay(id layercrypt.RelayID) (*ConsensusEntry, bool) {
	i, ok := slices.BinarySearchFunc(c.Relays, id, func(e ConsensusEntry, id layercrypt.RelayID) int {
		return compareIDs(e.ID, id)
	})
	if !ok {
		return nil, false
	}
	return &c.Relays[i], true
}

// SameFamily reports whether a and b are in one family: both listed, and
// each lists the other in its family. A one-sided claim does not count, as
// in Tor: otherwise a relay could, by naming honest relays, keep them off
// every path it is on.
func (c *Consensus) SameFamily(a, b layercrypt.RelayID) bool {
	ea, ok := c.Relay(a)
	if !ok {
		return false
	}
	eb, ok := c.Relay(b)
	if !ok {
		return false
	}
	_, ab := slices.BinarySearchFunc(ea.Family, b, compareIDs)
	_, ba := slices.BinarySearchFunc(eb.Family, a, compareIDs)
	return ab && ba
}
