package circuit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/zap"

	"github.com/chive-net/chive/cell"
	"github.com/chive-net/chive/internal/coalesce"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/link"
)

// Hop names one relay of a path: what the consensus says about it.
type Hop struct {
	ID       layercrypt.RelayID
	Addr     netip.AddrPort
	OnionKey layercrypt.OnionPublicKey
}

// LinkDialer gives the client a link to a relay; *link.Manager is one (with
// no identity configured, so the client stays anonymous).
type LinkDialer interface {
	Get(ctx context.Context, id layercrypt.RelayID, addr string) (*link.Link, error)
}

// BuildOptions tune a client circuit.
type BuildOptions struct {
	// DelayClass is the mixing class asked of every hop (0: no added delay).
	DelayClass uint8
	// Log receives circuit events; nil means none.
	Log *zap.Logger
	// Metrics, if set, counts builds and cells.
	Metrics *Metrics
}

// Errors a client may branch on.
var (
	// ErrClosed is returned by operations on a circuit that has been torn down.
	ErrClosed = errors.New("circuit: closed")
	// ErrParamsRefused means a hop refused the circuit parameters (delay class
	// or protocol versions).
	ErrParamsRefused = errors.New("circuit: relay refused the circuit parameters")
)

// DestroyedError says a circuit was destroyed, why, and from which side.
type DestroyedError struct {
	Reason cell.DestroyReason
	Remote bool // the network destroyed it (a relay sent DESTROY or the link died)
}

func (e *DestroyedError) Error() string {
	if e.Remote {
		return "circuit: destroyed by the network: " + e.Reason.String()
	}
	return "circuit: closed locally: " + e.Reason.String()
}

// TruncatedError says a hop reported the circuit beyond it gone, typically
// because an EXTEND2 failed.
type TruncatedError struct {
	Hop    int // the hop that sent TRUNCATED (0 = guard)
	Reason cell.DestroyReason
}

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("circuit: hop %d truncated the circuit: %s", e.Hop+1, e.Reason)
}

var circuitSeq atomic.Uint64 // local numbering for debug logs only; never sent

// Circuit is a client's circuit: a path of relays, a layer of CGO crypto per
// hop, and (once built) one yamux session with the exit over its DATA cells.
type Circuit struct {
	seq   uint64
	path  []Hop
	lk    *link.Link
	s     *yamux.Stream
	w     *hopWriter
	class uint8
	log   *zap.Logger
	m     *Metrics

	fwdMu sync.Mutex // guards forward encryption + write order, and AddHop
	bwdMu sync.Mutex // guards backward decryption, and AddHop
	crypt *layercrypt.ClientCrypt

	ctrlMu    sync.Mutex   // guards expecting
	expecting bool         // a control reply (EXTENDED2 or TRUNCATED) is awaited
	ctrl      chan ctrlMsg // the awaited reply, for the builder

	pipe   *pipe          // the session's byte pipe; created with the circuit
	built  atomic.Bool    // set once the last hop is added: DATA may flow
	sessMu sync.Mutex     // guards sess
	sess   *yamux.Session // the end-to-end session, once built

	created  time.Time
	used     atomic.Int64 // unix nanoseconds of the first stream, 0 if none
	lastSent atomic.Int64 // unix nanoseconds of the last cell sent
	streams  atomic.Int64 // streams opened

	closeOnce sync.Once
	done      chan struct{} // closed when torn down
	err       error         // why; set before done closes
	readDone  chan struct{} // closed when the reader exits

	readerStarted bool // set by the builder before the reader starts
}

type ctrlMsg struct {
	hop int
	cmd cell.RelayCommand
	msg cell.RelayMsg
}

