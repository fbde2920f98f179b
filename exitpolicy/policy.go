// Package exitpolicy holds exit policies: the accept/reject rules with which
// an exit relay says which destinations it connects to, and the port-only
// Summary of a policy that the consensus carries for clients choosing exits.
//
// # Rules
//
// A rule is written like Tor's:
//
//	accept|reject ADDR[/BITS]:PORT[-PORT]
//
// ADDR is "*" (every address of both families), an IPv4 address
// ("192.0.2.7"), or an IPv6 address in brackets ("[2001:db8::1]"). /BITS is a
// prefix length; it is omitted for a single address (/32 or /128) and the
// address must have no bits set past the prefix ("10.0.0.0/8", not
// "10.1.2.3/8"). PORT is "*" (1-65535), one port ("443") or an inclusive
// range ("1000-2000"). Ports run from 1 to 65535: port 0 is never allowed.
//
// Every rule has exactly one textual form, the one Rule.String writes, and
// ParseRule accepts only that form (it names the canonical form in its error
// otherwise). That keeps the bytes of signed documents unambiguous.
//
// # Policies
//
// A Policy is an ordered list of rules and a Default action. The first rule
// that matches a destination decides; if none matches, Default decides. In
// text a policy is its rules separated by commas, and the default is written
// as a final catch-all rule, "accept *:*" or "reject *:*":
//
//	accept *:80, accept *:443, reject *:*
//
// Destinations are matched after IPv4-mapped IPv6 addresses are turned into
// IPv4 ones, so "::ffff:10.0.0.1" meets the rules for 10.0.0.1.
//
// Exits put RejectPrivate's rules first (private, loopback, link-local,
// unspecified, multicast, CGNAT, reserved and unique-local ranges, the NAT64
// forms of those, and the relay's own addresses). A test network that runs on
// 127.0.0.1 opts out explicitly.
package exitpolicy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Limits.
const (
	// MaxRules is the most rules a policy may hold, so that checking one
	// destination stays cheap and documents stay small.
	MaxRules = 1024
	// MinPort and MaxPort bound every port in a rule or summary.
	MinPort = 1
	MaxPort = 65535
)

// Sentinel errors. Errors from this package wrap one of them.
var (
	ErrSyntax       = errors.New("exitpolicy: syntax error")
	ErrNonCanonical = errors.New("exitpolicy: not in canonical form")
	ErrTooManyRules = errors.New("exitpolicy: too many rules")
)

// ruleError carries a readable message and the sentinel it wraps.
type ruleError struct {
	msg string
	err error
}

func (e *ruleError) Error() string { return e.msg }
func (e *ruleError) Unwrap() error { return e.err }

func errorf(sentinel error, format string, args ...any) error {
	return &ruleError{msg: "exitpolicy: " + fmt.Sprintf(format, args...), err: sentinel}
}

// Action is what a rule does with the destinations it matches. The zero
// value is Reject, so a zero Policy rejects everything.
type Action uint8

// Actions.
const (
	Reject Action = iota
	Accept
)

// String returns "accept" or "reject".
func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Reject:
		return "reject"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// PortRange is an inclusive range of ports, Lo <= Hi, both in 1..65535.
type PortRange struct {
	Lo, Hi uint16
}

// AllPorts is the range "*".
var AllPorts = PortRange{MinPort, MaxPort}

// Contains reports whether port is in r.
func (r PortRange) Contains(port uint16) bool { return r.Lo <= port && port <= r.Hi }

// valid reports whether r is a well-formed range.
func (r PortRange) valid() bool { return r.Lo >= MinPort && r.Lo <= r.Hi }

// appendList writes r as it appears in a summary: "N" or "N-M".
func (r PortRange) appendList(b []byte) []byte {
	b = strconv.AppendUint(b, uint64(r.Lo), 10)
	if r.Hi != r.Lo {
		b = append(b, '-')
		b = strconv.AppendUint(b, uint64(r.Hi), 10)
	}
	return b
}

// String returns the range as it appears in a rule: "*", "N" or "N-M".
func (r PortRange) String() string {
	if r == AllPorts {
		return "*"
	}
	return string(r.appendList(nil))
}

// Rule is one accept or reject line. The zero Prefix (not IsValid) means
// "*", every address of both families.
type Rule struct {
	Action Action
	Addr   netip.Prefix
	Ports  PortRange
}

// IsCatchAll reports whether r matches every destination ("*:*").
func (r Rule) IsCatchAll() bool { return !r.Addr.IsValid() && r.Ports == AllPorts }

// Match reports whether the rule covers addr:port. addr must already be
// unmapped and without zone (Policy.Allows does that).
func (r Rule) Match(addr netip.Addr, port uint16) bool {
	if !r.Ports.Contains(port) {
		return false
	}
	return !r.Addr.IsValid() || r.Addr.Contains(addr)
}

// String returns the canonical text of the rule.
func (r Rule) String() string { return string(r.AppendText(nil)) }

