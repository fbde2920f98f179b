package circuit

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

func TestPipeOrderAndEOF(t *testing.T) {
	p := newPipe(func([]byte) error { return nil })
	r := rand.New(rand.NewPCG(3, 4))
	var want bytes.Buffer
	done := make(chan []byte)
	go func() {
		var got bytes.Buffer
		buf := make([]byte, 7000)
		r := rand.New(rand.NewPCG(5, 6)) // the reader's own: rand.Rand is not goroutine-safe
		for {
			n, err := p.Read(buf[:1+r.IntN(len(buf)-1)])
			got.Write(buf[:n])
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("Read error %v, want EOF", err)
				}
				done <- got.Bytes()
				return
			}
		}
	}()
	for i := 0; i < 3000; i++ {
		d := make([]byte, r.IntN(491))
		for j := range d {
			d[j] = byte(r.Uint32())
		}
		want.Write(d)
		for p.deliver(d) != nil {
		}
	}
	p.closeRead(io.EOF)
	if got := <-done; !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("read %d bytes differing from the %d delivered", len(got), want.Len())
	}
	if len(p.chunks) != 0 {
		t.Fatalf("drained pipe still holds %d chunks", len(p.chunks))
	}
}

func TestPipeOverflow(t *testing.T) {
	p := newPipe(func([]byte) error { return nil })
	big := make([]byte, cellMax)
	var err error
	for i := 0; i < maxPipeBuffer/cellMax+2 && err == nil; i++ {
		err = p.deliver(big)
	}
	if !errors.Is(err, errPipeOverflow) {
		t.Fatalf("deliver past the bound: %v, want errPipeOverflow", err)
	}
	p.Close()
	if _, err := p.Read(make([]byte, 1)); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Read after Close: %v", err)
	}
}

const cellMax = 490
