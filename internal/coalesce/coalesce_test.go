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

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countingConn records each Write it receives.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, append([]byte(nil), p...))
	c.mu.Unlock()
	return len(p), nil
}

func (c *countingConn) Close() error                       { return nil }
func (c *countingConn) SetWriteDeadline(t time.Time) error { return nil }

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