// AppendText appends the canonical text of the rule to b.
func (r Rule) AppendText(b []byte) []byte {
	b = append(b, r.Action.String()...)
	b = append(b, ' ')
	b = appendAddr(b, r.Addr)
	b = append(b, ':')
	if r.Ports == AllPorts {
		return append(b, '*')
	}
	return r.Ports.appendList(b)
}

func appendAddr(b []byte, p netip.Prefix) []byte {
	if !p.IsValid() {
		return append(b, '*')
	}
	a := p.Addr()
	if a.Is4() {
		b = a.AppendTo(b)
	} else {
		b = append(b, '[')
		b = a.AppendTo(b)
		b = append(b, ']')
	}
	if p.Bits() != a.BitLen() {
		b = append(b, '/')
		b = strconv.AppendInt(b, int64(p.Bits()), 10)
	}
	return b
}

// Validate checks that r can be written and read back: a known action, a
// port range inside 1..65535, and a prefix with no host bits, no zone and
// no IPv4-mapped IPv6 address.
func (r Rule) Validate() error {
	if r.Action != Accept && r.Action != Reject {
		return errorf(ErrSyntax, "rule has unknown action %d", r.Action)
	}
	if !r.Ports.valid() {
		return errorf(ErrSyntax, "rule has bad port range %d-%d (ports are 1-65535, low <= high)", r.Ports.Lo, r.Ports.Hi)
	}
	if r.Addr.IsValid() {
		a := r.Addr.Addr()
		if a.Zone() != "" {
			return errorf(ErrSyntax, "rule address %s has a zone", a)
		}
		if a.Is4In6() {
			return errorf(ErrSyntax, "rule address %s is IPv4-mapped IPv6; write it as IPv4 (%s)", a, a.Unmap())
		}
		if r.Addr.Masked() != r.Addr {
			return errorf(ErrSyntax, "rule prefix %s has bits set past /%d; did you mean %s?", r.Addr, r.Addr.Bits(), r.Addr.Masked())
		}
	}
	return nil
}

// ParseRule parses one rule in its canonical form.
func ParseRule(s string) (Rule, error) {
	r, err := parseRuleLoose(s)
	if err != nil {
		return Rule{}, err
	}
	if err := r.Validate(); err != nil {
		return Rule{}, fmt.Errorf("rule %q: %w", s, err)
	}
	if c := r.String(); c != s {
		return Rule{}, errorf(ErrNonCanonical, "rule %q is not in canonical form; write %q", s, c)
	}
	return r, nil
}

// parseRuleLoose reads the structure of a rule; ParseRule then insists the
// text is exactly what String would write, which catches every spelling
// variant (leading zeros, "/32", "80-80", upper-case hex, ...) in one place.
func parseRuleLoose(s string) (Rule, error) {
	var r Rule
	action, rest, ok := strings.Cut(s, " ")
	switch {
	case !ok:
		return r, errorf(ErrSyntax, "rule %q: want \"accept|reject ADDR[/BITS]:PORT[-PORT]\"", s)
	case action == "accept":
		r.Action = Accept
	case action == "reject":
		r.Action = Reject
	default:
		return r, errorf(ErrSyntax, "rule %q: action must be accept or reject", s)
	}
	var addrPart, portPart string
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return r, errorf(ErrSyntax, "rule %q: missing ] after IPv6 address", s)
		}
		afterBracket := rest[end+1:]
		mask, ports, ok := strings.Cut(afterBracket, ":")
		if !ok {
			return r, errorf(ErrSyntax, "rule %q: missing :PORT", s)
		}
		addrPart, portPart = rest[:end+1]+mask, ports
	} else {
		var ok bool
		addrPart, portPart, ok = strings.Cut(rest, ":")
		if !ok {
			return r, errorf(ErrSyntax, "rule %q: missing :PORT", s)
		}
	}
	p, err := parseAddrPart(addrPart)
	if err != nil {
		return r, fmt.Errorf("rule %q: %w", s, err)
	}
	r.Addr = p
	pr, err := parsePortPart(portPart)
	if err != nil {
		return r, fmt.Errorf("rule %q: %w", s, err)
	}
	r.Ports = pr
	return r, nil
}

func parseAddrPart(s string) (netip.Prefix, error) {
	if s == "*" {
		return netip.Prefix{}, nil
	}
	addrText, bitsText, hasBits := strings.Cut(s, "/")
	v6 := false
	if strings.HasPrefix(addrText, "[") {
		if !strings.HasSuffix(addrText, "]") || len(addrText) < 3 {
			return netip.Prefix{}, errorf(ErrSyntax, "bad IPv6 address %q", addrText)
		}
		addrText = addrText[1 : len(addrText)-1]
		v6 = true
	}
	a, err := netip.ParseAddr(addrText)
	if err != nil {
		return netip.Prefix{}, errorf(ErrSyntax, "bad address %q", addrText)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errorf(ErrSyntax, "address %q has a zone; policies cannot name one", addrText)
	}
	if v6 != a.Is6() {
		if v6 {
			return netip.Prefix{}, errorf(ErrSyntax, "%q in brackets is not an IPv6 address", addrText)
		}
		return netip.Prefix{}, errorf(ErrSyntax, "IPv6 address %q must be in brackets", addrText)
	}
	bits := a.BitLen()
	if hasBits {
		n, err := strconv.Atoi(bitsText)
		if err != nil || n < 0 || n > a.BitLen() {
			return netip.Prefix{}, errorf(ErrSyntax, "bad prefix length %q for %s (0-%d)", bitsText, a, a.BitLen())
		}
		bits = n
	}
	return netip.PrefixFrom(a, bits), nil
}