// Build builds a circuit through path (guard first) with CREATE2 and then one
// EXTEND2 per further hop, each an ntor-v3 handshake, and starts the
// end-to-end session with the last hop. ctx bounds the whole build.
func Build(ctx context.Context, links LinkDialer, path []Hop, opts BuildOptions) (*Circuit, error) {
	if len(path) == 0 || len(path) > layercrypt.CGOMaxHops {
		return nil, fmt.Errorf("circuit: a path needs 1 to %d hops, got %d", layercrypt.CGOMaxHops, len(path))
	}
	start := time.Now()
	c, err := build(ctx, links, path, opts)
	if opts.Metrics != nil {
		opts.Metrics.observeBuild(err, time.Since(start))
	}
	return c, err
}

func build(ctx context.Context, links LinkDialer, path []Hop, opts BuildOptions) (*Circuit, error) {
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	lk, err := links.Get(ctx, path[0].ID, path[0].Addr.String())
	if err != nil {
		return nil, fmt.Errorf("circuit: link to guard: %w", err)
	}
	s, err := lk.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("circuit: open hop stream to guard: %w", err)
	}
	c := &Circuit{
		seq:      circuitSeq.Add(1),
		path:     append([]Hop(nil), path...),
		lk:       lk,
		s:        s,
		w:        newHopWriter(s),
		class:    opts.DelayClass,
		log:      log,
		m:        opts.Metrics,
		crypt:    new(layercrypt.ClientCrypt),
		ctrl:     make(chan ctrlMsg, 1),
		created:  time.Now(),
		done:     make(chan struct{}),
		readDone: make(chan struct{}),
	}
	c.pipe = newPipe(c.sendData)
	// Tear the half-built circuit down if ctx ends first.
	stop := context.AfterFunc(ctx, func() { c.destroy(cell.DestroyTimeout, false) })
	defer stop()

	if err := c.create(ctx, path[0]); err != nil {
		c.destroy(cell.DestroyProtocol, false)
		c.waitReader()
		return nil, fmt.Errorf("circuit: create at guard: %w", c.ctxErr(ctx, err))
	}
	c.readerStarted = true
	go c.readLoop()
	for i := 1; i < len(path); i++ {
		if err := c.extend(ctx, i, path[i]); err != nil {
			c.destroy(cell.DestroyRequested, false)
			c.waitReader()
			return nil, fmt.Errorf("circuit: extend to hop %d: %w", i+1, c.ctxErr(ctx, err))
		}
	}
	c.startSession()
	if c.m != nil {
		c.m.clientCircuits.Inc()
	}
	c.log.Debug("circuit built", zap.Uint64("circ", c.seq), zap.Int("hops", len(path)), zap.Uint8("class", c.class))
	return c, nil
}

// ctxErr prefers the context's error when the build failed because ctx ended.
func (c *Circuit) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	// A read deadline taken from ctx can expire a moment before ctx itself.
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) && isTimeout(err) {
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}

// waitReader waits for the reader goroutine, if it was started.
func (c *Circuit) waitReader() {
	if c.readerStarted {
		<-c.readDone
	}
}

// handshakeMsg is the ntor-v3 client message every hop gets.
func (c *Circuit) handshakeMsg() ([]byte, error) {
	p := cell.CircuitParams{DelayClass: c.class, Protocols: cell.DefaultProtocols()}
	return p.Encode()
}

// finishHop completes hop's handshake from the relay's reply and adds its
// crypto layer.
func (c *Circuit) finishHop(hc *layercrypt.NtorV3Client, reply []byte) error {
	defer hc.Wipe()
	serverMsg, ks, err := hc.Finish(reply)
	if err != nil {
		return err
	}
	defer ks.Wipe()
	var r cell.CircuitParamsReply
	if err := r.Decode(serverMsg); err != nil {
		return fmt.Errorf("relay's parameters reply: %w", err)
	}
	if r.Status != cell.ParamsOK {
		return fmt.Errorf("%w: %v", ErrParamsRefused, r.Status)
	}
	c.fwdMu.Lock()
	c.bwdMu.Lock()
	err = c.crypt.AddHop(ks)
	c.bwdMu.Unlock()
	c.fwdMu.Unlock()
	return err
}

