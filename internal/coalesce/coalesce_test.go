package coalesce

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countingConn records each Write it receives and, when it wraps a real
// Conn, passes it on.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, append([]byte(nil), p...))
	c.mu.Unlock()
	if c.Conn != nil {
		return c.Conn.Write(p)
	}
	return len(p), nil
}

func (c *countingConn) Close() error {
	if c.Conn != nil {
		return c.Conn.Close()
	}
	return nil
}

func (c *countingConn) SetWriteDeadline(t time.Time) error {
	if c.Conn != nil {
		return c.Conn.SetWriteDeadline(t)
	}
	return nil
}

func header(typ byte, length uint32) []byte {
	h := make([]byte, yamuxHeaderLen)
	h[1] = typ
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

func TestHeaderHeldUntilBody(t *testing.T) {
	cc := &countingConn{}
	w := New(cc, 0, nil)
	hdr := header(yamuxTypeData, 5)
	w.Write(hdr)
	time.Sleep(20 * time.Millisecond) // the flusher must not send a header alone
	cc.mu.Lock()
	n := len(cc.writes)
	cc.mu.Unlock()
	if n != 0 {
		t.Fatalf("a data header left alone in %d writes; want it held for its body", n)
	}
	w.Write([]byte("hello"))
	w.Close()
	got := bytes.Join(cc.writes, nil)
	if want := append(hdr, "hello"...); !bytes.Equal(got, want) {
		t.Fatalf("wrote %x, want %x", got, want)
	}
	if len(cc.writes) != 1 {
		t.Fatalf("frame left in %d writes, want 1", len(cc.writes))
	}
}

func TestHeldHeaderNeverStalls(t *testing.T) {
	// A data header whose body never comes (yamux abandons a body on a send
	// timeout) must not keep earlier bytes, nor later ones, from leaving.
	cc := &countingConn{}
	w := New(cc, 0, nil)
	defer w.Close()
	w.Write([]byte("earlier frame"))
	w.Write(header(yamuxTypeData, 9))
	w.Write(header(1, 0)) // taken as the body: the flusher must go on
	deadline := time.Now().Add(5 * time.Second)
	for {
		cc.mu.Lock()
		total := len(bytes.Join(cc.writes, nil))
		cc.mu.Unlock()
		if total == len("earlier frame")+2*yamuxHeaderLen {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d bytes left", total)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWindowUpdateNotHeld(t *testing.T) {
	cc := &countingConn{}
	w := New(cc, 0, nil)
	w.Write(header(1, 1000)) // window update: no body follows
	deadline := time.Now().Add(5 * time.Second)
	for {
		cc.mu.Lock()
		n := len(cc.writes)
		cc.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a window-update header was held back")
		}
		time.Sleep(time.Millisecond)
	}
	w.Close()
}

// TestStreamIntegrity pushes random frames from one writer through a real
// TCP connection and checks the bytes arrive intact and in order.
func TestStreamIntegrity(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var got bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(&got, c)
		c.Close()
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	w := New(raw, 4096, nil)
	var want bytes.Buffer
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		n := 1 + r.IntN(3000)
		body := make([]byte, n)
		for j := range body {
			body[j] = byte(r.Uint32())
		}
		h := header(yamuxTypeData, uint32(n))
		w.Write(h)
		w.Write(body)
		want.Write(h)
		want.Write(body)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("received %d bytes differing from the %d written", got.Len(), want.Len())
	}
}

func TestWriteAfterFailure(t *testing.T) {
	a, b := net.Pipe()
	b.Close()
	w := New(a, 0, nil)
	defer w.Close()
	w.Write([]byte("x"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := w.Write([]byte("y")); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Write kept succeeding after the connection failed")
		}
		time.Sleep(time.Millisecond)
	}
}

// flagged is a window update header with the given flags.
func flagged(flags uint16) []byte {
	h := header(1, 0)
	binary.BigEndian.PutUint16(h[2:4], flags)
	return h
}

func waitWrites(t *testing.T, cc *countingConn, n int, within time.Duration) [][]byte {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		cc.mu.Lock()
		got := append([][]byte(nil), cc.writes...)
		cc.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes within %v, want %d", len(got), within, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestACKLeavesWithReply(t *testing.T) {
	cc := &countingConn{}
	w := New(cc, 0, nil)
	w.HoldACKs(time.Minute)
	ack := flagged(2)
	w.Write(ack)
	time.Sleep(20 * time.Millisecond) // the flusher must not send the ACK alone
	cc.mu.Lock()
	n := len(cc.writes)
	cc.mu.Unlock()
	if n != 0 {
		t.Fatalf("the ACK left alone in %d writes; want it held for the reply", n)
	}
	reply := header(yamuxTypeData, 5)
	w.Write(reply)
	w.Write([]byte("hello"))
	got := waitWrites(t, cc, 1, 5*time.Second)
	w.Close()
	want := append(append(append([]byte(nil), ack...), reply...), "hello"...)
	if len(got) != 1 || !bytes.Equal(got[0], want) {
		t.Fatalf("wrote %x, want %x in one write", got, want)
	}
}

func TestHeldACKLeavesAfterHoldTime(t *testing.T) {
	cc := &countingConn{}
	w := New(cc, 0, nil)
	defer w.Close()
	w.HoldACKs(30 * time.Millisecond)
	start := time.Now()
	w.Write(flagged(2))
	got := waitWrites(t, cc, 1, 5*time.Second)
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("the ACK left after %v, before its hold time", d)
	}
	if !bytes.Equal(got[0], flagged(2)) {
		t.Fatalf("wrote %x", got[0])
	}
	// The timer is reused for the next stream's ACK.
	w.Write(flagged(2))
	waitWrites(t, cc, 2, 5*time.Second)
}

