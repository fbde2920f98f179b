package dnsproxy

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Sizes. DNS messages are parsed and built by miekg/dns only; these bound
// what we accept and send.
const (
	// headerSize is the fixed DNS header (RFC 1035 section 4.1.1).
	headerSize = 12
	// MaxQuerySize bounds a query: what the front-end accepts from a stub
	// and what Resolver.Exchange accepts from a circuit. A query holds one
	// question (at most 255+4 bytes) and an OPT record; padded queries
	// (RFC 8467) stay far below this.
	MaxQuerySize = 1232
	// MaxAnswerSize bounds an answer: the largest DNS message (TCP framing).
	MaxAnswerSize = dns.MaxMsgSize
	// forwardUDPSize is the EDNS0 UDP size in queries the client forwards
	// and in the exit's queries to its upstream (the DNS flag day 2020 value,
	// which avoids IP fragmentation).
	forwardUDPSize = 1232
	// maxUDPReplySize caps the stub's advertised EDNS0 size for UDP replies
	// from the front-end; larger answers go truncated and the stub retries
	// over TCP.
	maxUDPReplySize = 1232
	// maxCacheTTL caps how long an answer stays in the front-end's cache.
	maxCacheTTL = time.Hour
)

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrMalformedQuery: the query is not a DNS query we can answer at all
	// (unparseable, a response, or too large). No reply is possible.
	ErrMalformedQuery = errors.New("dnsproxy: malformed query")
	// ErrBadAnswer: the answer from the network is not a response to the
	// question that was asked.
	ErrBadAnswer = errors.New("dnsproxy: answer does not match query")
	// ErrUpstream: no upstream resolver answered (timeouts, network errors).
	ErrUpstream = errors.New("dnsproxy: upstream resolver failed")
	// ErrNotFound: the name does not exist (NXDOMAIN) or has no A or AAAA
	// records (NODATA); the error text says which.
	ErrNotFound = errors.New("dnsproxy: name not found")
	// ErrServerFailure: the upstream answered with a failure rcode
	// (SERVFAIL, REFUSED, ...).
	ErrServerFailure = errors.New("dnsproxy: upstream answered with failure")
	// ErrInvalidName: the host name given to LookupHost is not a valid name.
	ErrInvalidName = errors.New("dnsproxy: invalid host name")
	// ErrClosed: the server is closed.
	ErrClosed = errors.New("dnsproxy: server closed")
)

// Rejection reasons (the rejected metric's label).
const (
	reasonMalformed    = "malformed"     // unparseable or FORMERR query
	reasonResponse     = "response"      // a response was sent to us
	reasonOversized    = "oversized"     // query larger than MaxQuerySize
	reasonOpcode       = "opcode"        // not a standard query
	reasonZoneTransfer = "zone_transfer" // AXFR or IXFR
	reasonClass        = "class"         // class other than IN
	reasonMetaType     = "meta_type"     // OPT, TSIG, TKEY, MAILA, MAILB... as qtype
	reasonBadVersion   = "badvers"       // EDNS version other than 0
	reasonInflight     = "inflight"      // MaxInflight reached
	reasonTCPConns     = "tcp_conns"     // MaxTCPConns reached
)

// acceptQuery is the header check run before a message is parsed further.
func acceptQuery(dh dns.Header) (dns.MsgAcceptAction, string) {
	const qrBit = 1 << 15
	if dh.Bits&qrBit != 0 {
		return dns.MsgIgnore, reasonResponse
	}
	if opcode := int(dh.Bits>>11) & 0xF; opcode != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented, reasonOpcode
	}
	if dh.Qdcount != 1 || dh.Ancount != 0 || dh.Nscount != 0 || dh.Arcount > 2 {
		return dns.MsgReject, reasonMalformed
	}
	return dns.MsgAccept, ""
}

