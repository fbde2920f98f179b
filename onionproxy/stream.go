package onionproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/chive-net/chive/cell"
)

// streamConn is a stream through a circuit as the front-ends see it. It
// reveals nothing about the circuit: both addresses are 0.0.0.0:0 (a
// *net.TCPAddr, which armon/go-socks5 type-asserts).
type streamConn struct {
	net.Conn // the yamux stream to the exit
	m        *metrics
	once     sync.Once
	release  func()
}

var zeroTCPAddr = &net.TCPAddr{IP: net.IPv4zero, Port: 0}

func (s *streamConn) LocalAddr() net.Addr  { return zeroTCPAddr }
func (s *streamConn) RemoteAddr() net.Addr { return zeroTCPAddr }

func (s *streamConn) Read(p []byte) (int, error) {
	n, err := s.Conn.Read(p)
	if n > 0 {
		s.m.bytes.WithLabelValues("received").Add(float64(n))
	}
	return n, err
}

func (s *streamConn) Write(p []byte) (int, error) {
	n, err := s.Conn.Write(p)
	if n > 0 {
		s.m.bytes.WithLabelValues("sent").Add(float64(n))
	}
	return n, err
}

// CloseWrite half-closes the stream: the exit sees EOF and half-closes its
// connection to the destination, while replies still come back.
func (s *streamConn) CloseWrite() error { return s.Conn.Close() }

// Close closes the stream and frees its place on the circuit.
func (s *streamConn) Close() error {
	err := s.Conn.Close()
	s.once.Do(s.release)
	return err
}

// Local refusals of a stream request.
var (
	// ErrBadDestination: the host is not a valid DNS name or IP literal,
	// or the port is 0.
	ErrBadDestination = errors.New("onionproxy: invalid destination")
	// ErrBadClassPrefix: a SOCKS username starts with "class=" but does
	// not name a delay class (0 to 255).
	ErrBadClassPrefix = errors.New(`onionproxy: SOCKS username "class=" prefix without a delay class number`)
)

// ClassPrefix starts a SOCKS username that selects a delay class: "class=N"
// or "class=N:anything" asks for class N (decimal 0 to 255, no leading
// zeros); the whole username and password still isolate as usual.
const ClassPrefix = "class="

// parseClassUsername returns the delay class a SOCKS username asks for, and
// whether it asks for one.
func parseClassUsername(user string) (uint8, bool, error) {
	rest, ok := strings.CutPrefix(user, ClassPrefix)
	if !ok {
		return 0, false, nil
	}
	num, _, _ := strings.Cut(rest, ":")
	n, err := strconv.ParseUint(num, 10, 8)
	if err != nil || strconv.FormatUint(n, 10) != num {
		// Not a number 0-255 in canonical form ("7", not "007" or "+7").
		return 0, true, ErrBadClassPrefix
	}
	return uint8(n), true, nil
}

// isolation is what decides which streams may share a circuit (Tor's
// defaults: IsolateClientAddr, IsolateSOCKSAuth and per-listener), plus the
// delay class.
type isolation struct {
	listener string // front-end kind and address, e.g. "socks|127.0.0.1:9050"
	client   string // client IP
	user     string
	pass     string
	hasAuth  bool
	class    uint8
}

// key is the isolation key: equal keys may share circuits, different keys
// never do. Lengths prefix the credentials so that no two credential pairs
// give one key. It holds client data: never log it.
func (i isolation) key() string {
	var b strings.Builder
	b.Grow(len(i.listener) + len(i.client) + len(i.user) + len(i.pass) + 32)
	b.WriteString(i.listener)
	b.WriteByte('|')
	b.WriteString(i.client)
	if i.hasAuth {
		fmt.Fprintf(&b, "|u%d:%s|p%d:%s", len(i.user), i.user, len(i.pass), i.pass)
	}
	fmt.Fprintf(&b, "|class=%d", i.class)
	return b.String()
}

// clientIP returns the IP part of a client address (the port is not part
// of isolation: a client's connections differ by port).
func clientIP(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// checkHost refuses destinations no exit could reach: a host must be an IP
// literal or a DNS name (at most 253 bytes, labels of 1 to 63 bytes of
// letters, digits, '-' and '_'), and the port non-zero.
func checkHost(host string, port uint16) error {
	if port == 0 {
		return fmt.Errorf("%w: port 0", ErrBadDestination)
	}
	if err := cell.ValidateHost(host); err != nil {
		return fmt.Errorf("%w: %v", ErrBadDestination, err)
	}
	if strings.IndexByte(host, ':') >= 0 {
		return nil // cell.ValidateHost checked the IPv6 literal
	}
	name := strings.TrimSuffix(host, ".")
	if len(name) == 0 || len(name) > 253 {
		return fmt.Errorf("%w: name of %d bytes", ErrBadDestination, len(host))
	}
	for label := range strings.SplitSeq(name, ".") {
		if len(label) == 0 || len(label) > 63 {
			return fmt.Errorf("%w: label of %d bytes", ErrBadDestination, len(label))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%w: character %q in a name", ErrBadDestination, c)
			}
		}
	}
	return nil
}

// SOCKS5 reply codes (RFC 1928).
const (
	socksSucceeded           = 0
	socksGeneralFailure      = 1
	socksNotAllowed          = 2
	socksNetworkUnreachable  = 3
	socksHostUnreachable     = 4
	socksConnectionRefused   = 5
	socksTTLExpired          = 6
	socksCommandNotSupported = 7
	socksAddressNotSupported = 8
)

// socksCode is the SOCKS5 reply code for a failed stream request.
func socksCode(err error) byte {
	var se *cell.StreamError
	switch {
	case errors.As(err, &se):
		return se.Status.SOCKSCode()
	case errors.Is(err, ErrBadClassPrefix), errors.Is(err, ErrNoExit):
		return socksNotAllowed
	case errors.Is(err, ErrBadDestination):
		return socksHostUnreachable
	case errors.Is(err, ErrStreamTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return socksTTLExpired
	default:
		return socksGeneralFailure
	}
}

// streamResult names a stream's outcome for metrics.
func streamResult(err error) string {
	if err == nil {
		return "ok"
	}
	var se *cell.StreamError
	switch {
	case errors.As(err, &se):
		switch se.Status {
		case cell.StatusConnectionRefused:
			return "refused"
		case cell.StatusNotAllowed:
			return "exit_policy"
		case cell.StatusTimeout:
			return "timeout"
		case cell.StatusHostUnreachable, cell.StatusNetworkUnreachable, cell.StatusResolveFailed:
			return "unreachable"
		default:
			return "exit_error"
		}
	case errors.Is(err, ErrNoConsensus):
		return "no_consensus"
	case errors.Is(err, ErrNoExit), errors.Is(err, ErrBadClassPrefix):
		return "not_allowed"
	case errors.Is(err, ErrBadDestination):
		return "bad_destination"
	case errors.Is(err, ErrStreamTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "circuit_failed"
	}
}
