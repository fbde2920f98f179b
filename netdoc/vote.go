package netdoc

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/chive-net/chive/layercrypt"
)

// Vote document constants.
const (
	VoteType    = "chive-vote"
	VoteVersion = "1"
	MaxVoteSize = 64 << 20

	// MaxConsensusMethods bounds the consensus-methods list of a vote.
	MaxConsensusMethods = 16
)

// ConsensusMethod is the newest consensus method this software computes.
// Method 1 is the algorithm of ComputeConsensus as documented in
// docs/DIRECTORY.md.
const ConsensusMethod = 1

// SupportedConsensusMethods are the methods this software can compute, in
// ascending order; authorities put them in their votes.
var SupportedConsensusMethods = []int{1}

// Vote is one authority's view of the network for one voting period,
// signed by the authority's identity key.
type Vote struct {
	Authority        layercrypt.RelayID
	ConsensusMethods []int         // methods the authority can compute, ascending
	ValidAfter       time.Time     // start of the period this vote is for
	FreshUntil       time.Time     // when the next consensus is expected
	ValidUntil       time.Time     // when a consensus from these votes stops being usable
	VotingPeriod     time.Duration // whole seconds
	KnownFlags       Flags         // flags this authority has an opinion on
	Relays           []VoteEntry   // sorted by ID bytes, no duplicates

	digest Digest
}

// VoteEntry is an authority's opinion of one relay.
type VoteEntry struct {
	RelayStatus
	Advertised uint64    // bandwidth the descriptor advertises, bytes/s
	Measured   uint64    // bandwidth the authority measured, bytes/s; 0 = not measured
	Descriptor Digest    // SHA-256 of the descriptor the entry was made from
	Published  time.Time // the descriptor's published time
}

// Weight is the bandwidth this vote gives the relay: Measured if there is
// a measurement, else Advertised.
func (e *VoteEntry) Weight() uint64 {
	if e.Measured > 0 {
		return e.Measured
	}
	return e.Advertised
}

// Digest returns the SHA-256 of the vote's complete signed bytes; zero until
// signed or parsed.
func (v *Vote) Digest() Digest { return v.digest }

// Vote header keywords, in order.
const (
	kwAuthority        = "authority"
	kwConsensusMethods = "consensus-methods"
	kwValidAfter       = "valid-after"
	kwFreshUntil       = "fresh-until"
	kwValidUntil       = "valid-until"
	kwVotingPeriod     = "voting-period"
	kwKnownFlags       = "known-flags"
)

var (
	voteHeaderGrammar = newGrammar("vote header", false,
		req(kwAuthority), req(kwConsensusMethods), req(kwValidAfter), req(kwFreshUntil),
		req(kwValidUntil), req(kwVotingPeriod), req(kwKnownFlags))
	voteEntryGrammar = newGrammar("relay entry", true,
		req(kwR), req(kwA), req(kwS), req(kwW), req(kwP), req(kwD), opt(kwF), req(kwPr), req(kwM))
	voteKnown = knownSet([]string{VoteType, kwSignature}, voteHeaderGrammar, voteEntryGrammar)
	voteStop  = map[string]bool{kwR: true, kwSignature: true}
)

// checkPeriod checks the times shared by votes and consensuses.
func checkPeriod(va, fu, vu time.Time, period time.Duration) error {
	for _, t := range []struct {
		what string
		t    time.Time
	}{{kwValidAfter, va}, {kwFreshUntil, fu}, {kwValidUntil, vu}} {
		if err := checkTime(t.what, t.t); err != nil {
			return err
		}
	}
	if !va.Before(fu) || fu.After(vu) {
		return errorf(ErrBadValue, "times must satisfy valid-after (%s) < fresh-until (%s) <= valid-until (%s)",
			formatTime(va), formatTime(fu), formatTime(vu))
	}
	return checkSeconds(kwVotingPeriod, period, time.Second, MaxVotingPeriod)
}

// Validate checks the vote's fields and the order of its entries.
func (v *Vote) Validate() error {
	if v.Authority.IsZero() {
		return errorf(ErrBadValue, "authority is not set")
	}
	if err := checkMethods(v.ConsensusMethods); err != nil {
		return err
	}
	if err := checkPeriod(v.ValidAfter, v.FreshUntil, v.ValidUntil, v.VotingPeriod); err != nil {
		return err
	}
	if v.KnownFlags&^AllFlags != 0 {
		return errorf(ErrBadValue, "unknown flag bits %#x", uint8(v.KnownFlags&^AllFlags))
	}
	for i := range v.Relays {
		e := &v.Relays[i]
		if err := e.validate(v.KnownFlags); err != nil {
			return fmt.Errorf("relay %d: %w", i+1, err)
		}
		if e.Advertised > MaxBandwidth || e.Measured > MaxBandwidth {
			return errorf(ErrBadValue, "relay %s: bandwidth above %d", e.ID, uint64(MaxBandwidth))
		}
		if e.Descriptor.IsZero() {
			return errorf(ErrBadValue, "relay %s: descriptor digest is not set", e.ID)
		}
		if err := checkTime("published", e.Published); err != nil {
			return fmt.Errorf("relay %s: %w", e.ID, err)
		}
	}
	return checkSorted(len(v.Relays), func(i int) layercrypt.RelayID { return v.Relays[i].ID })
}

