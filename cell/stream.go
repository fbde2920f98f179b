package cell

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// The end-to-end stream header. Over each circuit the client and the exit
// run one yamux session; every SOCKS connection, HTTP CONNECT tunnel or DNS
// query is one yamux stream whose first bytes are a StreamRequest (client to
// exit) and a StreamReply (exit to client). For CONNECT, the connection's
// bytes follow the reply in both directions; RESOLVE and DNS streams end
// after the reply.

// StreamVersion is the version byte of the stream request this package
// speaks.
const StreamVersion = 1

// Limits of the stream header.
const (
	// MaxHostLen is the longest host name or address literal.
	MaxHostLen = 255
	// MinDNSLen is the shortest DNS message (its 12-byte header).
	MinDNSLen = 12
	// MaxDNSLen is the longest DNS message.
	MaxDNSLen = 65535
	// MaxResolvedAddrs is the most addresses one RESOLVE reply carries.
	MaxResolvedAddrs = 255
)

// ErrUnsupportedVersion means a stream request of a version this package
// does not speak. The exit answers it with StatusProtocolError.
var ErrUnsupportedVersion = errors.New("cell: unsupported stream header version")

// StreamKind is what a stream asks the exit to do.
type StreamKind uint8

// Stream kinds.
const (
	// StreamConnect opens a TCP connection to host:port.
	StreamConnect StreamKind = 1
	// StreamResolve resolves host to its IPv4 and IPv6 addresses.
	StreamResolve StreamKind = 2
	// StreamDNS sends a raw DNS query to the exit's resolver.
	StreamDNS StreamKind = 3
)

// String names the kind.
func (k StreamKind) String() string {
	switch k {
	case StreamConnect:
		return "CONNECT"
	case StreamResolve:
		return "RESOLVE"
	case StreamDNS:
		return "DNS"
	}
	return fmt.Sprintf("StreamKind(%d)", uint8(k))
}

// Known reports whether k is a kind this package speaks.
func (k StreamKind) Known() bool { return k >= StreamConnect && k <= StreamDNS }

// StreamStatus is the first byte of a stream reply. Values 0 to 8 are
// exactly the SOCKS5 reply codes (RFC 1928); chive's own values start at
// 0x10.
type StreamStatus uint8

// Stream statuses.
const (
	StatusSucceeded           StreamStatus = 0 // request done; for CONNECT, bytes follow
	StatusGeneralFailure      StreamStatus = 1
	StatusNotAllowed          StreamStatus = 2 // refused by the exit policy
	StatusNetworkUnreachable  StreamStatus = 3
	StatusHostUnreachable     StreamStatus = 4
	StatusConnectionRefused   StreamStatus = 5
	StatusTimeout             StreamStatus = 6 // SOCKS5 "TTL expired"; chive: timed out
	StatusCommandNotSupported StreamStatus = 7 // unknown stream kind
	StatusAddressNotSupported StreamStatus = 8 // e.g. IPv6 at an IPv4-only exit

	StatusResolveFailed StreamStatus = 0x10 // the name does not resolve
	StatusExitLimit     StreamStatus = 0x11 // the exit has too many streams
	StatusProtocolError StreamStatus = 0x12 // malformed request or unknown version
)

// String describes the status. The texts for 3 and 5 contain the words that
// armon/go-socks5 looks for in a dial error ("network is unreachable",
// "refused").
func (s StreamStatus) String() string {
	switch s {
	case StatusSucceeded:
		return "succeeded"
	case StatusGeneralFailure:
		return "general failure"
	case StatusNotAllowed:
		return "not allowed by exit policy"
	case StatusNetworkUnreachable:
		return "network is unreachable"
	case StatusHostUnreachable:
		return "host unreachable"
	case StatusConnectionRefused:
		return "connection refused"
	case StatusTimeout:
		return "timed out"
	case StatusCommandNotSupported:
		return "command not supported"
	case StatusAddressNotSupported:
		return "address type not supported"
	case StatusResolveFailed:
		return "could not resolve host"
	case StatusExitLimit:
		return "exit stream limit reached"
	case StatusProtocolError:
		return "stream protocol error"
	}
	return fmt.Sprintf("StreamStatus(%d)", uint8(s))
}

