package circuit

import (
	"encoding/binary"
	"sync"

	"go.uber.org/zap"

	"github.com/chive-net/chive/cell"
)

// An exit holds, for every stream, the bytes the client has sent and the
// destination has not read yet: in the circuit's pipe, then in the stream's
// yamux buffer. A stream's window bounds its share (8 MiB, 64 MiB on delayed
// classes), but not the sum over thousands of streams toward destinations
// that read slowly or never. exitBuffers counts those bytes, stream by
// stream, so that the exit can bound the sum: past ExitConfig.MaxBufferedBytes
// the circuit holding the most is destroyed, as the mix's budget does for
// cells.
//
// The count follows yamux's framing in the bytes the pipe accepts: a
// frame with SYN opens a stream's count, the bodies of its data frames add
// to it, the exit's reads subtract from it, and the end of the exit's
// stream (or an RST from the client) closes it. Frames of streams without a
// count (not yet opened, or over) are not counted: yamux drops them.
type exitBuffers struct {
	x *exitState
	// maxTracked bounds the streams counted at once. yamux refuses streams
	// past its accept backlog without the exit ever seeing them, so their
	// counts would only end with the session: a client sending SYN after
	// SYN must not grow the map without bound. A client within the exit's
	// stream limits never has this many streams open.
	maxTracked int

	mu      sync.Mutex
	held    map[uint32]int64 // stream ID -> bytes held
	total   int64            // sum of held
	hdr     [yamuxHeaderLen]byte
	hdrN    int    // header bytes gathered
	body    uint32 // body bytes of the current data frame still to come
	countID uint32 // stream whose body is passing; 0: not counted
}

const (
	yamuxHeaderLen        = 12
	yamuxTypeData         = 0
	yamuxTypeWindowUpdate = 1
	yamuxFlagSYN          = 1
	yamuxFlagRST          = 8
)

func newExitBuffers(x *exitState) *exitBuffers {
	return &exitBuffers{x: x, held: make(map[uint32]int64), maxTracked: 4*x.cfg.MaxStreamsPerCircuit + 64}
}

// delivered scans bytes arriving for the session and counts data bodies.
func (b *exitBuffers) delivered(p []byte) {
	var added int64
	b.mu.Lock()
	for len(p) > 0 {
		if b.body > 0 {
			n := min(uint32(len(p)), b.body)
			b.body -= n
			p = p[n:]
			if b.countID != 0 {
				if _, ok := b.held[b.countID]; ok {
					b.held[b.countID] += int64(n)
					added += int64(n)
				}
			}
			continue
		}
		n := copy(b.hdr[b.hdrN:], p)
		b.hdrN += n
		p = p[n:]
		if b.hdrN < yamuxHeaderLen {
			break
		}
		b.hdrN = 0
		b.header()
	}
	b.total += added
	b.mu.Unlock()
	b.x.buffered.Add(added)
}

// header acts on one complete frame header.
func (b *exitBuffers) header() {
	typ := b.hdr[1]
	flags := binary.BigEndian.Uint16(b.hdr[2:4])
	id := binary.BigEndian.Uint32(b.hdr[4:8])
	length := binary.BigEndian.Uint32(b.hdr[8:12])
	if typ != yamuxTypeData && typ != yamuxTypeWindowUpdate {
		return // ping or go-away: no stream, no body
	}
	if flags&yamuxFlagSYN != 0 && id != 0 && len(b.held) < b.maxTracked {
		if _, ok := b.held[id]; !ok {
			b.held[id] = 0
		}
	}
	if flags&yamuxFlagRST != 0 {
		b.forgetLocked(id) // yamux drops the stream's buffer
	}
	if typ == yamuxTypeData {
		b.body, b.countID = length, id
	}
}

// read counts n bytes the exit took from stream id.
func (b *exitBuffers) read(id uint32, n int) {
	b.mu.Lock()
	h, ok := b.held[id]
	if ok {
		d := min(int64(n), h) // never below zero, whatever the client framed
		b.held[id] = h - d
		b.total -= d
		b.x.buffered.Add(-d)
	}
	b.mu.Unlock()
}

// done closes stream id's count: what it still held is gone with it.
func (b *exitBuffers) done(id uint32) {
	b.mu.Lock()
	b.forgetLocked(id)
	b.mu.Unlock()
}

func (b *exitBuffers) forgetLocked(id uint32) {
	if h, ok := b.held[id]; ok {
		delete(b.held, id)
		b.total -= h
		b.x.buffered.Add(-h)
	}
}

// closeAll drops every count (the session is over).
func (b *exitBuffers) closeAll() {
	b.mu.Lock()
	for id := range b.held {
		b.forgetLocked(id)
	}
	b.mu.Unlock()
}

// Total returns the bytes this session holds for its destinations.
func (b *exitBuffers) Total() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

// countingStream counts what the exit reads from a stream.
type countingStream struct {
	readDeadliner
	b  *exitBuffers
	id uint32
}

func (s countingStream) Read(p []byte) (int, error) {
	n, err := s.readDeadliner.Read(p)
	if n > 0 {
		s.b.read(s.id, n)
	}
	return n, err
}

// relieveExitBuffers destroys the exit circuit holding the most bytes for
// its destinations when the exit holds more than MaxBufferedBytes, unless
// the circuits already being destroyed hold the excess. Like relieveMix,
// the destroy runs in its own goroutine and later deliveries check again.
func (r *Relay) relieveExitBuffers() {
	var worst *relayCircuit
	var most, dying int64
	circs := r.circuitList()
	for _, c := range circs {
		c.exitMu.Lock()
		e := c.exit
		c.exitMu.Unlock()
		if e == nil {
			continue
		}
		n := e.bufs.Total()
		if c.oomKilled.Load() {
			dying += n // freed once its destroy has run
			continue
		}
		if n > most {
			worst, most = c, n
		}
	}
	if r.exit.buffered.Load()-dying <= r.exit.cfg.MaxBufferedBytes {
		return // the circuits already being destroyed bring it under budget
	}
	if worst == nil || !worst.oomKilled.CompareAndSwap(false, true) {
		return
	}
	r.log.Info("exit over its stream buffer budget: destroying the circuit holding the most",
		zap.Uint64("circ", worst.seq), zap.Int64("bytes", most), zap.Int64("budget", r.exit.cfg.MaxBufferedBytes))
	if r.m != nil {
		r.m.circuitsKilledExitBuffers.Inc()
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		worst.destroy(cell.DestroyResourceLimit, sideNone)
	}()
}
