package dnsproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// tcpLengthSize is the size of the length prefix of a DNS message over TCP
// (RFC 1035 section 4.2.2, RFC 7766).
const tcpLengthSize = 2

// Accept backoff when out of file descriptors.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// limitListener bounds the open TCP connections. At the bound a new
// connection is closed at once (and counted), so that a flood of idle
// connections cannot make the kernel's accept queue, or our memory, grow.
// Close closes the listener and every open connection.
type limitListener struct {
	net.Listener
	max          int
	writeTimeout time.Duration
	onReject     func()

	mu     sync.Mutex // guards the following fields
	conns  map[*limitConn]struct{}
	closed bool
}

func newLimitListener(l net.Listener, max int, writeTimeout time.Duration, onReject func()) *limitListener {
	return &limitListener{
		Listener:     l,
		max:          max,
		writeTimeout: writeTimeout,
		onReject:     onReject,
		conns:        make(map[*limitConn]struct{}),
	}
}

// Accept returns the next connection within the bound. When the process is
// out of file descriptors it backs off (5 ms doubling to 1 s) instead of
// spinning: dns.Server would retry at once.
func (l *limitListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) {
				return nil, err
			}
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			time.Sleep(backoff)
			if l.isClosed() {
				return nil, net.ErrClosed
			}
			continue
		}
		backoff = 0
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return nil, net.ErrClosed
		}
		if len(l.conns) >= l.max {
			l.mu.Unlock()
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // reset: leave no TIME_WAIT state behind
			}
			c.Close()
			l.onReject()
			continue
		}
		lc := &limitConn{Conn: c, l: l}
		l.conns[lc] = struct{}{}
		l.mu.Unlock()
		return lc, nil
	}
}

// Close closes the listener and all its connections.
func (l *limitListener) Close() error {
	l.mu.Lock()
	l.closed = true
	conns := make([]*limitConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	err := l.Listener.Close()
	for _, c := range conns {
		c.Close()
	}
	return err
}

func (l *limitListener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// open reports the number of open connections.
func (l *limitListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// limitConn is a connection counted by its limitListener; every write runs
// under a deadline, so a stub that does not read cannot hold a goroutine.
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.l.writeTimeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

func (c *limitConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// queryReader reads queries for dns.Server, bounding their size: UDP
// datagrams larger than MaxQuerySize are dropped; a TCP length prefix above
// MaxQuerySize (or below a header) ends the connection before anything is
// allocated for it.
type queryReader struct {
	inner dns.Reader
	s     *Server
}

func (r queryReader) ReadUDP(conn *net.UDPConn, timeout time.Duration) ([]byte, *dns.SessionUDP, error) {
	for {
		m, sess, err := r.inner.ReadUDP(conn, timeout)
		if err != nil {
			return nil, nil, err
		}
		if len(m) > MaxQuerySize {
			r.s.metrics.Rejected.WithLabelValues(reasonOversized).Inc()
			continue
		}
		return m, sess, nil
	}
}

func (r queryReader) ReadTCP(conn net.Conn, timeout time.Duration) ([]byte, error) {
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	// Close sets closing before it closes the connections, so a reader that
	// set its deadline after that sees it here and does not wait.
	if r.s.closing.Load() {
		return nil, ErrClosed
	}
	var prefix [tcpLengthSize]byte
	if _, err := io.ReadFull(conn, prefix[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(prefix[:]))
	switch {
	case n > MaxQuerySize:
		r.s.metrics.Rejected.WithLabelValues(reasonOversized).Inc()
		return nil, fmt.Errorf("%w: tcp length %d above %d", ErrMalformedQuery, n, MaxQuerySize)
	case n < headerSize:
		r.s.metrics.Rejected.WithLabelValues(reasonMalformed).Inc()
		return nil, fmt.Errorf("%w: tcp length %d below a header", ErrMalformedQuery, n)
	}
	m := make([]byte, n)
	if _, err := io.ReadFull(conn, m); err != nil {
		return nil, err
	}
	return m, nil
}
