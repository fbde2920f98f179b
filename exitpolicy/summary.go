package exitpolicy

import (
	"slices"
	"sort"
	"strings"
)

// MaxSummaryLen bounds the text of a summary ("accept " or "reject " and the
// port list), as Tor bounds its microdescriptor "p" lines. A policy whose
// summary would be longer is summarized conservatively, as Tor does: the
// accepted list is cut after the last range that fits, so clients see fewer
// accepted ports than the exit really allows, never more.
const MaxSummaryLen = 1000

// summaryPrefixLen is len("accept ") == len("reject ").
const summaryPrefixLen = 7

// rejectCutoff is how many IPv4 addresses a port may have rejected by
// address-specific rules and still count as accepted (Tor's
// REJECT_CUTOFF_COUNT_IPV4, 2^25 addresses, a /7).
const rejectCutoff = 1 << 25

// Summary is the port-only view of a policy that the consensus carries:
// for each port, whether the exit accepts connections to "most" public IPv4
// addresses on it. Clients use it to choose an exit before they know the
// destination's address; the exit still applies its full policy after it
// resolves the name.
//
// The zero Summary accepts no port.
type Summary struct {
	accept []PortRange // sorted, disjoint, non-adjacent
}

// NewSummary builds the summary that accepts exactly the given ports
// (ranges may be unsorted, overlapping or adjacent; ranges with Lo > Hi are
// ignored, port 0 is dropped). A set whose text would exceed MaxSummaryLen
// is truncated as described there.
func NewSummary(accepted []PortRange) Summary {
	rs := make([]PortRange, 0, len(accepted))
	for _, r := range accepted {
		if r.Lo == 0 {
			r.Lo = 1
		}
		if r.Lo <= r.Hi {
			rs = append(rs, r)
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Lo < rs[j].Lo })
	merged := rs[:0]
	for _, r := range rs {
		if n := len(merged); n > 0 && uint32(r.Lo) <= uint32(merged[n-1].Hi)+1 {
			if r.Hi > merged[n-1].Hi {
				merged[n-1].Hi = r.Hi
			}
			continue
		}
		merged = append(merged, r)
	}
	s := Summary{accept: merged}
	if len(merged) == 0 {
		s.accept = nil
	}
	if acc, rej := listLen(s.accept), listLen(complement(s.accept)); summaryPrefixLen+min(acc, rej) > MaxSummaryLen {
		// Keep the accepted ranges that fit.
		n, total := 0, summaryPrefixLen-1
		for _, r := range s.accept {
			l := len(r.appendList(nil)) + 1
			if total+l > MaxSummaryLen {
				break
			}
			total += l
			n++
		}
		s.accept = s.accept[:n]
	}
	return s
}

// listLen is the length of ranges written as a comma-separated list.
func listLen(rs []PortRange) int {
	n := -1
	var buf [12]byte
	for _, r := range rs {
		n += len(r.appendList(buf[:0])) + 1
	}
	return max(n, 0)
}

// complement returns the ports in 1..65535 not in rs (rs sorted, disjoint).
func complement(rs []PortRange) []PortRange {
	var out []PortRange
	next := uint32(MinPort)
	for _, r := range rs {
		if uint32(r.Lo) > next {
			out = append(out, PortRange{uint16(next), r.Lo - 1})
		}
		next = uint32(r.Hi) + 1
	}
	if next <= MaxPort {
		out = append(out, PortRange{uint16(next), MaxPort})
	}
	return out
}

// AllowsPort reports whether the summary accepts port.
func (s Summary) AllowsPort(port uint16) bool {
	i := sort.Search(len(s.accept), func(i int) bool { return s.accept[i].Hi >= port })
	return i < len(s.accept) && s.accept[i].Contains(port)
}

// AcceptsAny reports whether at least one port is accepted.
func (s Summary) AcceptsAny() bool { return len(s.accept) > 0 }

// Accepted returns a copy of the accepted port ranges, sorted.
func (s Summary) Accepted() []PortRange { return slices.Clone(s.accept) }

// Equal reports whether s and o accept the same ports.
func (s Summary) Equal(o Summary) bool { return slices.Equal(s.accept, o.accept) }

// String returns the canonical text: "accept LIST" or "reject LIST", whichever
// is shorter (accept on a tie). LIST is comma-separated ports and ranges in
// ascending order. Nothing accepted is "reject 1-65535"; everything is
// "accept 1-65535".
func (s Summary) String() string { return string(s.AppendText(nil)) }