// SOCKSCode returns the SOCKS5 reply code for s: s itself for 0 to 8, 4
// (host unreachable) for StatusResolveFailed as Tor does, and 1 (general
// failure) for everything else.
func (s StreamStatus) SOCKSCode() byte {
	switch {
	case s <= StatusAddressNotSupported:
		return byte(s)
	case s == StatusResolveFailed:
		return byte(StatusHostUnreachable)
	}
	return byte(StatusGeneralFailure)
}

// Err returns nil for StatusSucceeded and a *StreamError otherwise.
func (s StreamStatus) Err() error {
	if s == StatusSucceeded {
		return nil
	}
	return &StreamError{Status: s}
}

// StreamError is a failed stream request, as the exit reported it. Callers
// use errors.As to get the status.
type StreamError struct {
	Status StreamStatus
}

// Error describes the failure.
func (e *StreamError) Error() string { return "chive stream: " + e.Status.String() }

// Is reports whether target is a *StreamError with the same status, so that
// errors.Is(err, &StreamError{Status: StatusConnectionRefused}) works.
func (e *StreamError) Is(target error) bool {
	t, ok := target.(*StreamError)
	return ok && t.Status == e.Status
}

// StatusForRequestError returns the status an exit replies with when
// ReadStreamRequest fails with err.
func StatusForRequestError(err error) StreamStatus {
	switch {
	case err == nil:
		return StatusSucceeded
	case errors.Is(err, ErrUnknownCommand):
		return StatusCommandNotSupported
	}
	return StatusProtocolError
}

// StreamRequest is the first thing a client writes on a new stream:
//
//	VERSION (1) = 1 | KIND (1) | then by KIND:
//	  CONNECT: HOSTLEN (1) | HOST (HOSTLEN) | PORT (2)
//	  RESOLVE: HOSTLEN (1) | HOST (HOSTLEN)
//	  DNS:     LEN (2) | MESSAGE (LEN)
//
// HOST is a DNS name, an IPv4 literal ("192.0.2.1") or an IPv6 literal
// without brackets or zone ("2001:db8::1"); see ValidateHost.
type StreamRequest struct {
	Kind StreamKind
	Host string // CONNECT and RESOLVE
	Port uint16 // CONNECT; must be non-zero
	DNS  []byte // DNS: the query, MinDNSLen to MaxDNSLen bytes
}

// ValidateHost checks a CONNECT or RESOLVE host: 1 to MaxHostLen bytes, no
// NUL byte, and, if it contains a colon, a valid IPv6 literal without zone
// or brackets (so "host:port" can never pass as a host).
func ValidateHost(host string) error {
	switch {
	case host == "":
		return fmt.Errorf("host: empty: %w", ErrMalformed)
	case len(host) > MaxHostLen:
		return fmt.Errorf("host: %d bytes, max %d: %w", len(host), MaxHostLen, ErrTooLong)
	case strings.IndexByte(host, 0) >= 0:
		return fmt.Errorf("host: contains NUL: %w", ErrMalformed)
	case strings.IndexByte(host, ':') >= 0:
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return fmt.Errorf("host: colon in a host that is not an IPv6 literal: %w", ErrMalformed)
		}
	}
	return nil
}