// checkQuery validates a parsed query. It returns dns.RcodeSuccess if the
// query may be forwarded, else the rcode to answer with and the reason.
func checkQuery(m *dns.Msg) (rcode int, reason string) {
	if m.Response {
		return dns.RcodeFormatError, reasonResponse
	}
	if m.Opcode != dns.OpcodeQuery {
		return dns.RcodeNotImplemented, reasonOpcode
	}
	if len(m.Question) != 1 || len(m.Answer) != 0 || len(m.Ns) != 0 {
		return dns.RcodeFormatError, reasonMalformed
	}
	var opts int
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			// TSIG/SIG(0) are not supported; nothing else belongs here.
			return dns.RcodeFormatError, reasonMalformed
		}
		opts++
	}
	if opts > 1 { // RFC 6891 section 6.1.1
		return dns.RcodeFormatError, reasonMalformed
	}
	q := m.Question[0]
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		return dns.RcodeRefused, reasonZoneTransfer
	case dns.TypeNone, dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY:
		return dns.RcodeFormatError, reasonMetaType
	case dns.TypeMAILA, dns.TypeMAILB:
		return dns.RcodeNotImplemented, reasonMetaType
	}
	if q.Qclass != dns.ClassINET {
		return dns.RcodeRefused, reasonClass
	}
	if _, ok := dns.IsDomainName(q.Name); !ok || !dns.IsFqdn(q.Name) {
		return dns.RcodeFormatError, reasonMalformed
	}
	if opt := m.IsEdns0(); opt != nil && opt.Version() != 0 {
		return dns.RcodeBadVers, reasonBadVersion
	}
	return dns.RcodeSuccess, ""
}

// errorReply builds the reply to a query that is answered locally with
// rcode (FORMERR, REFUSED, NOTIMP, SERVFAIL, BADVERS).
func errorReply(req *dns.Msg, rcode int) *dns.Msg {
	r := new(dns.Msg)
	r.SetReply(req)
	r.RecursionAvailable = true
	r.Rcode = rcode
	if opt := req.IsEdns0(); opt != nil || rcode > 0xF {
		// BADVERS and other extended rcodes need an OPT record; RFC 6891
		// section 6.1.3 says to answer with our version, 0.
		do := opt != nil && opt.Do()
		r.SetEdns0(maxUDPReplySize, do)
	}
	return r
}

// queryKey identifies a question in the cache. The name is canonical
// (lower case); DO and CD change the answer, so they are part of the key.
type queryKey struct {
	name   string
	qtype  uint16
	qclass uint16
	do     bool
	cd     bool
}

func (k queryKey) String() string {
	return fmt.Sprintf("%s/%s/%s do=%t cd=%t", k.name,
		dns.TypeToString[k.qtype], dns.ClassToString[k.qclass], k.do, k.cd)
}

// keyOf derives the cache key of a checked query.
func keyOf(m *dns.Msg) queryKey {
	q := m.Question[0]
	k := queryKey{
		name:   dns.CanonicalName(q.Name),
		qtype:  q.Qtype,
		qclass: q.Qclass,
		cd:     m.CheckingDisabled,
	}
	if opt := m.IsEdns0(); opt != nil {
		k.do = opt.Do()
	}
	return k
}

// forwardQuery builds the normalised query for a key: the only bytes that
// leave the host for it. id is 0 on the client side (one query per circuit
// stream) and random towards an upstream. AD is always set (RFC 6840
// section 5.7: we understand it); makeReply passes it on only to stubs that
// ask.
func forwardQuery(k queryKey, id uint16) *dns.Msg {
	m := new(dns.Msg)
	m.Id = id
	m.RecursionDesired = true
	m.CheckingDisabled = k.cd
	m.AuthenticatedData = true
	m.Question = []dns.Question{{Name: k.name, Qtype: k.qtype, Qclass: k.qclass}}
	m.SetEdns0(forwardUDPSize, k.do)
	return m
}

// checkAnswer parses raw as the answer to query q and checks that it is a
// response to exactly q's question.
func checkAnswer(q *dns.Msg, raw []byte) (*dns.Msg, error) {
	if len(raw) > MaxAnswerSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadAnswer, len(raw))
	}
	a := new(dns.Msg)
	if err := a.Unpack(raw); err != nil {
		return nil, fmt.Errorf("%w: parse: %v", ErrBadAnswer, err)
	}
	if err := matchAnswer(q, a); err != nil {
		return nil, err
	}
	if err := roundTrips(a); err != nil {
		return nil, err
	}
	return a, nil
}

// roundTrips checks that a, once parsed, packs into a message that parses
// again. miekg/dns parses some records it cannot write back (a SOA with
// empty RDATA packs as 20 bytes without its names, which then does not
// parse); such an answer must not be cached or passed to a stub as
// malformed bytes.
func roundTrips(a *dns.Msg) error {
	a.Compress = true // as it will be sent
	b, err := a.Pack()
	if err != nil {
		return fmt.Errorf("%w: re-encode: %v", ErrBadAnswer, err)
	}
	var back dns.Msg
	if err := back.Unpack(b); err != nil {
		return fmt.Errorf("%w: re-encoded answer does not parse: %v", ErrBadAnswer, err)
	}
	return nil
}

