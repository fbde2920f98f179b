// Package socks5 is the small SOCKS5 client (RFC 1928, with the
// username/password method of RFC 1929) that the benchmark drives both
// networks with. Names are sent to the proxy unresolved (address type
// DOMAINNAME), as a Tor client expects; credentials are what selects
// circuit isolation (and, for chive, the delay class).
package socks5

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// Wire constants.
const (
	version5       = 0x05
	authVersion    = 0x01 // RFC 1929 sub-negotiation version
	methodNoAuth   = 0x00
	methodUserPass = 0x02
	methodNone     = 0xff
	cmdConnect     = 0x01
	atypIPv4       = 0x01
	atypDomain     = 0x03
	atypIPv6       = 0x04
	maxField       = 255 // longest host name, user name or password
)

// Reply is a SOCKS5 reply code.
type Reply uint8

// Reply codes of RFC 1928 section 6.
const (
	Succeeded            Reply = 0x00
	GeneralFailure       Reply = 0x01
	NotAllowed           Reply = 0x02
	NetworkUnreachable   Reply = 0x03
	HostUnreachable      Reply = 0x04
	ConnectionRefused    Reply = 0x05
	TTLExpired           Reply = 0x06
	CommandNotSupported  Reply = 0x07
	AddrTypeNotSupported Reply = 0x08
)

func (r Reply) String() string {
	switch r {
	case Succeeded:
		return "succeeded"
	case GeneralFailure:
		return "general failure"
	case NotAllowed:
		return "connection not allowed by ruleset"
	case NetworkUnreachable:
		return "network unreachable"
	case HostUnreachable:
		return "host unreachable"
	case ConnectionRefused:
		return "connection refused"
	case TTLExpired:
		return "TTL expired"
	case CommandNotSupported:
		return "command not supported"
	case AddrTypeNotSupported:
		return "address type not supported"
	}
	return "reply 0x" + strconv.FormatUint(uint64(r), 16)
}

// ReplyError is a CONNECT the proxy refused.
type ReplyError struct{ Reply Reply }

func (e *ReplyError) Error() string { return "socks5: proxy replied: " + e.Reply.String() }

// Errors where callers branch.
var (
	ErrAuthRejected = errors.New("socks5: proxy rejected the username/password")
	ErrNoMethod     = errors.New("socks5: proxy accepts none of our authentication methods")
	ErrProtocol     = errors.New("socks5: malformed reply from proxy")
)

// Auth is the username and password sent with RFC 1929. A Tor client (and
// chive's) isolates streams by them: different credentials never share a
// circuit.
type Auth struct{ User, Pass string }

// Dialer opens connections through one SOCKS5 proxy.
type Dialer struct {
	Proxy string // host:port of the proxy
	Auth  *Auth  // nil: no authentication
	// Dial opens the TCP connection to the proxy; nil uses a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Phase, if set, is called as each step of the handshake completes:
	// PhaseConnected (TCP to the proxy), PhaseAuthenticated (method
	// chosen and, with Auth, credentials accepted) and PhaseReplied (the
	// proxy's CONNECT reply read), for timing them.
	Phase func(Phase)
}

// Phase names a completed step of the handshake.
type Phase int

// The handshake's steps, in order.
const (
	PhaseConnected Phase = iota
	PhaseAuthenticated
	PhaseReplied
)

