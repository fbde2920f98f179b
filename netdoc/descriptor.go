package netdoc

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/layercrypt"
)

// Descriptor document constants.
const (
	DescriptorType    = "chive-descriptor"
	DescriptorVersion = "1"
	MaxDescriptorSize = 64 << 10

	// DefaultDescriptorMaxAge is how old a descriptor may be and still be
	// accepted; relays republish well before (Tor: every 18 hours at most).
	DefaultDescriptorMaxAge = 24 * time.Hour
	// DefaultDescriptorMaxFuture is how far in the future a descriptor's
	// published time may be (clock skew between relay and authority).
	DefaultDescriptorMaxFuture = 5 * time.Minute
)

// Descriptor is what a relay says about itself, signed by its identity key
// and uploaded to the authorities.
type Descriptor struct {
	Nickname     string                    // 1-19 ASCII letters and digits
	ID           layercrypt.RelayID        // identity; the descriptor is signed by this key
	Published    time.Time                 // UTC, whole seconds
	Platform     string                    // free text ("chive 0.1.0 linux/amd64"); optional
	Protocols    Protocols                 // sub-protocol versions spoken
	Addr         netip.AddrPort            // IPv4 address and port for links
	Addr6        netip.AddrPort            // optional IPv6 address and port (zero value: none)
	OnionKey     layercrypt.OnionPublicKey // current ntor onion key
	PrevOnionKey layercrypt.OnionPublicKey // previous onion key, still accepted (zero: none)
	Bandwidth    uint64                    // advertised bandwidth, bytes/s
	Uptime       time.Duration             // whole seconds since the relay started
	DelayClasses []uint8                   // mixing delay classes served, ascending
	Family       []layercrypt.RelayID      // relays run by the same operator, sorted (NormalizeFamily)
	Policy       exitpolicy.Policy         // the full exit policy; RejectAll for non-exits

	digest Digest // SHA-256 of the signed bytes; set by Sign and the parsers
}

// DescriptorLimits bound a descriptor's published time relative to now.
type DescriptorLimits struct {
	MaxAge    time.Duration // older descriptors are ErrExpired
	MaxFuture time.Duration // descriptors from further in the future are ErrNotYetValid
}

// DefaultDescriptorLimits are the limits ParseDescriptor applies.
var DefaultDescriptorLimits = DescriptorLimits{MaxAge: DefaultDescriptorMaxAge, MaxFuture: DefaultDescriptorMaxFuture}

// Digest returns the SHA-256 of the descriptor's signed bytes, as votes
// list it. It is zero until the descriptor has been signed or parsed.
func (d *Descriptor) Digest() Digest { return d.digest }

// Descriptor keywords, in order.
const (
	kwNickname     = "nickname"
	kwIdentity     = "identity"
	kwPublished    = "published"
	kwPlatform     = "platform"
	kwProto        = "proto"
	kwAddress      = "address"
	kwAddress6     = "address6"
	kwOnionKey     = "onion-key"
	kwOnionKeyPrev = "onion-key-previous"
	kwBandwidth    = "bandwidth"
	kwUptime       = "uptime"
	kwDelayClasses = "delay-classes"
	kwFamily       = "family"
	kwAccept       = "accept"
	kwReject       = "reject"
)

var descGrammar = newGrammar("descriptor", false,
	req(kwNickname), req(kwIdentity), req(kwPublished), opt(kwPlatform), req(kwProto),
	req(kwAddress), opt(kwAddress6), req(kwOnionKey), opt(kwOnionKeyPrev),
	req(kwBandwidth), req(kwUptime), req(kwDelayClasses), opt(kwFamily),
	reqN(kwAccept, kwReject),
)

var (
	descKnown = knownSet([]string{DescriptorType, kwSignature}, descGrammar)
	descStop  = map[string]bool{kwSignature: true}
)

// Validate checks every field against the rules of the encoding.
func (d *Descriptor) Validate() error {
	if err := checkNickname(d.Nickname); err != nil {
		return err
	}
	if d.ID.IsZero() {
		return errorf(ErrBadValue, "identity is not set")
	}
	if err := checkTime("published", d.Published); err != nil {
		return err
	}
	if err := checkPlatform(d.Platform); err != nil {
		return err
	}
	if err := d.Protocols.Validate(); err != nil {
		return err
	}
	if err := checkAddr4(d.Addr); err != nil {
		return err
	}
	if d.Addr6.IsValid() || d.Addr6.Port() != 0 {
		if err := checkAddr6(d.Addr6); err != nil {
			return err
		}
	}
	if d.OnionKey.IsZero() {
		return errorf(ErrBadValue, "onion key is not set")
	}
	if d.Bandwidth > MaxBandwidth {
		return errorf(ErrBadValue, "bandwidth %d is above %d", d.Bandwidth, uint64(MaxBandwidth))
	}
	if err := checkSeconds("uptime", d.Uptime, 0, MaxUptime*time.Second); err != nil {
		return err
	}
	if err := checkDelayClasses(d.DelayClasses); err != nil {
		return err
	}
	if err := checkFamily(d.ID, d.Family); err != nil {
		return err
	}
	if err := d.Policy.Validate(); err != nil {
		return errorf(ErrBadValue, "exit policy: %v", err)
	}
	return nil
}