func (c *Circuit) create(ctx context.Context, h Hop) error {
	msg, err := c.handshakeMsg()
	if err != nil {
		return err
	}
	hc, onionskin, err := layercrypt.NewNtorV3Client(rand.Reader, h.ID, h.OnionKey, []byte(cell.NtorV3Verification), msg)
	if err != nil {
		return err
	}
	var cl cell.Cell
	if err := (&cell.Create2{HType: cell.HTypeNtorV3, HData: onionskin}).Encode(&cl); err != nil {
		hc.Wipe()
		return err
	}
	if err := c.w.writeCell(&cl); err != nil {
		hc.Wipe()
		return fmt.Errorf("send CREATE2: %w", err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(link.DefaultHandshakeTimeout)
	}
	if err := readCell(c.s, &cl, deadline); err != nil {
		hc.Wipe()
		return fmt.Errorf("wait for CREATED2: %w", err)
	}
	switch cl.Command() {
	case cell.CommandCreated2:
	case cell.CommandDestroy:
		hc.Wipe()
		var d cell.Destroy
		d.Decode(&cl)
		return &DestroyedError{Reason: d.Reason, Remote: true}
	default:
		hc.Wipe()
		return fmt.Errorf("guard answered CREATE2 with %v", cl.Command())
	}
	var created cell.Created2
	if err := created.Decode(&cl); err != nil {
		hc.Wipe()
		return err
	}
	return c.finishHop(hc, created.HData)
}

func (c *Circuit) extend(ctx context.Context, i int, h Hop) error {
	msg, err := c.handshakeMsg()
	if err != nil {
		return err
	}
	hc, onionskin, err := layercrypt.NewNtorV3Client(rand.Reader, h.ID, h.OnionKey, []byte(cell.NtorV3Verification), msg)
	if err != nil {
		return err
	}
	addr, err := cell.NewAddrLinkSpec(h.Addr)
	if err != nil {
		hc.Wipe()
		return err
	}
	ext := &cell.Extend2{
		Specs: []cell.LinkSpec{addr, cell.NewEd25519LinkSpec(h.ID)},
		HType: cell.HTypeNtorV3,
		HData: onionskin,
	}
	c.expect()
	if err := c.sendMsg(i-1, ext); err != nil {
		hc.Wipe()
		return fmt.Errorf("send EXTEND2: %w", err)
	}
	select {
	case m := <-c.ctrl:
		switch msg := m.msg.(type) {
		case *cell.Extended2:
			if m.hop != i-1 {
				hc.Wipe()
				return fmt.Errorf("EXTENDED2 came from hop %d, not hop %d", m.hop+1, i)
			}
			return c.finishHop(hc, msg.HData)
		case *cell.Truncated:
			hc.Wipe()
			return &TruncatedError{Hop: m.hop, Reason: msg.Reason}
		default:
			hc.Wipe()
			return fmt.Errorf("unexpected %v while extending", m.cmd)
		}
	case <-c.done:
		hc.Wipe()
		return c.err
	case <-ctx.Done():
		hc.Wipe()
		return ctx.Err()
	}
}

// expect arms delivery of the next EXTENDED2 or TRUNCATED to c.ctrl.
func (c *Circuit) expect() {
	c.ctrlMu.Lock()
	c.expecting = true
	c.ctrlMu.Unlock()
}

// sendMsg encrypts one relay message for hop and sends it.
func (c *Circuit) sendMsg(hop int, m cell.RelayMsg) error {
	var cl cell.Cell
	cl.SetCommand(cell.CommandRelay)
	if err := m.Encode(cl.Body()); err != nil {
		return err
	}
	return c.sendCells(hop, cl[:])
}

// sendCells encrypts RELAY cells (plaintext messages in place) for hop and
// writes them, keeping encryption order equal to write order.
func (c *Circuit) sendCells(hop int, cells []byte) error {
	select {
	case <-c.done:
		return c.err
	default:
	}
	c.fwdMu.Lock()
	defer c.fwdMu.Unlock()
	for off := 0; off < len(cells); off += cell.CellLen {
		cl := (*cell.Cell)(cells[off : off+cell.CellLen])
		if err := c.crypt.Encrypt(hop, cl.Body()); err != nil {
			return err
		}
	}
	if err := c.w.write(cells); err != nil {
		go c.destroy(cell.DestroyChannelClosed, true)
		return fmt.Errorf("circuit: write to guard: %w", err)
	}
	c.lastSent.Store(time.Now().UnixNano())
	if c.m != nil {
		c.m.cellsOut.Add(float64(len(cells) / cell.CellLen))
	}
	return nil
}

// LastSent returns when the client last sent a cell on the circuit (its
// build time if none since).
func (c *Circuit) LastSent() time.Time {
	if n := c.lastSent.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return c.created
}

// sendData is the pipe's send: p as DATA cells to the last hop.
func (c *Circuit) sendData(p []byte) error {
	last := len(c.path) - 1
	for len(p) > 0 {
		bb := batchPool.Get().(*[batchLen]byte)
		cells, used := fillData(bb, p)
		err := c.sendCells(last, cells)
		batchPool.Put(bb)
		if err != nil {
			return err
		}
		p = p[used:]
	}
	return nil
}

// readLoop handles every cell from the guard until the circuit ends.
func (c *Circuit) readLoop() {
	defer close(c.readDone)
	err := readBatches(c.s, c.handleBatch)
	var de *DestroyedError
	switch {
	case errors.As(err, &de):
		c.destroy(de.Reason, de.Remote)
	case errors.Is(err, errProtocol):
		c.log.Debug("circuit protocol violation", zap.Uint64("circ", c.seq), zap.Error(err))
		c.destroy(cell.DestroyProtocol, false)
	default:
		c.destroy(cell.DestroyChannelClosed, true)
	}
}

var errProtocol = errors.New("circuit: protocol violation")

func (c *Circuit) handleBatch(batch []byte) error {
	c.bwdMu.Lock()
	defer c.bwdMu.Unlock()
	last := c.crypt.Hops() - 1
	for off := 0; off < len(batch); off += cell.CellLen {
		cl := (*cell.Cell)(batch[off : off+cell.CellLen])
		switch cl.Command() {
		case cell.CommandRelay:
			hop, err := c.crypt.Decrypt(cl.Body())
			if err != nil {
				return fmt.Errorf("%w: unrecognized cell (%v)", errProtocol, err)
			}
			if c.m != nil {
				c.m.cellsIn.Inc()
			}
			if err := c.handleRelay(hop, last, cl.Body()); err != nil {
				return err
			}
		case cell.CommandDestroy:
			var d cell.Destroy
			d.Decode(cl)
			return &DestroyedError{Reason: d.Reason, Remote: true}
		case cell.CommandPadding:
		default:
			return fmt.Errorf("%w: %v cell on a built circuit", errProtocol, cl.Command())
		}
	}
	return nil
}

func (c *Circuit) handleRelay(hop, last int, body *[cell.BodyLen]byte) error {
	cmd, data, err := cell.DecodeRelay(body)
	if err != nil {
		return fmt.Errorf("%w: %v", errProtocol, err)
	}
	switch cmd {
	case cell.RelayData:
		if hop != last || !c.built.Load() {
			return fmt.Errorf("%w: DATA from hop %d", errProtocol, hop+1)
		}
		return c.pipe.deliver(data)
	case cell.RelayEnd:
		if hop == last && c.built.Load() {
			c.pipe.closeRead(io.EOF)
		}
		return nil
	case cell.RelayDrop:
		return nil
	case cell.RelayExtended2, cell.RelayTruncated:
		m, err := cell.DecodeRelayMsg(body)
		if err != nil {
			return fmt.Errorf("%w: %v", errProtocol, err)
		}
		c.ctrlMu.Lock()
		expected := c.expecting
		c.expecting = false
		c.ctrlMu.Unlock()
		if expected {
			c.ctrl <- ctrlMsg{hop: hop, cmd: cmd, msg: m} // buffered: never blocks
			return nil
		}
		if t, ok := m.(*cell.Truncated); ok {
			// Nobody is extending: the circuit beyond hop is gone, so this
			// circuit can no longer reach its exit.
			return &DestroyedError{Reason: t.Reason, Remote: true}
		}
		return fmt.Errorf("%w: unsolicited %v", errProtocol, cmd)
	default:
		return fmt.Errorf("%w: %v from hop %d", errProtocol, cmd, hop+1)
	}
}

// Per-stream windows of the end-to-end yamux session. The window bounds
// one stream's bytes in flight across all three hops, so it must cover the
// path's bandwidth-delay product: on loopback a 256 KiB window held one
// stream at ~80 MB/s, and from 1 MiB a class-0 stream is CPU-bound. A
// delayed class holds each cell ~mean x ln(cells in flight) in each hop's
// mix (FIFO order inside a circuit; ~40 ms at a 5 ms mean and 170 MB/s),
// so at full speed a stream has ~20 MB in flight; yamux's receiver asks for
// more once half the window is consumed, so a stream keeps between half and
// all of its window in flight, and delayed classes get 64 MiB, for their
// delays to cost latency rather than throughput (docs/PERFORMANCE.md). The
// window costs memory at the two ends only for streams whose reader is
// slower than the network; relays hold what is in flight in their mix
// queues, bounded per circuit and shared under the relay's mix budget.
const (
	sessionStreamWindow        = 8 << 20
	delayedSessionStreamWindow = 64 << 20
)

// sessionConfig is the end-to-end yamux session's configuration for a
// circuit of the given delay class. The session carries no keepalives: the
// circuit has its own liveness, and periodic pings would be a traffic
// pattern.
func sessionConfig(backlog int, class uint8) *yamux.Config {
	y := yamux.DefaultConfig()
	y.EnableKeepAlive = false
	y.LogOutput = io.Discard
	y.AcceptBacklog = backlog
	y.MaxStreamWindowSize = sessionStreamWindow
	if class != 0 {
		y.MaxStreamWindowSize = delayedSessionStreamWindow
	}
	y.StreamCloseTimeout = 30 * time.Second
	y.StreamOpenTimeout = 0 // the exit answers each stream's request; the caller's ctx bounds waiting
	y.ConnectionWriteTimeout = writeTimeout
	return y
}

func (c *Circuit) startSession() {
	sess, err := yamux.Client(coalesce.New(c.pipe, 0, nil), sessionConfig(256, c.class))
	if err != nil {
		// Only a bad configuration makes yamux refuse; sessionConfig is fixed.
		panic(fmt.Sprintf("circuit: yamux client: %v", err))
	}
	c.sessMu.Lock()
	c.sess = sess
	c.sessMu.Unlock()
	c.built.Store(true)
	if c.Err() != nil {
		sess.Close() // destroyed while the session started
	}
}

func (c *Circuit) session() *yamux.Session {
	c.sessMu.Lock()
	defer c.sessMu.Unlock()
	return c.sess
}

// Path returns the circuit's relays, guard first.
func (c *Circuit) Path() []Hop { return append([]Hop(nil), c.path...) }

// DelayClass returns the mixing class the circuit was built with.
func (c *Circuit) DelayClass() uint8 { return c.class }

// Created returns when the circuit was built.
func (c *Circuit) Created() time.Time { return c.created }

// FirstUsed returns when the circuit's first stream was opened (zero if none).
func (c *Circuit) FirstUsed() time.Time {
	if n := c.used.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Streams returns how many streams have been opened on the circuit.
func (c *Circuit) Streams() int64 { return c.streams.Load() }

// Done is closed when the circuit has been torn down.
func (c *Circuit) Done() <-chan struct{} { return c.done }

// Err returns why the circuit was torn down, or nil while it is up.
func (c *Circuit) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Dial opens a stream to host:port through the exit. host is a DNS name
// (resolved by the exit), or an IPv4 or IPv6 literal. A refusal by the exit
// is a *cell.StreamError with its status.
func (c *Circuit) Dial(ctx context.Context, host string, port uint16) (net.Conn, error) {
	st, _, err := c.request(ctx, &cell.StreamRequest{Kind: cell.StreamConnect, Host: host, Port: port})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Resolve asks the exit for host's addresses.
func (c *Circuit) Resolve(ctx context.Context, host string) ([]cell.ResolvedAddr, error) {
	st, rep, err := c.request(ctx, &cell.StreamRequest{Kind: cell.StreamResolve, Host: host})
	if err != nil {
		return nil, err
	}
	st.Close()
	return rep.Addrs, nil
}

// ExchangeDNS sends a raw DNS query to the exit's resolver and returns its
// raw answer (NXDOMAIN and SERVFAIL answers included).
func (c *Circuit) ExchangeDNS(ctx context.Context, query []byte) ([]byte, error) {
	st, rep, err := c.request(ctx, &cell.StreamRequest{Kind: cell.StreamDNS, DNS: query})
	if err != nil {
		return nil, err
	}
	st.Close()
	return rep.DNS, nil
}

func (c *Circuit) request(ctx context.Context, req *cell.StreamRequest) (*yamux.Stream, *cell.StreamReply, error) {
	if err := c.Err(); err != nil {
		return nil, nil, err
	}
	c.used.CompareAndSwap(0, time.Now().UnixNano())
	c.streams.Add(1)
	st, err := c.session().OpenStream()
	if err != nil {
		if cerr := c.Err(); cerr != nil {
			return nil, nil, cerr
		}
		return nil, nil, fmt.Errorf("circuit: open stream: %w", err)
	}
	// ctx (or the circuit ending) aborts the request by closing the stream.
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	if err := cell.WriteStreamRequest(st, req); err != nil {
		st.Close()
		return nil, nil, c.streamErr(ctx, fmt.Errorf("circuit: send stream request: %w", err))
	}
	rep, err := cell.ReadStreamReply(st, req.Kind)
	if err != nil {
		st.Close()
		var se *cell.StreamError
		if errors.As(err, &se) {
			return nil, nil, se
		}
		return nil, nil, c.streamErr(ctx, fmt.Errorf("circuit: read stream reply: %w", err))
	}
	if ctx.Err() != nil {
		st.Close()
		return nil, nil, ctx.Err()
	}
	return st, rep, nil
}

// streamErr explains a stream failure by the context or the circuit ending,
// when one of those is the cause.
func (c *Circuit) streamErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %v", ctx.Err(), err)
	}
	if cerr := c.Err(); cerr != nil {
		return fmt.Errorf("%w: %v", cerr, err)
	}
	return err
}

// SendDrop sends a DROP cell (long-range padding) to hop, which discards it.
func (c *Circuit) SendDrop(hop int) error {
	if hop < 0 || hop >= len(c.path) {
		return fmt.Errorf("circuit: no hop %d", hop)
	}
	return c.sendMsg(hop, &cell.Drop{})
}

// Close tears the circuit down, sending DESTROY toward the exit. It is
// idempotent and waits for the circuit's goroutines.
func (c *Circuit) Close() error {
	c.destroy(cell.DestroyFinished, false)
	c.waitReader()
	return nil
}

// destroy tears the circuit down once: DESTROY to the guard unless the
// network destroyed it, then everything freed.
func (c *Circuit) destroy(reason cell.DestroyReason, remote bool) {
	c.closeOnce.Do(func() {
		c.err = &DestroyedError{Reason: reason, Remote: remote}
		close(c.done)
		if remote {
			c.w.closeQuietly()
		} else {
			c.w.destroy(reason)
		}
		c.pipe.closeRead(c.err)
		sess := c.session()
		if sess != nil {
			sess.Close()
		}
		c.fwdMu.Lock()
		c.bwdMu.Lock()
		c.crypt.Wipe()
		c.bwdMu.Unlock()
		c.fwdMu.Unlock()
		if c.m != nil && sess != nil {
			c.m.clientCircuits.Dec()
		}
		c.log.Debug("circuit closed", zap.Uint64("circ", c.seq), zap.Stringer("reason", reason), zap.Bool("remote", remote))
	})
}
