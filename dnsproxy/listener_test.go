package dnsproxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeListener hands out queued results: an error or one end of a pipe.
type fakeListener struct {
	mu      sync.Mutex // guards results, closed
	results []any      // error or net.Conn
	closed  bool
	peers   []net.Conn // the other ends
}

func (f *fakeListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, net.ErrClosed
	}
	if len(f.results) == 0 {
		return nil, errors.New("fake: nothing queued")
	}
	r := f.results[0]
	f.results = f.results[1:]
	if err, ok := r.(error); ok {
		return nil, err
	}
	return r.(net.Conn), nil
}

func (f *fakeListener) queueConn() {
	a, b := net.Pipe()
	f.results = append(f.results, a)
	f.peers = append(f.peers, b)
}

func (f *fakeListener) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }

// peerClosed reports whether the pipe end's partner was closed.
func peerClosed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestLimitListener(t *testing.T) {
	f := &fakeListener{}
	rejected := 0
	l := newLimitListener(f, 2, time.Second, func() { rejected++ })

	// Out of descriptors twice: Accept backs off and then returns the conn.
	f.results = append(f.results,
		fmt.Errorf("accept: %w", syscall.EMFILE),
		fmt.Errorf("accept: %w", syscall.ENFILE))
	f.queueConn()
	start := time.Now()
	if _, err := l.Accept(); err != nil {
		t.Fatalf("Accept after EMFILE: %v", err)
	}
	if d := time.Since(start); d < 3*acceptBackoffMin {
		t.Errorf("no backoff: %v", d)
	}
	// Other errors pass through.
	f.results = append(f.results, errors.New("boom"))
	if _, err := l.Accept(); err == nil || err.Error() != "boom" {
		t.Errorf("error: got %v, want boom", err)
	}

	// Second conn fits; the third and fourth are over the bound: closed,
	// counted, and Accept goes on to the fifth after c2 closes.
	f.queueConn()
	c2, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f.queueConn()
	f.queueConn()
	f.results = append(f.results, errors.New("stop"))
	if _, err := l.Accept(); err == nil || err.Error() != "stop" {
		t.Fatalf("got %v, want stop", err)
	}
	if rejected != 2 || l.open() != 2 {
		t.Errorf("rejected %d open %d, want 2 and 2", rejected, l.open())
	}
	if !peerClosed(f.peers[2]) || !peerClosed(f.peers[3]) {
		t.Error("connections over the bound not closed")
	}
	c2.Close()
	c2.Close() // idempotent for the count
	if l.open() != 1 {
		t.Errorf("open after close: %d, want 1", l.open())
	}
	f.queueConn()
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}

	// Close closes the listener and every open connection.
	l.Close()
	if !peerClosed(f.peers[0]) || !peerClosed(f.peers[4]) {
		t.Error("open connections survived Close")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
}
