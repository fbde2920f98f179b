package circuit

import (
	"errors"
	"io"
	"sync"

	"github.com/chive-net/chive/cell"
)

// maxPipeBuffer bounds the DATA bytes a circuit end holds before its yamux
// session reads them. yamux drains the pipe into per-stream buffers (bounded
// by the stream windows) at once, so only a peer ignoring those windows can
// fill it; that peer gets its circuit destroyed.
const maxPipeBuffer = 4 << 20

var errPipeOverflow = errors.New("circuit: peer overran the circuit's buffer")

// pipeChunkLen is the size of the pooled chunks a pipe buffers in.
const pipeChunkLen = 16 << 10

var pipeChunkPool = sync.Pool{New: func() any { return new([pipeChunkLen]byte) }}

// pipeChunk is a pooled buffer holding b[r:w] unread.
type pipeChunk struct {
	b    *[pipeChunkLen]byte
	r, w int
}

// pipe is the byte pipe a circuit provides to the end-to-end yamux session
// between client and exit. Bytes written are cut into DATA messages and sent
// along the circuit by send; DATA messages that arrive are handed to deliver
// and read back in order. Buffered bytes live in pooled chunks, so an idle
// pipe holds no buffer.
type pipe struct {
	send func(p []byte) error // sends p as DATA cells, in order
	// accepted, if set, sees every DATA payload the pipe takes (not what it
	// drops once the session is gone), in order, under the pipe's lock.
	accepted func(data []byte)

	mu       sync.Mutex // guards the following fields
	cond     sync.Cond  // signalled on new data or close
	chunks   []pipeChunk
	buffered int
	rerr     error // returned once drained (io.EOF after END)
	closed   bool
}

func newPipe(send func([]byte) error) *pipe {
	p := &pipe{send: send}
	p.cond.L = &p.mu
	return p
}

// deliver appends DATA bytes that arrived on the circuit.
func (p *pipe) deliver(data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.rerr != nil {
		return nil // the session is gone; late data is dropped with the circuit
	}
	if p.buffered+len(data) > maxPipeBuffer {
		return errPipeOverflow
	}
	if p.accepted != nil {
		p.accepted(data)
	}
	p.buffered += len(data)
	for len(data) > 0 {
		if len(p.chunks) == 0 || p.chunks[len(p.chunks)-1].w == pipeChunkLen {
			p.chunks = append(p.chunks, pipeChunk{b: pipeChunkPool.Get().(*[pipeChunkLen]byte)})
		}
		last := &p.chunks[len(p.chunks)-1]
		n := copy(last.b[last.w:], data)
		last.w += n
		data = data[n:]
	}
	p.cond.Signal()
	return nil
}

// closeRead makes Read return err once the buffered bytes are read.
func (p *pipe) closeRead(err error) {
	p.mu.Lock()
	if p.rerr == nil {
		p.rerr = err
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Read implements io.Reader for the yamux session.
func (p *pipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.buffered == 0 && p.rerr == nil && !p.closed {
		p.cond.Wait()
	}
	if p.closed {
		return 0, io.ErrClosedPipe
	}
	n := 0
	for n < len(b) && len(p.chunks) > 0 {
		c := &p.chunks[0]
		m := copy(b[n:], c.b[c.r:c.w])
		c.r += m
		n += m
		if c.r == c.w {
			// Drained: give the chunk back (deliver takes a fresh one).
			pipeChunkPool.Put(c.b)
			p.chunks[0] = pipeChunk{}
			p.chunks = p.chunks[1:]
		}
	}
	if len(p.chunks) == 0 {
		p.chunks = nil
	}
	p.buffered -= n
	if n > 0 {
		return n, nil
	}
	return 0, p.rerr
}

// Write implements io.Writer for the yamux session.
func (p *pipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return 0, io.ErrClosedPipe
	}
	if err := p.send(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close implements io.Closer: the session is done with the pipe.
func (p *pipe) Close() error {
	p.mu.Lock()
	p.closed = true
	for _, c := range p.chunks {
		pipeChunkPool.Put(c.b)
	}
	p.chunks, p.buffered = nil, 0
	p.cond.Broadcast()
	p.mu.Unlock()
	return nil
}

// fillData cuts p into DATA relay messages, one per cell of the batch
// buffer, and returns the cells filled and the bytes of p they hold.
// The RELAY command is set; tags are left for the crypto.
func fillData(bb *[batchLen]byte, p []byte) (cells []byte, used int) {
	n := 0
	for used < len(p) && n < batchCells {
		chunk := min(len(p)-used, cell.MaxRelayData)
		c := (*cell.Cell)(bb[n*cell.CellLen : (n+1)*cell.CellLen])
		c.SetCommand(cell.CommandRelay)
		cell.EncodeRelay(c.Body(), cell.RelayData, p[used:used+chunk])
		used += chunk
		n++
	}
	return bb[:n*cell.CellLen], used
}