func checkMethods(ms []int) error {
	if len(ms) == 0 || len(ms) > MaxConsensusMethods {
		return errorf(ErrBadValue, "%d consensus methods; want 1-%d", len(ms), MaxConsensusMethods)
	}
	for i, m := range ms {
		if m < 1 || m > 1<<20 {
			return errorf(ErrBadValue, "consensus method %d", m)
		}
		if i > 0 && ms[i-1] >= m {
			return errorf(ErrNonCanonical, "consensus methods %v are not strictly ascending", ms)
		}
	}
	return nil
}

func (v *Vote) appendBody(b []byte) []byte {
	b = append(b, VoteType+" "+VoteVersion+"\n"...)
	b = append(append32(append(b, kwAuthority+" "...), v.Authority), '\n')
	b = append(b, kwConsensusMethods...)
	for _, m := range v.ConsensusMethods {
		b = strconv.AppendInt(append(b, ' '), int64(m), 10)
	}
	b = append(b, '\n')
	b = appendPeriod(b, v.ValidAfter, v.FreshUntil, v.ValidUntil, v.VotingPeriod)
	b = appendKnownFlags(b, v.KnownFlags)
	for i := range v.Relays {
		b = v.Relays[i].appendTo(b)
	}
	return b
}

func appendPeriod(b []byte, va, fu, vu time.Time, period time.Duration) []byte {
	b = append(appendTime(append(b, kwValidAfter+" "...), va), '\n')
	b = append(appendTime(append(b, kwFreshUntil+" "...), fu), '\n')
	b = append(appendTime(append(b, kwValidUntil+" "...), vu), '\n')
	return append(appendDuration(append(b, kwVotingPeriod+" "...), period), '\n')
}

func appendKnownFlags(b []byte, f Flags) []byte {
	b = append(b, kwKnownFlags...)
	if f != 0 {
		b = f.appendText(append(b, ' '))
	}
	return append(b, '\n')
}

func (e *VoteEntry) appendTo(b []byte) []byte {
	b = e.appendHead(b)
	b = append(b, kwW+" advertised="...)
	b = appendUint(b, e.Advertised)
	if e.Measured > 0 {
		b = appendUint(append(b, " measured="...), e.Measured)
	}
	b = append(b, '\n')
	b = e.appendTail(b)
	b = append(b, kwM+" "...)
	b = append32(b, e.Descriptor)
	b = append(b, ' ')
	b = appendTime(b, e.Published)
	return append(b, '\n')
}

// Sign validates the vote, encodes it and signs it with k, which must be
// the key of v.Authority. It records the vote's digest.
func (v *Vote) Sign(k *layercrypt.IdentityKey) ([]byte, error) {
	if err := v.Validate(); err != nil {
		return nil, fmt.Errorf("sign vote: %w", err)
	}
	if k.ID() != v.Authority {
		return nil, fmt.Errorf("sign vote of authority %s with key %s: %w", v.Authority, k.ID(), ErrWrongKey)
	}
	body := v.appendBody(make([]byte, 0, 256+400*len(v.Relays)))
	out := appendSignatureLine(body, signBytes(k, body))
	v.digest = sha256.Sum256(out)
	return out, nil
}

// ParseVote parses a vote strictly, requires its authority to be one of
// authorities and its signature to verify, and requires now to fall between
// two voting periods before valid-after and valid-until. (Votes are made and
// exchanged during the period before the one they are for; the second
// period of slack absorbs clock skew between authorities at the boundary.
// Callers still check that valid-after is the period they are computing.)
func ParseVote(b []byte, authorities []layercrypt.RelayID, now time.Time) (*Vote, error) {
	v, signedEnd, sig, err := parseVote(b)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(authorities, v.Authority) {
		return nil, &ParseError{Doc: "vote", Err: errorf(ErrUnknownAuthority, "vote from %s, which is not among the %d configured authorities", v.Authority, len(authorities))}
	}
	if !verifyBytes(v.Authority, b[:signedEnd], sig) {
		return nil, &ParseError{Doc: "vote", Err: errorf(ErrBadSignature, "signature does not verify with authority key %s", v.Authority)}
	}
	if now.After(v.ValidUntil) {
		return nil, timeError("vote", ErrExpired, v.ValidUntil, now)
	}
	if early := v.ValidAfter.Add(-2 * v.VotingPeriod); now.Before(early) {
		return nil, timeError("vote", ErrNotYetValid, early, now)
	}
	return v, nil
}