// HostAddr returns the host as an address if it is an IPv4 or IPv6 literal.
// An IPv4-mapped IPv6 literal is returned unmapped.
func (r *StreamRequest) HostAddr() (netip.Addr, bool) {
	a, err := netip.ParseAddr(r.Host)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// Validate checks r against the limits of its kind.
func (r *StreamRequest) Validate() error {
	switch r.Kind {
	case StreamConnect:
		if r.Port == 0 {
			return fmt.Errorf("stream request CONNECT: port 0: %w", ErrMalformed)
		}
		fallthrough
	case StreamResolve:
		if err := ValidateHost(r.Host); err != nil {
			return fmt.Errorf("stream request %v: %w", r.Kind, err)
		}
	case StreamDNS:
		switch {
		case len(r.DNS) < MinDNSLen:
			return fmt.Errorf("stream request DNS: %d-byte message, min %d: %w", len(r.DNS), MinDNSLen, ErrShortBody)
		case len(r.DNS) > MaxDNSLen:
			return fmt.Errorf("stream request DNS: %d-byte message, max %d: %w", len(r.DNS), MaxDNSLen, ErrTooLong)
		}
	default:
		return fmt.Errorf("stream request: kind %d: %w", uint8(r.Kind), ErrUnknownCommand)
	}
	return nil
}

// AppendBinary appends the encoded request to b.
func (r *StreamRequest) AppendBinary(b []byte) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return b, err
	}
	b = append(b, StreamVersion, byte(r.Kind))
	switch r.Kind {
	case StreamConnect:
		b = append(b, byte(len(r.Host)))
		b = append(b, r.Host...)
		b = binary.BigEndian.AppendUint16(b, r.Port)
	case StreamResolve:
		b = append(b, byte(len(r.Host)))
		b = append(b, r.Host...)
	case StreamDNS:
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.DNS)))
		b = append(b, r.DNS...)
	}
	return b, nil
}

// WriteStreamRequest writes req to w in one Write call.
func WriteStreamRequest(w io.Writer, req *StreamRequest) error {
	b, err := req.AppendBinary(nil)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write stream request: %w", err)
	}
	return nil
}

// ReadStreamRequest reads one request from r, reading exactly its bytes and
// no more. A stream that ends before the request is complete is an error
// wrapping io.ErrUnexpectedEOF (io.EOF if it ends before the first byte).
// Use StatusForRequestError to pick the reply to a failed request.
func ReadStreamRequest(r io.Reader) (*StreamRequest, error) {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return nil, fmt.Errorf("read stream request header: %w", err)
	}
	if hdr[0] != StreamVersion {
		return nil, fmt.Errorf("read stream request: version %d: %w", hdr[0], ErrUnsupportedVersion)
	}
	req := &StreamRequest{Kind: StreamKind(hdr[1])}
	switch req.Kind {
	case StreamConnect, StreamResolve:
		if _, err := io.ReadFull(r, hdr[:1]); err != nil {
			return nil, fmt.Errorf("read stream request %v: host length: %w", req.Kind, noEOF(err))
		}
		n := int(hdr[0])
		if req.Kind == StreamConnect {
			n += 2
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("read stream request %v: host: %w", req.Kind, noEOF(err))
		}
		if req.Kind == StreamConnect {
			req.Port = binary.BigEndian.Uint16(buf[n-2:])
			buf = buf[:n-2]
		}
		req.Host = string(buf)
	case StreamDNS:
		if _, err := io.ReadFull(r, hdr[:2]); err != nil {
			return nil, fmt.Errorf("read stream request DNS: length: %w", noEOF(err))
		}
		n := int(binary.BigEndian.Uint16(hdr[:2]))
		if n < MinDNSLen {
			return nil, fmt.Errorf("read stream request DNS: %d-byte message, min %d: %w", n, MinDNSLen, ErrShortBody)
		}
		req.DNS = make([]byte, n)
		if _, err := io.ReadFull(r, req.DNS); err != nil {
			return nil, fmt.Errorf("read stream request DNS: message: %w", noEOF(err))
		}
	default:
		return nil, fmt.Errorf("read stream request: kind %d: %w", hdr[1], ErrUnknownCommand)
	}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("read stream request: %w", err)
	}
	return req, nil
}

// noEOF turns io.EOF in the middle of a header into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Address types in a stream reply.
const (
	AddrTypeNone = 0
	AddrTypeIPv4 = 4
	AddrTypeIPv6 = 6
)

// ResolvedAddr is one address of a RESOLVE reply.
type ResolvedAddr struct {
	Addr netip.Addr
	TTL  uint32 // seconds
}

