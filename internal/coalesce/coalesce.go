package link

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// yamux writes every frame as two conn.Write calls (its 12-byte header, then
// the body) from a single send loop. Over TLS each Write becomes at least one
// record and usually one syscall, so a stream of small cell frames would cost
// two records per cell. coalescer sits between yamux and the TLS conn: Write
// only appends to a buffer, and one flusher goroutine writes whatever has
// accumulated. Under load many frames leave in one TLS write; when idle a frame
// leaves at once (no added latency). A data header is held back until its body
// arrives so that a frame is never split across two records needlessly.
//
// The header recognition relies on yamux's framing (version 0; type 0 = data;
// big-endian length in bytes 8..12) and on the body always following its
// header from the same send loop, which is how yamux v0.1 writes.

const (
	yamuxHeaderLen   = 12
	yamuxTypeData    = 0
	defaultMaxBuffer = 256 << 10
)

var errCoalescerClosed = errors.New("link: connection closed")

type coalescer struct {
	net.Conn

	lastWrite atomic.Int64 // unix nanoseconds of the last flush, for idle padding

	mu     sync.Mutex // guards the following fields
	work   sync.Cond  // signalled when buf gains a complete frame or on close
	space  sync.Cond  // signalled when buf is emptied or on failure
	buf    []byte
	spare  []byte
	held   bool // buf ends in a data header whose body has not arrived yet
	closed bool
	err    error
	max    int

	done chan struct{}
}

func newCoalescer(c net.Conn, max int) *coalescer {
	if max <= 0 {
		max = defaultMaxBuffer
	}
	w := &coalescer{Conn: c, max: max, done: make(chan struct{})}
	w.work.L = &w.mu
	w.space.L = &w.mu
	w.lastWrite.Store(time.Now().UnixNano())
	go w.flushLoop()
	return w
}

// Write queues p for the flusher. It blocks only while the buffer is full.
func (w *coalescer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.closed && w.err == nil && len(w.buf) > 0 && len(w.buf)+len(p) > w.max && !w.held {
		w.space.Wait()
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errCoalescerClosed
	}
	wasHeld := w.held
	w.buf = append(w.buf, p...)
	w.held = !wasHeld && isDataHeaderWithBody(p)
	if !w.held {
		w.work.Signal()
	}
	return len(p), nil
}

func isDataHeaderWithBody(p []byte) bool {
	return len(p) == yamuxHeaderLen && p[0] == 0 && p[1] == yamuxTypeData &&
		binary.BigEndian.Uint32(p[8:12]) > 0
}

func (w *coalescer) flushLoop() {
	defer close(w.done)
	for {
		w.mu.Lock()
		for !w.closed && (len(w.buf) == 0 || w.held) {
			w.work.Wait()
		}
		if len(w.buf) == 0 || w.err != nil {
			w.mu.Unlock()
			return
		}
		out := w.buf
		w.buf = w.spare[:0]
		w.space.Broadcast()
		w.mu.Unlock()

		_, err := w.Conn.Write(out)
		w.lastWrite.Store(time.Now().UnixNano())

		w.mu.Lock()
		w.spare = out[:0]
		if err != nil {
			w.err = err
			w.closed = true
			w.space.Broadcast()
			w.mu.Unlock()
			w.Conn.Close()
			return
		}
		w.mu.Unlock()
	}
}

// idleSince reports when data last left.
func (w *coalescer) idleSince() time.Time { return time.Unix(0, w.lastWrite.Load()) }

// Close flushes what is queued (bounded by the conn's own write deadline)
// and closes the connection.
func (w *coalescer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return w.Conn.Close()
	}
	w.closed = true
	w.held = false
	w.work.Broadcast()
	w.space.Broadcast()
	w.mu.Unlock()
	// Give the flusher a moment to send what is queued (a DESTROY or GoAway),
	// then close regardless.
	w.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	<-w.done
	return w.Conn.Close()
}