// matchAnswer checks that a is a response to q's question.
func matchAnswer(q, a *dns.Msg) error {
	if !a.Response {
		return fmt.Errorf("%w: not a response", ErrBadAnswer)
	}
	if a.Opcode != dns.OpcodeQuery {
		return fmt.Errorf("%w: opcode %d", ErrBadAnswer, a.Opcode)
	}
	if a.Id != q.Id {
		return fmt.Errorf("%w: id", ErrBadAnswer)
	}
	if len(a.Question) != 1 {
		return fmt.Errorf("%w: %d questions", ErrBadAnswer, len(a.Question))
	}
	aq, qq := a.Question[0], q.Question[0]
	if aq.Qtype != qq.Qtype || aq.Qclass != qq.Qclass || !strings.EqualFold(aq.Name, qq.Name) {
		return fmt.Errorf("%w: other question", ErrBadAnswer)
	}
	return nil
}

// cacheTTL says how long an answer may be cached: the minimum TTL of its
// records for a positive answer; for a negative one (NXDOMAIN or NODATA)
// also no longer than the SOA MINIMUM (RFC 2308 section 5), and not at all
// without a SOA. Failures and truncated answers are not cached (0).
func cacheTTL(a *dns.Msg) time.Duration {
	if a.Truncated {
		return 0
	}
	var negative bool
	switch {
	case a.Rcode == dns.RcodeNameError:
		negative = true
	case a.Rcode == dns.RcodeSuccess:
		negative = len(a.Answer) == 0
	default:
		return 0
	}
	ttl := uint32(math.MaxUint32)
	var soa bool
	visit := func(rrs []dns.RR) {
		for _, rr := range rrs {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			ttl = min(ttl, h.Ttl)
			if s, ok := rr.(*dns.SOA); ok && negative {
				soa = true
				ttl = min(ttl, s.Minttl)
			}
		}
	}
	visit(a.Answer)
	visit(a.Ns)
	visit(a.Extra)
	if negative && !soa {
		return 0
	}
	if ttl == math.MaxUint32 { // a positive answer always has records
		return 0
	}
	return min(time.Duration(ttl)*time.Second, maxCacheTTL)
}

// makeReply builds the reply to req from the answer a, whose records have
// spent age seconds in a cache. a is not modified (cached answers are
// shared).
func makeReply(req, a *dns.Msg, age uint32) *dns.Msg {
	r := new(dns.Msg)
	r.SetReply(req)
	r.Compress = true
	reqOpt := req.IsEdns0()
	r.Rcode = a.Rcode
	if r.Rcode > 0xF && reqOpt == nil {
		// An extended rcode cannot be told to a stub without EDNS0.
		r.Rcode = dns.RcodeServerFailure
	}
	r.RecursionAvailable = a.RecursionAvailable
	r.Truncated = a.Truncated
	// RFC 6840 section 5.8: AD only to stubs that ask for it.
	r.AuthenticatedData = a.AuthenticatedData && (req.AuthenticatedData || (reqOpt != nil && reqOpt.Do()))
	r.Answer = copyRRs(a.Answer, age)
	r.Ns = copyRRs(a.Ns, age)
	r.Extra = copyRRs(a.Extra, age)
	if reqOpt != nil {
		r.SetEdns0(maxUDPReplySize, reqOpt.Do())
	}
	return r
}

// copyRRs deep-copies rrs without pseudo-records (OPT, TSIG), lowering TTLs
// by age.
func copyRRs(rrs []dns.RR, age uint32) []dns.RR {
	if len(rrs) == 0 {
		return nil
	}
	out := make([]dns.RR, 0, len(rrs))
	for _, rr := range rrs {
		switch rr.Header().Rrtype {
		case dns.TypeOPT, dns.TypeTSIG:
			continue
		}
		c := dns.Copy(rr)
		if h := c.Header(); h.Ttl > age {
			h.Ttl -= age
		} else {
			h.Ttl = 0
		}
		out = append(out, c)
	}
	return out
}

// udpReplySize is how large a UDP reply to req may be: 512 bytes without
// EDNS0, else the advertised size, at least 512, at most maxUDPReplySize.
func udpReplySize(req *dns.Msg) int {
	opt := req.IsEdns0()
	if opt == nil {
		return dns.MinMsgSize
	}
	return min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDPReplySize)
}