// DialContext connects to addr (host:port; host may be a name, which the
// proxy resolves) through the proxy. The context bounds the whole
// handshake; the returned connection has no deadline.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil, fmt.Errorf("socks5: network %q: only tcp", network)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("socks5: destination: %w", err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("socks5: destination port %q: %w", portStr, err)
	}
	req, err := appendConnect(nil, host, uint16(port))
	if err != nil {
		return nil, err
	}
	dial := d.Dial
	if dial == nil {
		var nd net.Dialer
		dial = nd.DialContext
	}
	c, err := dial(ctx, "tcp", d.Proxy)
	if err != nil {
		return nil, fmt.Errorf("socks5: connect to proxy: %w", err)
	}
	phase := d.Phase
	if phase == nil {
		phase = func(Phase) {}
	}
	phase(PhaseConnected)
	// Cancel the handshake by closing the connection.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	err = handshake(c, d.Auth, req, phase)
	if !stop() {
		c.Close()
		return nil, fmt.Errorf("socks5: handshake: %w", ctx.Err())
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// appendConnect appends a CONNECT request for host:port.
func appendConnect(b []byte, host string, port uint16) ([]byte, error) {
	b = append(b, version5, cmdConnect, 0)
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Is4() {
			b = append(b, atypIPv4)
		} else {
			b = append(b, atypIPv6)
		}
		b = append(b, ip.AsSlice()...)
	} else {
		if len(host) == 0 || len(host) > maxField {
			return nil, fmt.Errorf("socks5: host name of %d bytes (1 to %d)", len(host), maxField)
		}
		b = append(b, atypDomain, byte(len(host)))
		b = append(b, host...)
	}
	return binary.BigEndian.AppendUint16(b, port), nil
}

// appendUserPass appends an RFC 1929 request.
func appendUserPass(b []byte, a *Auth) ([]byte, error) {
	if len(a.User) == 0 || len(a.User) > maxField || len(a.Pass) > maxField {
		return nil, fmt.Errorf("socks5: user name of %d bytes, password of %d (1 to %d, 0 to %d)",
			len(a.User), len(a.Pass), maxField, maxField)
	}
	b = append(b, authVersion, byte(len(a.User)))
	b = append(b, a.User...)
	b = append(b, byte(len(a.Pass)))
	return append(b, a.Pass...), nil
}

func handshake(c net.Conn, auth *Auth, req []byte, phase func(Phase)) error {
	// Greeting and request are sent without waiting where the protocol
	// allows: the method choice must be read before authenticating.
	greet := []byte{version5, 1, methodNoAuth}
	if auth != nil {
		greet[2] = methodUserPass
	}
	if _, err := c.Write(greet); err != nil {
		return fmt.Errorf("socks5: send greeting: %w", err)
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil {
		return fmt.Errorf("socks5: read method choice: %w", err)
	}
	if m[0] != version5 {
		return fmt.Errorf("%w: version %d", ErrProtocol, m[0])
	}
	switch {
	case m[1] == methodNone:
		return ErrNoMethod
	case m[1] != greet[2]:
		return fmt.Errorf("%w: method %d, offered %d", ErrProtocol, m[1], greet[2])
	}
	if auth != nil {
		up, err := appendUserPass(nil, auth)
		if err != nil {
			return err
		}
		if _, err := c.Write(up); err != nil {
			return fmt.Errorf("socks5: send credentials: %w", err)
		}
		if _, err := io.ReadFull(c, m[:]); err != nil {
			return fmt.Errorf("socks5: read authentication status: %w", err)
		}
		if m[1] != 0 {
			return ErrAuthRejected
		}
	}
	phase(PhaseAuthenticated)
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("socks5: send CONNECT: %w", err)
	}
	if err := readReply(c); err != nil {
		return err
	}
	phase(PhaseReplied)
	return nil
}

// readReply reads a CONNECT reply, bound address included.
func readReply(r io.Reader) error {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return fmt.Errorf("socks5: read reply: %w", err)
	}
	if h[0] != version5 {
		return fmt.Errorf("%w: reply version %d", ErrProtocol, h[0])
	}
	if Reply(h[1]) != Succeeded {
		// The connection is closed next: the bound address does not matter.
		return &ReplyError{Reply(h[1])}
	}
	var n int
	switch h[3] {
	case atypIPv4:
		n = 4
	case atypIPv6:
		n = 16
	case atypDomain:
		var l [1]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return fmt.Errorf("socks5: read reply: %w", err)
		}
		n = int(l[0])
	default:
		return fmt.Errorf("%w: bound address type %d", ErrProtocol, h[3])
	}
	rest := make([]byte, n+2)
	if _, err := io.ReadFull(r, rest); err != nil {
		return fmt.Errorf("socks5: read reply address: %w", err)
	}
	return nil
}