// StreamReply is what the exit writes back on a stream:
//
//	STATUS (1) | if STATUS = 0, by the request's KIND:
//	  CONNECT: ATYPE (1) | ADDR (0, 4 or 16) | PORT (2)
//	  RESOLVE: COUNT (1, >= 1) | COUNT x [ATYPE (1) | ADDR (4 or 16) | TTL (4)]
//	  DNS:     LEN (2) | MESSAGE (LEN)
//
// A reply with a non-zero STATUS is that one byte; the exit then closes the
// stream. ATYPE is 0 (none: ADDR empty and PORT 0), 4 (IPv4) or 6 (IPv6).
// For CONNECT, ADDR:PORT is the address the exit connected to (or none).
type StreamReply struct {
	Status StreamStatus
	Addr   netip.AddrPort // CONNECT; the zero value means none
	Addrs  []ResolvedAddr // RESOLVE
	DNS    []byte         // DNS: the response, MinDNSLen to MaxDNSLen bytes
}

func appendAddr(b []byte, a netip.Addr) ([]byte, error) {
	if a.Zone() != "" {
		return b, fmt.Errorf("address %v has a zone: %w", a, ErrMalformed)
	}
	a = a.Unmap()
	switch {
	case a.Is4():
		v := a.As4()
		return append(append(b, AddrTypeIPv4), v[:]...), nil
	case a.Is6():
		v := a.As16()
		return append(append(b, AddrTypeIPv6), v[:]...), nil
	}
	return b, fmt.Errorf("invalid address: %w", ErrMalformed)
}

// AppendStreamReply appends the encoding of rep, the reply to a request of
// the given kind, to b. For a non-zero status only the status byte is
// written and the other fields of rep are ignored (kind may then be
// anything, e.g. the unknown kind of a refused request).
func AppendStreamReply(b []byte, kind StreamKind, rep *StreamReply) ([]byte, error) {
	if rep.Status != StatusSucceeded {
		return append(b, byte(rep.Status)), nil
	}
	orig := b
	b = append(b, byte(StatusSucceeded))
	switch kind {
	case StreamConnect:
		if !rep.Addr.IsValid() && rep.Addr.Port() == 0 {
			b = append(b, AddrTypeNone, 0, 0)
			break
		}
		var err error
		if b, err = appendAddr(b, rep.Addr.Addr()); err != nil {
			return orig, fmt.Errorf("encode CONNECT reply: %w", err)
		}
		b = binary.BigEndian.AppendUint16(b, rep.Addr.Port())
	case StreamResolve:
		if len(rep.Addrs) == 0 || len(rep.Addrs) > MaxResolvedAddrs {
			return orig, fmt.Errorf("encode RESOLVE reply: %d addresses, want 1 to %d: %w", len(rep.Addrs), MaxResolvedAddrs, ErrMalformed)
		}
		b = append(b, byte(len(rep.Addrs)))
		for _, ra := range rep.Addrs {
			var err error
			if b, err = appendAddr(b, ra.Addr); err != nil {
				return orig, fmt.Errorf("encode RESOLVE reply: %w", err)
			}
			b = binary.BigEndian.AppendUint32(b, ra.TTL)
		}
	case StreamDNS:
		if len(rep.DNS) < MinDNSLen || len(rep.DNS) > MaxDNSLen {
			return orig, fmt.Errorf("encode DNS reply: %d-byte message, want %d to %d: %w", len(rep.DNS), MinDNSLen, MaxDNSLen, ErrMalformed)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(rep.DNS)))
		b = append(b, rep.DNS...)
	default:
		return orig, fmt.Errorf("encode stream reply: kind %d: %w", uint8(kind), ErrUnknownCommand)
	}
	return b, nil
}

// WriteStreamReply writes rep, the reply to a request of the given kind, to
// w in one Write call.
func WriteStreamReply(w io.Writer, kind StreamKind, rep *StreamReply) error {
	b, err := AppendStreamReply(nil, kind, rep)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write stream reply: %w", err)
	}
	return nil
}

