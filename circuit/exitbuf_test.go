package circuit

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/chive-net/chive/cell"
)

// frame is one yamux frame: header and body.
func frame(typ byte, flags uint16, id uint32, body []byte) []byte {
	h := make([]byte, yamuxHeaderLen, yamuxHeaderLen+len(body))
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:4], flags)
	binary.BigEndian.PutUint32(h[4:8], id)
	binary.BigEndian.PutUint32(h[8:12], uint32(len(body)))
	if typ == yamuxTypeWindowUpdate {
		binary.BigEndian.PutUint32(h[8:12], 1000) // a credit, not a body
		return h
	}
	return append(h, body...)
}

// deliverChunks hands b to the counter in random pieces, as cells would.
func deliverChunks(b *exitBuffers, p []byte, r *rand.Rand) {
	for len(p) > 0 {
		n := min(len(p), 1+r.IntN(cell.MaxRelayData))
		b.delivered(p[:n])
		p = p[n:]
	}
}

func TestExitBuffersCount(t *testing.T) {
	x := &exitState{}
	b := newExitBuffers(x)
	r := rand.New(rand.NewPCG(1, 2))
	var in []byte
	in = append(in, frame(yamuxTypeWindowUpdate, yamuxFlagSYN, 1, nil)...)
	in = append(in, frame(yamuxTypeData, 0, 1, make([]byte, 3000))...)
	in = append(in, frame(yamuxTypeData, yamuxFlagSYN, 3, make([]byte, 700))...) // SYN on a data frame
	in = append(in, frame(yamuxTypeData, 0, 5, make([]byte, 999))...)            // never opened: not counted
	in = append(in, frame(2, 0, 0, nil)...)                                      // ping
	in = append(in, frame(yamuxTypeData, 0, 1, make([]byte, 100))...)
	deliverChunks(b, in, r)
	if got, want := b.Total(), int64(3100+700); got != want || x.buffered.Load() != want {
		t.Fatalf("held %d (exit-wide %d), want %d", got, x.buffered.Load(), want)
	}
	b.read(1, 1000)
	b.read(1, 1<<20) // more than held: clamped
	b.read(9, 50)    // unknown stream: ignored
	if got := b.Total(); got != 700 {
		t.Fatalf("after reading stream 1: held %d, want 700", got)
	}
	// An RST from the client drops the stream's buffer.
	deliverChunks(b, frame(yamuxTypeWindowUpdate, yamuxFlagRST, 3, nil), r)
	if got := b.Total(); got != 0 {
		t.Fatalf("after RST: held %d, want 0", got)
	}
	// Data for a stream that is over is not counted again.
	deliverChunks(b, frame(yamuxTypeData, 0, 3, make([]byte, 400)), r)
	deliverChunks(b, frame(yamuxTypeWindowUpdate, yamuxFlagSYN, 7, nil), r)
	deliverChunks(b, frame(yamuxTypeData, 0, 7, make([]byte, 400)), r)
	if got := b.Total(); got != 400 {
		t.Fatalf("held %d, want 400 (stream 7 only)", got)
	}
	b.done(7)
	if got := b.Total(); got != 0 || x.buffered.Load() != 0 {
		t.Fatalf("after done: held %d (exit-wide %d), want 0", got, x.buffered.Load())
	}
}

func TestExitBuffersBoundedStreams(t *testing.T) {
	x := &exitState{cfg: ExitConfig{MaxStreamsPerCircuit: 8}}
	b := newExitBuffers(x)
	var in []byte
	for id := uint32(1); id < 20000; id += 2 {
		in = append(in, frame(yamuxTypeWindowUpdate, yamuxFlagSYN, id, nil)...)
	}
	b.delivered(in)
	if n := len(b.held); n != b.maxTracked {
		t.Fatalf("%d streams tracked after 10,000 SYNs, want the cap %d", n, b.maxTracked)
	}
}