func TestOnlyPureACKsHeld(t *testing.T) {
	// SYN, SYN+ACK, FIN, RST and ACK+FIN go at once: only a plain ACK
	// (which may carry a window credit) is held.
	for _, flags := range []uint16{1, 3, 4, 8, 2 | 4} {
		cc := &countingConn{}
		w := New(cc, 0, nil)
		w.HoldACKs(time.Minute)
		w.Write(flagged(flags))
		waitWrites(t, cc, 1, 5*time.Second)
		w.Close()
	}
	cc := &countingConn{}
	w := New(cc, 0, nil)
	defer w.Close()
	w.HoldACKs(time.Minute)
	partial := flagged(2)
	w.Write(partial[:4]) // not a whole header: never held
	waitWrites(t, cc, 1, 5*time.Second)
}

func TestCloseSendsHeldACK(t *testing.T) {
	cc := &countingConn{}
	w := New(cc, 0, nil)
	w.HoldACKs(time.Minute)
	w.Write(flagged(2))
	w.Close()
	if got := bytes.Join(cc.writes, nil); !bytes.Equal(got, flagged(2)) {
		t.Fatalf("Close wrote %x, want the held ACK", got)
	}
}

// TestYamuxACKWithReply runs real yamux sessions: the server's ACK of a
// stream and its answer leave in one write, and streams whose answer comes
// late (after the hold) or never still open and work.
func TestYamuxACKWithReply(t *testing.T) {
	a, b := net.Pipe()
	rec := &countingConn{Conn: b}
	sc := New(rec, 0, nil)
	sc.HoldACKs(50 * time.Millisecond)
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = false
	srv, err := yamux.Server(sc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := yamux.Client(a, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	go func() {
		for i := 0; ; i++ {
			s, err := srv.AcceptStream()
			if err != nil {
				return
			}
			go func() {
				defer s.Close()
				buf := make([]byte, 4)
				if _, err := io.ReadFull(s, buf); err != nil {
					return
				}
				if i == 1 {
					time.Sleep(200 * time.Millisecond) // answer after the hold
				}
				s.Write(buf)
			}()
		}
	}()
	for i := range 2 {
		rec.mu.Lock()
		before := len(rec.writes)
		rec.mu.Unlock()
		s, err := cli.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte("ping"))
		got := make([]byte, 4)
		if _, err := io.ReadFull(s, got); err != nil || string(got) != "ping" {
			t.Fatalf("stream %d: read %q, %v", i, got, err)
		}
		// Wait for the server's FIN, so that none of this stream's frames
		// can come after the next stream's first write is looked for.
		if rest, err := io.ReadAll(s); err != nil || len(rest) != 0 {
			t.Fatalf("stream %d: after the answer: %q, %v; want EOF", i, rest, err)
		}
		rec.mu.Lock()
		first := rec.writes[before]
		rec.mu.Unlock()
		isACK := isPureACK(first[:yamuxHeaderLen])
		switch {
		case !isACK:
			t.Fatalf("stream %d: the server's first write %x is not the ACK", i, first)
		case i == 0 && len(first) < 2*yamuxHeaderLen+4:
			t.Fatalf("stream 0: the ACK left in a write of %d bytes, want it with the answer", len(first))
		case i == 1 && len(first) != yamuxHeaderLen:
			t.Fatalf("stream 1: the ACK left in a write of %d bytes, want it alone after the hold", len(first))
		}
		s.Close()
	}
}