// ParseVoteUnverified checks a vote's syntax and canonical form only: not
// its signature, authority or times.
func ParseVoteUnverified(b []byte) (*Vote, error) {
	v, _, _, err := parseVote(b)
	return v, err
}

func parseVote(b []byte) (v *Vote, signedEnd int, sig [layercrypt.SignatureLen]byte, err error) {
	l, err := newLexer("vote", b, MaxVoteSize, voteKnown)
	if err != nil {
		return nil, 0, sig, err
	}
	if err := l.header(VoteType, VoteVersion); err != nil {
		return nil, 0, sig, err
	}
	v = new(Vote)
	err = l.section(voteHeaderGrammar, voteStop, func(int) error {
		c := &l.cur
		var err error
		switch c.kw {
		case kwAuthority:
			if err = l.nargs(1, 1); err == nil {
				v.Authority, err = parseID(c.args[0])
			}
		case kwConsensusMethods:
			if err = l.nargs(1, MaxConsensusMethods); err != nil {
				return err
			}
			v.ConsensusMethods = make([]int, len(c.args))
			for i, a := range c.args {
				var n uint64
				if n, err = parseUint(a, 1<<20); err != nil {
					break
				}
				v.ConsensusMethods[i] = int(n)
			}
			if err == nil {
				err = checkMethods(v.ConsensusMethods)
			}
		case kwValidAfter, kwFreshUntil, kwValidUntil:
			err = parsePeriodLine(l, &v.ValidAfter, &v.FreshUntil, &v.ValidUntil)
		case kwVotingPeriod:
			if err = l.nargs(1, 1); err == nil {
				if v.VotingPeriod, err = parseSeconds(c.args[0], MaxVotingPeriod); err == nil {
					err = checkPeriod(v.ValidAfter, v.FreshUntil, v.ValidUntil, v.VotingPeriod)
				}
			}
		case kwKnownFlags:
			v.KnownFlags, err = parseFlags(c.args)
		}
		if err != nil {
			return l.wrap(err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, sig, err
	}
	err = l.readEntries(func() (layercrypt.RelayID, error) {
		var e VoteEntry
		err := l.section(voteEntryGrammar, voteStop, func(int) error {
			c := &l.cur
			switch c.kw {
			case kwW:
				return l.wrap(parseVoteBandwidth(l, &e))
			case kwM:
				if err := l.nargs(2, 2); err != nil {
					return err
				}
				d, err := decode32("descriptor digest", c.args[0])
				if err != nil {
					return l.wrap(err)
				}
				e.Descriptor = d
				if e.Published, err = parseTime(c.args[1]); err != nil {
					return l.wrap(err)
				}
				return nil
			}
			return e.parseLine(l, v.KnownFlags)
		})
		v.Relays = append(v.Relays, e)
		return e.ID, err
	})
	if err != nil {
		return nil, 0, sig, err
	}
	signedEnd, sig, err = l.signatureTrailer()
	if err != nil {
		return nil, 0, sig, err
	}
	v.digest = sha256.Sum256(b)
	return v, signedEnd, sig, nil
}

// parseVoteBandwidth reads "w advertised=N [measured=M]" (M >= 1).
func parseVoteBandwidth(l *lexer, e *VoteEntry) error {
	args := l.cur.args
	if len(args) < 1 || len(args) > 2 {
		return errorf(ErrBadValue, "want \"w advertised=N [measured=N]\"")
	}
	const adv, meas = "advertised=", "measured="
	if len(args[0]) <= len(adv) || args[0][:len(adv)] != adv {
		return errorf(ErrBadValue, "want \"w advertised=N [measured=N]\"")
	}
	var err error
	if e.Advertised, err = parseUint(args[0][len(adv):], MaxBandwidth); err != nil {
		return err
	}
	if len(args) == 2 {
		if len(args[1]) <= len(meas) || args[1][:len(meas)] != meas {
			return errorf(ErrBadValue, "want \"w advertised=N [measured=N]\"")
		}
		if e.Measured, err = parseUint(args[1][len(meas):], MaxBandwidth); err != nil {
			return err
		}
		if e.Measured == 0 {
			return errorf(ErrNonCanonical, "measured=0; leave measured out when there is no measurement")
		}
	}
	return nil
}

// parsePeriodLine reads one of valid-after, fresh-until, valid-until.
func parsePeriodLine(l *lexer, va, fu, vu *time.Time) error {
	if err := l.nargs(1, 1); err != nil {
		return err
	}
	t, err := parseTime(l.cur.args[0])
	if err != nil {
		return err
	}
	switch l.cur.kw {
	case kwValidAfter:
		*va = t
	case kwFreshUntil:
		*fu = t
	case kwValidUntil:
		*vu = t
	}
	return nil
}