// FuzzExitBuffers feeds arbitrary bytes, in arbitrary pieces, with reads
// and stream ends in between: the counts never go below zero, the exit-wide
// count always equals the session's, and closing the session returns it to
// zero.
func FuzzExitBuffers(f *testing.F) {
	f.Add(append(frame(yamuxTypeWindowUpdate, yamuxFlagSYN, 1, nil), frame(yamuxTypeData, 0, 1, []byte("hello"))...), uint64(1))
	f.Add(frame(yamuxTypeData, yamuxFlagSYN|yamuxFlagRST, 3, make([]byte, 600)), uint64(2))
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 1, 2, 3}, uint64(3))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		x := &exitState{}
		b := newExitBuffers(x)
		r := rand.New(rand.NewPCG(seed, 7))
		for len(in) > 0 {
			n := min(len(in), 1+r.IntN(600))
			b.delivered(in[:n])
			in = in[n:]
			switch r.IntN(4) {
			case 0:
				b.read(uint32(r.IntN(8)), r.IntN(2000))
			case 1:
				b.done(uint32(r.IntN(8)))
			}
			b.mu.Lock()
			var sum int64
			for id, h := range b.held {
				if h < 0 {
					t.Fatalf("stream %d holds %d", id, h)
				}
				sum += h
			}
			total := b.total
			b.mu.Unlock()
			if sum != total || x.buffered.Load() != total {
				t.Fatalf("streams sum to %d, session says %d, exit says %d", sum, total, x.buffered.Load())
			}
		}
		b.closeAll()
		if b.Total() != 0 || x.buffered.Load() != 0 {
			t.Fatalf("after closeAll: %d, exit %d", b.Total(), x.buffered.Load())
		}
	})
}

// TestExitBufferBudget: clients pushing data that their destinations do
// not read make the exit hold it; past the exit's budget the circuit holding
// the most is destroyed with RESOURCELIMIT, a light circuit survives, and
// the exit's count returns to zero once the streams are gone.
func TestExitBufferBudget(t *testing.T) {
	// A destination that accepts and never reads.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	defer func() {
		for {
			select {
			case c := <-held:
				c.Close()
			default:
				return
			}
		}
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	src := startSource(t)
	n := newTestNet(t, relayOpts{exitTune: func(e *ExitConfig) { e.MaxBufferedBytes = 1 << 20 }})
	exit := n.relays[len(n.relays)-1]
	light := n.build(t, 0)
	heavy := n.build(t, 0)
	ctx := context.Background()
	conn, err := heavy.Dial(ctx, "127.0.0.1", port)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := conn.Write(chunk); err != nil {
				return
			}
		}
	}()
	waitFor(t, "the heavy circuit to be destroyed", 30*time.Second, func() bool { return heavy.Err() != nil })
	var de *DestroyedError
	if !errors.As(heavy.Err(), &de) || de.Reason != cell.DestroyResourceLimit {
		t.Fatalf("heavy circuit: %v, want DESTROY RESOURCELIMIT", heavy.Err())
	}
	if light.Err() != nil {
		t.Fatalf("the light circuit died too: %v", light.Err())
	}
	if counterValue(exit.metrics.circuitsKilledExitBuffers) < 1 {
		t.Fatal("the exit counted no budget kill")
	}
	lc, err := light.Dial(ctx, "127.0.0.1", src.port)
	if err != nil {
		t.Fatalf("light circuit after the kill: %v", err)
	}
	lc.Write([]byte{'e', 'x'}) // echo mode, then one byte to echo
	var one [1]byte
	lc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(lc, one[:]); err != nil || one[0] != 'x' {
		t.Fatalf("light circuit echo: %q, %v", one[:], err)
	}
	lc.Close()
	waitFor(t, "the exit's count to return to zero", 10*time.Second, func() bool {
		return exit.relay.exit.buffered.Load() == 0
	})
}