// readAddr reads ATYPE and ADDR. none reports whether ATYPE 0 is allowed.
func readAddr(r io.Reader, none bool) (netip.Addr, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:1]); err != nil {
		return netip.Addr{}, noEOF(err)
	}
	switch b[0] {
	case AddrTypeNone:
		if none {
			return netip.Addr{}, nil
		}
	case AddrTypeIPv4:
		if _, err := io.ReadFull(r, b[:4]); err != nil {
			return netip.Addr{}, noEOF(err)
		}
		return netip.AddrFrom4([4]byte(b[:4])), nil
	case AddrTypeIPv6:
		if _, err := io.ReadFull(r, b[:16]); err != nil {
			return netip.Addr{}, noEOF(err)
		}
		a := netip.AddrFrom16(b)
		if a.Is4In6() {
			return netip.Addr{}, fmt.Errorf("IPv4-mapped address %v in an IPv6 field: %w", a, ErrMalformed)
		}
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("address type %d: %w", b[0], ErrMalformed)
}

// ReadStreamReply reads the reply to a request of the given kind from r,
// reading exactly its bytes and no more. If the status is not
// StatusSucceeded it returns the reply and a *StreamError.
func ReadStreamReply(r io.Reader, kind StreamKind) (*StreamReply, error) {
	var b [4]byte
	if _, err := io.ReadFull(r, b[:1]); err != nil {
		return nil, fmt.Errorf("read stream reply status: %w", err)
	}
	rep := &StreamReply{Status: StreamStatus(b[0])}
	if rep.Status != StatusSucceeded {
		return rep, rep.Status.Err()
	}
	switch kind {
	case StreamConnect:
		a, err := readAddr(r, true)
		if err != nil {
			return nil, fmt.Errorf("read CONNECT reply: %w", err)
		}
		if _, err := io.ReadFull(r, b[:2]); err != nil {
			return nil, fmt.Errorf("read CONNECT reply: port: %w", noEOF(err))
		}
		port := binary.BigEndian.Uint16(b[:2])
		if !a.IsValid() && port != 0 {
			return nil, fmt.Errorf("read CONNECT reply: port %d without address: %w", port, ErrMalformed)
		}
		if a.IsValid() {
			rep.Addr = netip.AddrPortFrom(a, port)
		}
	case StreamResolve:
		if _, err := io.ReadFull(r, b[:1]); err != nil {
			return nil, fmt.Errorf("read RESOLVE reply: count: %w", noEOF(err))
		}
		n := int(b[0])
		if n == 0 {
			return nil, fmt.Errorf("read RESOLVE reply: no address: %w", ErrMalformed)
		}
		rep.Addrs = make([]ResolvedAddr, 0, n)
		for i := range n {
			a, err := readAddr(r, false)
			if err != nil {
				return nil, fmt.Errorf("read RESOLVE reply: address %d of %d: %w", i+1, n, err)
			}
			if _, err := io.ReadFull(r, b[:4]); err != nil {
				return nil, fmt.Errorf("read RESOLVE reply: TTL %d of %d: %w", i+1, n, noEOF(err))
			}
			rep.Addrs = append(rep.Addrs, ResolvedAddr{Addr: a, TTL: binary.BigEndian.Uint32(b[:4])})
		}
	case StreamDNS:
		if _, err := io.ReadFull(r, b[:2]); err != nil {
			return nil, fmt.Errorf("read DNS reply: length: %w", noEOF(err))
		}
		n := int(binary.BigEndian.Uint16(b[:2]))
		if n < MinDNSLen {
			return nil, fmt.Errorf("read DNS reply: %d-byte message, min %d: %w", n, MinDNSLen, ErrShortBody)
		}
		rep.DNS = make([]byte, n)
		if _, err := io.ReadFull(r, rep.DNS); err != nil {
			return nil, fmt.Errorf("read DNS reply: message: %w", noEOF(err))
		}
	default:
		return nil, fmt.Errorf("read stream reply: kind %d: %w", uint8(kind), ErrUnknownCommand)
	}
	return rep, nil
}