// appendBody writes every line up to, not including, the signature line.
func (d *Descriptor) appendBody(b []byte) []byte {
	b = append(b, DescriptorType+" "+DescriptorVersion+"\n"...)
	b = append(append(append(b, kwNickname+" "...), d.Nickname...), '\n')
	b = append(append32(append(b, kwIdentity+" "...), d.ID), '\n')
	b = append(appendTime(append(b, kwPublished+" "...), d.Published), '\n')
	if d.Platform != "" {
		b = append(append(append(b, kwPlatform+" "...), d.Platform...), '\n')
	}
	b = append(d.Protocols.appendText(append(b, kwProto+" "...)), '\n')
	b = append(d.Addr.AppendTo(append(b, kwAddress+" "...)), '\n')
	if d.Addr6.IsValid() {
		b = append(d.Addr6.AppendTo(append(b, kwAddress6+" "...)), '\n')
	}
	b = append(append32(append(b, kwOnionKey+" "...), d.OnionKey), '\n')
	if !d.PrevOnionKey.IsZero() {
		b = append(append32(append(b, kwOnionKeyPrev+" "...), d.PrevOnionKey), '\n')
	}
	b = append(appendUint(append(b, kwBandwidth+" "...), d.Bandwidth), '\n')
	b = append(appendDuration(append(b, kwUptime+" "...), d.Uptime), '\n')
	b = append(appendDelayClasses(append(b, kwDelayClasses+" "...), d.DelayClasses), '\n')
	if len(d.Family) > 0 {
		b = append(appendFamily(append(b, kwFamily+" "...), d.Family), '\n')
	}
	for _, r := range d.Policy.Rules {
		b = append(r.AppendText(b), '\n')
	}
	return append(d.Policy.DefaultRule().AppendText(b), '\n')
}

// Sign validates the descriptor, encodes it and signs it with k, which must
// be the key of d.ID. It returns the complete document and records its
// digest (Digest).
func (d *Descriptor) Sign(k *layercrypt.IdentityKey) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("sign descriptor: %w", err)
	}
	if k.ID() != d.ID {
		return nil, fmt.Errorf("sign descriptor of %s with key %s: %w", d.ID, k.ID(), ErrWrongKey)
	}
	body := d.appendBody(make([]byte, 0, 2048))
	out := appendSignatureLine(body, signBytes(k, body))
	d.digest = sha256.Sum256(out)
	return out, nil
}

// ParseDescriptor parses a descriptor strictly, checks its signature against
// the identity it names, and checks its published time against now with
// DefaultDescriptorLimits.
func ParseDescriptor(b []byte, now time.Time) (*Descriptor, error) {
	return ParseDescriptorWithLimits(b, now, DefaultDescriptorLimits)
}

// ParseDescriptorWithLimits is ParseDescriptor with explicit time limits.
func ParseDescriptorWithLimits(b []byte, now time.Time, lim DescriptorLimits) (*Descriptor, error) {
	d, signedEnd, sig, err := parseDescriptor(b)
	if err != nil {
		return nil, err
	}
	if !verifyBytes(d.ID, b[:signedEnd], sig) {
		return nil, &ParseError{Doc: "descriptor", Err: errorf(ErrBadSignature, "signature does not verify with the descriptor's identity key %s", d.ID)}
	}
	if d.Published.After(now.Add(lim.MaxFuture)) {
		return nil, &detailError{err: ErrNotYetValid, msg: fmt.Sprintf(
			"netdoc: descriptor published %s, more than %s after now (%s); check the relay's and this computer's clocks",
			formatTime(d.Published), lim.MaxFuture, formatTime(now.UTC().Truncate(time.Second)))}
	}
	if d.Published.Add(lim.MaxAge).Before(now) {
		return nil, timeError("descriptor", ErrExpired, d.Published.Add(lim.MaxAge), now)
	}
	return d, nil
}

// ParseDescriptorUnverified checks a descriptor's syntax and canonical form
// only: not its signature nor its age. For tools and for re-reading
// documents whose signature was checked when they were stored.
func ParseDescriptorUnverified(b []byte) (*Descriptor, error) {
	d, _, _, err := parseDescriptor(b)
	return d, err
}