func parsePortPart(s string) (PortRange, error) {
	if s == "*" {
		return AllPorts, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	l, err := parsePort(lo)
	if err != nil {
		return PortRange{}, err
	}
	h := l
	if isRange {
		if h, err = parsePort(hi); err != nil {
			return PortRange{}, err
		}
		if h < l {
			return PortRange{}, errorf(ErrSyntax, "port range %q runs backwards", s)
		}
	}
	return PortRange{l, h}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n < MinPort {
		return 0, errorf(ErrSyntax, "bad port %q (ports are 1-65535)", s)
	}
	return uint16(n), nil
}

// Policy is an ordered list of rules and the action for destinations that no
// rule matches. The zero Policy rejects everything.
type Policy struct {
	Rules   []Rule
	Default Action
}

// AcceptAll and RejectAll are the two one-line policies.
var (
	AcceptAll = Policy{Default: Accept}
	RejectAll = Policy{Default: Reject}
)

// Allows reports whether the policy lets the exit connect to addr:port.
// Port 0 and invalid addresses are never allowed.
func (p Policy) Allows(addr netip.Addr, port uint16) bool {
	if !addr.IsValid() || port == 0 {
		return false
	}
	addr = addr.Unmap().WithZone("")
	for _, r := range p.Rules {
		if r.Match(addr, port) {
			return r.Action == Accept
		}
	}
	return p.Default == Accept
}

// Validate checks every rule, the rule count and the default action.
func (p Policy) Validate() error {
	if len(p.Rules) > MaxRules {
		return errorf(ErrTooManyRules, "policy has %d rules; at most %d", len(p.Rules), MaxRules)
	}
	if p.Default != Accept && p.Default != Reject {
		return errorf(ErrSyntax, "policy has unknown default action %d", p.Default)
	}
	for i, r := range p.Rules {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("rule %d: %w", i+1, err)
		}
	}
	return nil
}

// DefaultRule returns the catch-all rule that stands for p.Default.
func (p Policy) DefaultRule() Rule { return Rule{Action: p.Default, Ports: AllPorts} }

// String returns the canonical text: the rules and then the default as a
// catch-all rule, separated by ", ".
func (p Policy) String() string {
	var b []byte
	for _, r := range p.Rules {
		b = r.AppendText(b)
		b = append(b, ", "...)
	}
	return string(p.DefaultRule().AppendText(b))
}

// Equal reports whether p and o have the same rules and default.
func (p Policy) Equal(o Policy) bool {
	if p.Default != o.Default || len(p.Rules) != len(o.Rules) {
		return false
	}
	for i := range p.Rules {
		if p.Rules[i] != o.Rules[i] {
			return false
		}
	}
	return true
}

// Prepend returns a new policy with rules placed before p's rules.
func (p Policy) Prepend(rules ...Rule) Policy {
	out := make([]Rule, 0, len(rules)+len(p.Rules))
	out = append(out, rules...)
	out = append(out, p.Rules...)
	return Policy{Rules: out, Default: p.Default}
}

// Parse parses a policy written as rules separated by commas or newlines
// (spaces and tabs around a separator are ignored; each rule itself must be
// canonical). If the last rule is a catch-all ("accept *:*" or
// "reject *:*") it becomes the Default; otherwise the default is Reject. An
// empty string is the policy that rejects everything.
func Parse(s string) (Policy, error) { return ParseWithDefault(s, Reject) }

// ParseWithDefault is Parse with the default used when the text does not end
// with a catch-all rule.
func ParseWithDefault(s string, def Action) (Policy, error) {
	p := Policy{Default: def}
	items := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' })
	for _, item := range items {
		item = strings.Trim(item, " \t\r")
		if item == "" {
			continue
		}
		if len(p.Rules) > MaxRules {
			return Policy{}, errorf(ErrTooManyRules, "policy has more than %d rules", MaxRules)
		}
		r, err := ParseRule(item)
		if err != nil {
			return Policy{}, err
		}
		p.Rules = append(p.Rules, r)
	}
	if n := len(p.Rules); n > 0 && p.Rules[n-1].IsCatchAll() {
		p.Default = p.Rules[n-1].Action
		p.Rules = p.Rules[:n-1]
	}
	if len(p.Rules) == 0 {
		p.Rules = nil
	}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}