// AppendText appends the canonical text to b.
func (s Summary) AppendText(b []byte) []byte {
	if len(s.accept) == 0 {
		return append(b, "reject 1-65535"...)
	}
	rej := complement(s.accept)
	if len(rej) == 0 || listLen(s.accept) <= listLen(rej) {
		return appendList(append(b, "accept "...), s.accept)
	}
	return appendList(append(b, "reject "...), rej)
}

func appendList(b []byte, rs []PortRange) []byte {
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = r.appendList(b)
	}
	return b
}

// ParseSummary parses the canonical text of a summary.
func ParseSummary(s string) (Summary, error) {
	action, list, ok := strings.Cut(s, " ")
	if !ok || (action != "accept" && action != "reject") {
		return Summary{}, errorf(ErrSyntax, "summary %q: want \"accept|reject PORTS\"", s)
	}
	if len(s) > MaxSummaryLen {
		return Summary{}, errorf(ErrSyntax, "summary is %d bytes; at most %d", len(s), MaxSummaryLen)
	}
	var rs []PortRange
	next := uint32(MinPort) // the lowest port the next item may start at
	for item := range strings.SplitSeq(list, ",") {
		r, err := parsePortPart(item)
		if err != nil || item == "*" {
			return Summary{}, errorf(ErrSyntax, "summary %q: bad port or range %q", s, item)
		}
		if uint32(r.Lo) < next {
			return Summary{}, errorf(ErrSyntax, "summary %q: %q overlaps, touches or comes before the previous item; list ports in ascending order and merge neighbours", s, item)
		}
		rs = append(rs, r)
		next = uint32(r.Hi) + 2
	}
	out := Summary{accept: rs}
	if action == "reject" {
		out.accept = complement(rs)
	}
	if c := out.String(); c != s {
		return Summary{}, errorf(ErrNonCanonical, "summary %q is not in canonical form; write %q", s, c)
	}
	return out, nil
}

// Summary summarizes the policy by ports for public IPv4 destinations, with
// the algorithm of Tor's policy_summarize (so Tor's test vectors apply):
//
//   - Every port starts neither accepted nor rejected, with a count of 0
//     rejected addresses.
//   - Rules are taken in order, then the Default as a final "*:*" rule.
//     Rules for IPv6 prefixes are skipped.
//   - An accept rule for all addresses ("*" or 0.0.0.0/0) accepts each of
//     its ports that is not yet accepted and whose count is at most 2^25
//     (a /7's worth). Accept rules for narrower prefixes are ignored: the
//     client cannot rely on them.
//   - A reject rule whose prefix lies inside a private/special range (see
//     IsPrivate) is ignored: clients do not choose exits to reach those.
//     Any other reject rule adds the number of addresses it covers ("*" is
//     2^32) to the count of each of its ports.
//   - The ports accepted at the end make the summary.
func (p Policy) Summary() Summary {
	type seg struct {
		lo, hi   uint16
		accepted bool
		count    uint64
	}
	segs := []seg{{lo: MinPort, hi: MaxPort}}
	// split makes sure a segment starts at port at (at <= MaxPort).
	split := func(at uint16) {
		i := sort.Search(len(segs), func(i int) bool { return segs[i].hi >= at })
		if i == len(segs) || segs[i].lo == at {
			return
		}
		s := segs[i]
		segs = slices.Insert(segs, i+1, seg{lo: at, hi: s.hi, accepted: s.accepted, count: s.count})
		segs[i].hi = at - 1
	}
	apply := func(r Rule) {
		if r.Addr.IsValid() && r.Addr.Addr().Is6() {
			return
		}
		var count uint64
		switch {
		case r.Action == Accept:
			if r.Addr.IsValid() && r.Addr.Bits() != 0 {
				return
			}
		case !r.Addr.IsValid():
			count = 1 << 32
		case isPrivatePrefix(r.Addr):
			return
		default:
			count = 1 << (32 - r.Addr.Bits())
		}
		split(r.Ports.Lo)
		if r.Ports.Hi < MaxPort {
			split(r.Ports.Hi + 1)
		}
		for i := range segs {
			s := &segs[i]
			if s.lo < r.Ports.Lo || s.hi > r.Ports.Hi {
				continue
			}
			if r.Action == Accept {
				if !s.accepted && s.count <= rejectCutoff {
					s.accepted = true
				}
			} else {
				s.count += count
			}
		}
	}
	for _, r := range p.Rules {
		apply(r)
	}
	apply(p.DefaultRule())
	var acc []PortRange
	for _, s := range segs {
		if s.accepted {
			acc = append(acc, PortRange{s.lo, s.hi})
		}
	}
	return NewSummary(acc)
}
