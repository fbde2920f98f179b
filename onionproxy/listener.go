package onionproxy

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// limitListener bounds the open connections of one front-end: beyond max,
// a new connection is closed at once (and counted) rather than left waiting
// in the kernel's backlog. It tracks its connections so that shutdown can
// close them, hijacked HTTP connections included.
type limitListener struct {
	net.Listener
	sem      chan struct{}
	rejected prometheus.Counter

	mu     sync.Mutex // guards conns and closed
	conns  map[*trackedConn]struct{}
	closed bool
}

func newLimitListener(ln net.Listener, max int, rejected prometheus.Counter) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, max), rejected: rejected, conns: make(map[*trackedConn]struct{})}
}

// Accept returns the next connection within the limit.
func (l *limitListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			// Anything else (EMFILE when a flood exhausts descriptors,
			// ECONNABORTED) passes: wait a little and go on serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		select {
		case l.sem <- struct{}{}:
		default:
			c.Close()
			l.rejected.Inc()
			continue
		}
		tc := &trackedConn{Conn: c, l: l}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			<-l.sem
			return nil, net.ErrClosed
		}
		l.conns[tc] = struct{}{}
		l.mu.Unlock()
		return tc, nil
	}
}

// closeAll stops accepting and closes every open connection.
func (l *limitListener) closeAll() {
	l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// open returns the number of open connections.
func (l *limitListener) open() int { return len(l.sem) }

// trackedConn frees its place in the limit when closed.
type trackedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		<-c.l.sem
	})
	return err
}

// CloseWrite half-closes a TCP connection (and closes anything else).
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