func parseDescriptor(b []byte) (d *Descriptor, signedEnd int, sig [layercrypt.SignatureLen]byte, err error) {
	l, err := newLexer("descriptor", b, MaxDescriptorSize, descKnown)
	if err != nil {
		return nil, 0, sig, err
	}
	if err := l.header(DescriptorType, DescriptorVersion); err != nil {
		return nil, 0, sig, err
	}
	d = new(Descriptor)
	var rules []exitpolicy.Rule
	err = l.section(descGrammar, descStop, func(int) error {
		c := &l.cur
		var err error
		switch c.kw {
		case kwNickname:
			if err = l.nargs(1, 1); err == nil {
				d.Nickname = strings.Clone(c.args[0])
				err = checkNickname(d.Nickname)
			}
		case kwIdentity:
			if err = l.nargs(1, 1); err == nil {
				d.ID, err = parseID(c.args[0])
			}
		case kwPublished:
			if err = l.nargs(1, 1); err == nil {
				d.Published, err = parseTime(c.args[0])
			}
		case kwPlatform:
			if err = l.nargs(1, MaxLineLen); err == nil {
				d.Platform = strings.Clone(c.rest)
				err = checkPlatform(d.Platform)
			}
		case kwProto:
			d.Protocols, err = parseProtocols(c.args)
		case kwAddress:
			if err = l.nargs(1, 1); err == nil {
				d.Addr, err = parseAddrPort(c.args[0], false)
			}
		case kwAddress6:
			if err = l.nargs(1, 1); err == nil {
				d.Addr6, err = parseAddrPort(c.args[0], true)
			}
		case kwOnionKey:
			if err = l.nargs(1, 1); err == nil {
				d.OnionKey, err = parseOnionKey(c.args[0])
			}
		case kwOnionKeyPrev:
			if err = l.nargs(1, 1); err == nil {
				d.PrevOnionKey, err = parseOnionKey(c.args[0])
			}
		case kwBandwidth:
			if err = l.nargs(1, 1); err == nil {
				d.Bandwidth, err = parseUint(c.args[0], MaxBandwidth)
			}
		case kwUptime:
			if err = l.nargs(1, 1); err == nil {
				d.Uptime, err = parseSeconds(c.args[0], MaxUptime*time.Second)
			}
		case kwDelayClasses:
			d.DelayClasses, err = parseDelayClasses(c.args)
		case kwFamily:
			if err = l.nargs(1, MaxFamily); err == nil {
				if d.Family, err = parseFamily(c.args); err == nil {
					err = checkFamily(d.ID, d.Family)
				}
			}
		case kwAccept, kwReject:
			if len(rules) > exitpolicy.MaxRules {
				return l.errf(ErrBadValue, "exit policy has more than %d rules", exitpolicy.MaxRules)
			}
			r, perr := exitpolicy.ParseRule(c.text)
			if perr != nil {
				return l.wrap(policyErr(perr))
			}
			rules = append(rules, r)
		}
		if err != nil {
			return l.wrap(err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, sig, err
	}
	// The policy ends with its default, a catch-all rule.
	last := rules[len(rules)-1]
	if !last.IsCatchAll() {
		return nil, 0, sig, l.errf(ErrBadValue, "the exit policy must end with \"accept *:*\" or \"reject *:*\"")
	}
	d.Policy = exitpolicy.Policy{Rules: rules[:len(rules)-1], Default: last.Action}
	if len(d.Policy.Rules) == 0 {
		d.Policy.Rules = nil
	}
	signedEnd, sig, err = l.signatureTrailer()
	if err != nil {
		return nil, 0, sig, err
	}
	d.digest = sha256.Sum256(b)
	return d, signedEnd, sig, nil
}

// signatureTrailer reads the final "signature SIG" line and checks that
// nothing follows. It returns the offset where the signed bytes end.
func (l *lexer) signatureTrailer() (int, [layercrypt.SignatureLen]byte, error) {
	var sig [layercrypt.SignatureLen]byte
	ok, err := l.next()
	if err != nil {
		return 0, sig, err
	}
	if !ok {
		return 0, sig, &ParseError{Doc: l.docName, Line: l.num, Err: errorf(ErrMissingKeyword, "%q missing at the end of the document", kwSignature)}
	}
	if l.cur.kw != kwSignature {
		return 0, sig, l.errf(ErrKeywordOrder, "want %q here", kwSignature)
	}
	end := l.cur.off
	if err := l.nargs(1, 1); err != nil {
		return 0, sig, err
	}
	if sig, err = parseSig(l.cur.args[0]); err != nil {
		return 0, sig, l.wrap(err)
	}
	ok, err = l.next()
	if err != nil {
		return 0, sig, err
	}
	if ok {
		if l.cur.kw == kwSignature {
			return 0, sig, l.errf(ErrDuplicateKeyword, "a second signature line")
		}
		return 0, sig, l.errf(ErrKeywordOrder, "nothing may follow the signature line")
	}
	return end, sig, nil
}

// policyErr wraps an exitpolicy error with the matching netdoc sentinel
// (both stay visible to errors.Is).
func policyErr(err error) error {
	if errors.Is(err, exitpolicy.ErrNonCanonical) {
		return fmt.Errorf("%w: %w", ErrNonCanonical, err)
	}
	return fmt.Errorf("%w: %w", ErrBadValue, err)
}
