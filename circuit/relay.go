package circuit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hashicorp/yamux"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/chive-net/chive/cell"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/link"
	"github.com/chive-net/chive/mix"
)

// RelayConfig configures the relay side of circuits.
type RelayConfig struct {
	// Identity is the relay's identity key (its ID is checked in every
	// ntor-v3 handshake).
	Identity *layercrypt.IdentityKey
	// OnionKeys returns the onion keys a CREATE2 may use: the current one
	// and, during rotation, the previous one.
	OnionKeys func() []*layercrypt.OnionPrivateKey
	// Links dials next hops for EXTEND2 and reuses open links.
	Links *link.Manager
	// Mix schedules delayed cells; nil serves only class 0.
	Mix *mix.Scheduler
	// Classes are the delay classes served, with this relay's bounds. Class 0
	// is always served.
	Classes map[mix.Class]mix.ClassSpec
	// MixQueueCells bounds the cells one circuit-direction may hold in the
	// mix before its reader waits (backpressure, never loss). A stream at
	// 100 MB/s through a 5 ms-mean class holds ~9,000 cells in each hop's
	// mix (~13,000 at 170 MB/s), so the default leaves room for that; a
	// queue holds memory only for the cells it holds, and the relay's mix
	// budget (mix.Config.Budget) shares the mix among busy circuits.
	MixQueueCells int
	// MaxMixCells bounds the cells the whole relay holds in its mix. Past
	// it, the circuit holding the most is destroyed with RESOURCELIMIT (as
	// Tor's out-of-memory handler does), so many slow circuits cannot
	// exhaust the relay's memory one queue at a time.
	MaxMixCells int
	// Exit, when set, makes this relay an exit.
	Exit *ExitConfig
	// AllowPrivateExtend lets EXTEND2 reach private and loopback addresses
	// (test networks only).
	AllowPrivateExtend bool
	// MaxCircuits bounds circuits through this relay; more get
	// DESTROY(RESOURCELIMIT).
	MaxCircuits int
	// CreateRate and CreateBurst bound CREATE2 per second from one
	// anonymous peer address (clients; relays identify themselves and are
	// not limited this way).
	CreateRate  float64
	CreateBurst int
	// BandwidthRate and BandwidthBurst (bytes/s) bound the cells this relay
	// forwards, in both directions together; 0 means unlimited.
	BandwidthRate  int
	BandwidthBurst int
	// HandshakeTimeout bounds waiting for CREATE2 on a new hop stream and
	// for CREATED2 from a next hop.
	HandshakeTimeout time.Duration
	// ExtendTimeout bounds an EXTEND2 (link setup plus handshake).
	ExtendTimeout time.Duration
	// Log receives events; nil means none.
	Log *zap.Logger
	// UnsafeLogging allows addresses in logs.
	UnsafeLogging bool
	// Metrics counts circuits, cells and failures; nil means none.
	Metrics *Metrics
}

// Defaults for zero RelayConfig fields.
const (
	DefaultMaxCircuits      = 20000
	DefaultCreateRate       = 20
	DefaultCreateBurst      = 100
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultExtendTimeout    = 15 * time.Second
	DefaultMixQueueCells    = 32768
	DefaultMaxMixCells      = 256 << 10 // 128 MiB of cells
)

// Relay handles the circuits that pass through one relay.
type Relay struct {
	cfg    RelayConfig
	id     layercrypt.RelayID
	log    *zap.Logger
	m      *Metrics
	bw     *rate.Limiter // nil when unlimited
	limits *peerLimiter
	exit   *exitState // nil unless an exit
	eph    *layercrypt.NtorV3Ephemerals

	ctx    context.Context // cancelled by Shutdown
	cancel context.CancelFunc

	mu       sync.Mutex // guards the following fields
	circuits map[*relayCircuit]struct{}
	closing  bool

	wg sync.WaitGroup // circuit and link goroutines
}

// NewRelay checks cfg and returns a relay ready for ServeLink.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if cfg.Identity == nil || cfg.OnionKeys == nil || cfg.Links == nil {
		return nil, errors.New("circuit: relay config needs Identity, OnionKeys and Links")
	}
	if cfg.MaxCircuits <= 0 {
		cfg.MaxCircuits = DefaultMaxCircuits
	}
	if cfg.CreateRate <= 0 {
		cfg.CreateRate = DefaultCreateRate
	}
	if cfg.CreateBurst <= 0 {
		cfg.CreateBurst = DefaultCreateBurst
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.ExtendTimeout <= 0 {
		cfg.ExtendTimeout = DefaultExtendTimeout
	}
	if cfg.MixQueueCells <= 0 {
		cfg.MixQueueCells = DefaultMixQueueCells
	}
	if cfg.MaxMixCells <= 0 {
		cfg.MaxMixCells = DefaultMaxMixCells
	}
	for class, spec := range cfg.Classes {
		if class != 0 && cfg.Mix == nil {
			return nil, fmt.Errorf("circuit: delay class %d needs a mix scheduler", class)
		}
		if err := spec.Validate(); err != nil {
			return nil, fmt.Errorf("circuit: delay class %d: %w", class, err)
		}
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	r := &Relay{
		cfg:      cfg,
		id:       cfg.Identity.ID(),
		log:      cfg.Log,
		m:        cfg.Metrics,
		limits:   newPeerLimiter(rate.Limit(cfg.CreateRate), cfg.CreateBurst),
		circuits: make(map[*relayCircuit]struct{}),
		eph:      layercrypt.NewNtorV3Ephemerals(rand.Reader, ephemeralsAhead),
	}
	if cfg.BandwidthRate > 0 {
		burst := max(cfg.BandwidthBurst, cfg.BandwidthRate, batchLen)
		r.bw = rate.NewLimiter(rate.Limit(cfg.BandwidthRate), burst)
	}
	if cfg.Exit != nil {
		e, err := newExitState(cfg.Exit)
		if err != nil {
			return nil, err
		}
		r.exit = e
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.sweepLoop()
	return r, nil
}

// ephemeralsAhead is how many ntor-v3 ephemeral key pairs a relay keeps
// computed ahead: each handshake takes one and, once its CREATED2 is sent,
// computes the next, so a burst of this many CREATE2 cells waits for no
// fixed-base multiplication.
const ephemeralsAhead = 8

// sweepInterval is how often idle circuits give their stream buffers back.
const sweepInterval = 15 * time.Second

// sweepLoop lets yamux drop the (empty) receive buffers of circuits that
// moved nothing since the last sweep, so that an idle circuit holds no
// buffer. Doing this per cell would reallocate the buffer for every frame.
func (r *Relay) sweepLoop() {
	defer r.wg.Done()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		circs := r.circuitList()
		for _, c := range circs {
			if c.active.Swap(false) {
				continue
			}
			c.inS.Shrink()
			if out := c.out.Load(); out != nil {
				out.s.Shrink()
			}
		}
	}
}

// circuitList returns the circuits open through this relay now.
func (r *Relay) circuitList() []*relayCircuit {
	r.mu.Lock()
	defer r.mu.Unlock()
	circs := make([]*relayCircuit, 0, len(r.circuits))
	for c := range r.circuits {
		circs = append(circs, c)
	}
	return circs
}

// NumCircuits returns the circuits currently open through this relay.
func (r *Relay) NumCircuits() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.circuits)
}

// ServeLink accepts circuit hops that the peer opens on l until l closes or
// the relay shuts down. Call it in its own goroutine for each link, inbound
// or outbound (a relay we extended to may extend back over the same link).
func (r *Relay) ServeLink(l *link.Link) {
	for {
		s, err := l.AcceptStream()
		if err != nil {
			return
		}
		r.mu.Lock()
		closing := r.closing
		if !closing {
			r.wg.Add(1)
		}
		r.mu.Unlock()
		if closing {
			s.Close()
			return
		}
		go func() {
			defer r.wg.Done()
			r.serveCircuit(l, s)
		}()
	}
}

// Shutdown stops taking circuits, destroys every open one with reason
// HIBERNATING (toward both ends), and waits until they are gone or ctx ends.
func (r *Relay) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.closing = true
	circs := make([]*relayCircuit, 0, len(r.circuits))
	for c := range r.circuits {
		circs = append(circs, c)
	}
	r.mu.Unlock()
	for _, c := range circs {
		c.destroy(cell.DestroyHibernating, sideNone)
	}
	r.cancel()
	r.eph.Wipe()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		if r.exit != nil {
			r.exit.wg.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("circuit: shutdown: %w", ctx.Err())
	}
}

// side names where a DESTROY came from, so it is not sent back there.
type side int

const (
	sideNone side = iota // we decided: tell both sides
	sidePrev             // from the previous hop (toward the client)
	sideNext             // from the next hop (toward the exit)
)

// destroyErr ends a circuit's loops with a reason.
type destroyErr struct {
	reason cell.DestroyReason
	from   side
	detail string
}

func (e *destroyErr) Error() string {
	return fmt.Sprintf("circuit destroyed (%v): %s", e.reason, e.detail)
}

func protocolErr(format string, args ...any) error {
	return &destroyErr{reason: cell.DestroyProtocol, detail: fmt.Sprintf(format, args...)}
}

var relayCircuitSeq atomic.Uint64

// relayCircuit is one circuit at this relay: the hop stream from the
// previous node, the one to the next node once extended, and this hop's CGO
// layer.
type relayCircuit struct {
	r     *Relay
	seq   uint64
	in    *hopWriter
	inS   *yamux.Stream
	crypt *layercrypt.RelayCrypt
	class mix.Class
	spec  mix.ClassSpec

	ctx    context.Context // cancelled on destroy
	cancel context.CancelFunc

	out       atomic.Pointer[hopWriter] // next hop, set once extended
	extending atomic.Bool
	active    atomic.Bool // cells moved since the last sweep
	oomKilled atomic.Bool // chosen by relieveMix; being destroyed

	bwdMu sync.Mutex // guards backward CGO state, dead, and the order of backward writes
	dead  bool       // set by destroy: nothing more is sent toward the client
	fwdQ  *mix.Queue[cell.Cell]
	bwdQ  *mix.Queue[cell.Cell]

	exitMu sync.Mutex // guards exit
	exit   *exitSession

	destroyOnce sync.Once
	wg          sync.WaitGroup // the circuit's own goroutines beyond the forward loop
}

func (r *Relay) serveCircuit(l *link.Link, s *yamux.Stream) {
	c := &relayCircuit{r: r, seq: relayCircuitSeq.Add(1), in: newHopWriter(s), inS: s}
	var first cell.Cell
	if err := readCell(s, &first, time.Now().Add(r.cfg.HandshakeTimeout)); err != nil {
		s.Close()
		return
	}
	if first.Command() != cell.CommandCreate2 {
		r.countRefused("not_create2")
		c.in.destroy(cell.DestroyProtocol)
		return
	}
	if reason, ok := r.admit(l, c); !ok {
		r.countRefused(reason)
		c.in.destroy(cell.DestroyResourceLimit)
		return
	}
	c.ctx, c.cancel = context.WithCancel(r.ctx)
	if err := c.handshake(&first); err != nil {
		r.log.Debug("circuit handshake failed", zap.Uint64("circ", c.seq), zap.Error(err))
		if r.m != nil {
			r.m.handshakeFailures.Inc()
		}
		c.destroy(cell.DestroyProtocol, sideNone)
		c.wg.Wait()
		if c.crypt != nil {
			c.crypt.Wipe()
		}
		return
	}
	if r.m != nil {
		r.m.relayCircuitsCreated.Inc()
	}
	// The handshake grew this goroutine's stack (X25519, SHA-3); an idle
	// circuit should not keep that. The forward loop starts afresh.
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		c.forwardLoop(s)
	}()
}

// forwardLoop handles cells from the previous hop until the circuit ends,
// then wipes its keys.
func (c *relayCircuit) forwardLoop(s *yamux.Stream) {
	err := readBatches(s, c.forwardBatch)
	c.finish(err, sidePrev)
	c.wg.Wait()
	// Every goroutine that used the keys is gone: wipe them.
	c.bwdMu.Lock()
	c.crypt.Wipe()
	c.bwdMu.Unlock()
}

// admit registers c unless a limit says no.
func (r *Relay) admit(l *link.Link, c *relayCircuit) (string, bool) {
	if l.Peer().IsZero() && !r.limits.allow(l.RemoteAddr()) {
		return "create_rate", false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return "shutting_down", false
	}
	if len(r.circuits) >= r.cfg.MaxCircuits {
		return "max_circuits", false
	}
	r.circuits[c] = struct{}{}
	if r.m != nil {
		r.m.relayCircuits.Set(float64(len(r.circuits)))
	}
	return "", true
}

func (r *Relay) countRefused(reason string) {
	if r.m != nil {
		r.m.circuitsRefused.WithLabelValues(reason).Inc()
	}
}

// handshake answers CREATE2 with CREATED2 and sets up the CGO layer and mixing.
func (c *relayCircuit) handshake(create *cell.Cell) error {
	var m cell.Create2
	if err := m.Decode(create); err != nil {
		return err
	}
	if m.HType != cell.HTypeNtorV3 {
		return fmt.Errorf("unsupported handshake type %d", m.HType)
	}
	var status cell.ParamsStatus
	respond := func(clientMsg []byte) ([]byte, error) {
		var p cell.CircuitParams
		if err := p.Decode(clientMsg); err != nil {
			return nil, err
		}
		rep := cell.CircuitParamsReply{Status: cell.ParamsOK, DelayClass: p.DelayClass,
			Protocols: cell.ChooseProtocols(p.Protocols, cell.DefaultProtocols())}
		spec, ok := c.r.classSpec(mix.Class(p.DelayClass))
		switch {
		case !ok:
			rep.Status = cell.ParamsDelayClassNotServed
		case len(rep.Protocols) == 0:
			rep.Status = cell.ParamsNoCommonProtocol
		default:
			c.class, c.spec = mix.Class(p.DelayClass), spec
		}
		status = rep.Status
		return rep.Encode()
	}
	reply, ks, err := layercrypt.NtorV3ServerWith(c.r.eph, rand.Reader, c.r.id, c.r.cfg.OnionKeys(),
		[]byte(cell.NtorV3Verification), m.HData, respond)
	if err != nil {
		return err
	}
	crypt, err := layercrypt.NewRelayCrypt(ks)
	ks.Wipe()
	if err != nil {
		return err
	}
	c.crypt = crypt
	var out cell.Cell
	if err := (&cell.Created2{HData: reply}).Encode(&out); err != nil {
		return err
	}
	if err := c.in.writeCell(&out); err != nil {
		return err
	}
	// The answer is out: make the next handshake's ephemeral pair now (two
	// while the store fills up, so that it reaches ephemeralsAhead).
	if err := c.r.eph.Refill(2); err != nil {
		c.r.log.Warn("ntor-v3 ephemeral key", zap.Error(err))
	}
	if status != cell.ParamsOK {
		return fmt.Errorf("refused parameters: %v", status)
	}
	if c.class != 0 {
		c.fwdQ = mix.NewQueue[cell.Cell](c.r.cfg.Mix, c.spec, c.r.cfg.MixQueueCells)
		c.bwdQ = mix.NewQueue[cell.Cell](c.r.cfg.Mix, c.spec, c.r.cfg.MixQueueCells)
		c.wg.Add(2)
		go c.mixWriter(c.fwdQ, c.outWriter)
		go c.mixWriter(c.bwdQ, func() *hopWriter { return c.in })
	}
	return nil
}

func (r *Relay) classSpec(class mix.Class) (mix.ClassSpec, bool) {
	if class == 0 {
		return mix.ClassSpec{}, true
	}
	spec, ok := r.cfg.Classes[class]
	return spec, ok
}

func (c *relayCircuit) outWriter() *hopWriter { return c.out.Load() }

// forwardBatch handles cells from the previous hop: peel our layer, keep
// what is for us, pass the rest on.
func (c *relayCircuit) forwardBatch(batch []byte) error {
	c.active.Store(true)
	w := 0 // cells kept for forwarding, compacted at the front of batch
	var ferr error
	for off := 0; off < len(batch); off += cell.CellLen {
		cl := (*cell.Cell)(batch[off : off+cell.CellLen])
		switch cl.Command() {
		case cell.CommandRelay:
			if c.crypt.Forward(cl.Body()) {
				if err := c.handleForUs(cl.Body()); err != nil {
					ferr = err
					break
				}
				continue
			}
			if c.out.Load() == nil {
				ferr = protocolErr("cell recognized by no hop at the last hop")
				break
			}
			if w != off {
				copy(batch[w:w+cell.CellLen], cl[:])
			}
			w += cell.CellLen
			continue
		case cell.CommandDestroy:
			var d cell.Destroy
			d.Decode(cl)
			ferr = &destroyErr{reason: d.Reason, from: sidePrev, detail: "DESTROY from previous hop"}
		case cell.CommandPadding:
			continue
		default:
			ferr = protocolErr("%v cell on an open circuit", cl.Command())
		}
		break
	}
	if w > 0 {
		if err := c.forward(batch[:w]); err != nil && ferr == nil {
			ferr = err
		}
	}
	return ferr
}

// forward sends cells on to the next hop, through the mix when the
// circuit's class delays.
func (c *relayCircuit) forward(cells []byte) error {
	if err := c.r.waitBandwidth(c.ctx, len(cells)); err != nil {
		return err
	}
	if c.r.m != nil {
		c.r.m.cellsForwarded.WithLabelValues("forward").Add(float64(len(cells) / cell.CellLen))
	}
	if c.fwdQ != nil {
		return c.pushMix(c.fwdQ, cells)
	}
	out := c.out.Load()
	if out == nil {
		return &destroyErr{reason: cell.DestroyDestroyed, detail: "next hop gone"}
	}
	if err := out.write(cells); err != nil {
		return &destroyErr{reason: cell.DestroyChannelClosed, from: sideNext, detail: "write to next hop: " + err.Error()}
	}
	return nil
}

func (r *Relay) waitBandwidth(ctx context.Context, n int) error {
	if r.bw == nil {
		return nil
	}
	if err := r.bw.WaitN(ctx, n); err != nil {
		return &destroyErr{reason: cell.DestroyHibernating, detail: "bandwidth wait: " + err.Error()}
	}
	return nil
}

// pushMix hands cells to the mix queue, one delay each. The queue copies
// them into its own storage: cells is the caller's buffer.
func (c *relayCircuit) pushMix(q *mix.Queue[cell.Cell], cells []byte) error {
	if err := q.PushBatch(c.ctx, asCells(cells)); err != nil {
		return &destroyErr{reason: cell.DestroyDestroyed, detail: "mix queue: " + err.Error()}
	}
	if c.r.cfg.Mix.Pooled() > c.r.cfg.MaxMixCells {
		c.r.relieveMix()
	}
	return nil
}

// asCells views b, a whole number of cells, as cells, without copying.
func asCells(b []byte) []cell.Cell {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*cell.Cell)(unsafe.Pointer(&b[0])), len(b)/cell.CellLen)
}

// cellBytes views cells as bytes, without copying.
func cellBytes(cells []cell.Cell) []byte {
	if len(cells) == 0 {
		return nil
	}
	return unsafe.Slice(&cells[0][0], len(cells)*cell.CellLen)
}

// relieveMix destroys the circuit holding the most cells in the mix when
// the relay holds more than MaxMixCells. The destroy runs in its own
// goroutine: the caller may hold that very circuit's locks. Later pushes
// check again, so the relay sheds circuits until it is under budget.
func (r *Relay) relieveMix() {
	var worst *relayCircuit
	most := 0
	r.mu.Lock()
	for c := range r.circuits {
		if c.fwdQ == nil || c.oomKilled.Load() {
			continue
		}
		if n := c.fwdQ.Len() + c.bwdQ.Len(); n > most {
			worst, most = c, n
		}
	}
	r.mu.Unlock()
	if worst == nil || !worst.oomKilled.CompareAndSwap(false, true) {
		return
	}
	r.log.Info("mix over its cell budget: destroying the circuit holding the most",
		zap.Uint64("circ", worst.seq), zap.Int("cells", most), zap.Int("budget", r.cfg.MaxMixCells))
	if r.m != nil {
		r.m.circuitsKilledOOM.Inc()
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		worst.destroy(cell.DestroyResourceLimit, sideNone)
	}()
}

// mixWriter writes cells as the scheduler releases them.
func (c *relayCircuit) mixWriter(q *mix.Queue[cell.Cell], dst func() *hopWriter) {
	defer c.wg.Done()
	for {
		select {
		case <-q.Ready():
		case <-q.Done():
			q.Discard()
			return
		}
		// Write the released cells straight from the queue's storage, in
		// batches, and only then let Push reuse it.
		for {
			a, b := q.PeekReady()
			if len(a) == 0 {
				break
			}
			done := 0
			for _, part := range [2][]cell.Cell{a, b} {
				for len(part) > 0 {
					n := min(len(part), batchCells)
					w := dst()
					if w != nil { // nil: DESTROY raced the extend; the circuit is going away
						if err := w.write(cellBytes(part[:n])); err != nil {
							q.Discard()
							go c.destroy(cell.DestroyChannelClosed, sideNone)
							return
						}
					}
					part = part[n:]
					done += n
				}
			}
			q.Consume(done)
		}
	}
}

// handleForUs acts on a relay message addressed to this hop.
func (c *relayCircuit) handleForUs(body *[cell.BodyLen]byte) error {
	cmd, data, err := cell.DecodeRelay(body)
	if err != nil {
		return protocolErr("relay message: %v", err)
	}
	switch cmd {
	case cell.RelayData:
		e, err := c.exitSession()
		if err != nil {
			return err
		}
		if err := e.pipe.deliver(data); err != nil {
			return protocolErr("%v", err)
		}
		if x := c.r.exit; x.buffered.Load() > x.cfg.MaxBufferedBytes {
			c.r.relieveExitBuffers()
		}
		return nil
	case cell.RelayEnd:
		c.exitMu.Lock()
		e := c.exit
		c.exitMu.Unlock()
		if e != nil {
			e.pipe.closeRead(errEndReceived)
		}
		return nil
	case cell.RelayDrop:
		if c.r.m != nil {
			c.r.m.dropCells.Inc()
		}
		return nil
	case cell.RelayExtend2:
		var m cell.Extend2
		if err := m.Decode(data); err != nil {
			return protocolErr("EXTEND2: %v", err)
		}
		if c.out.Load() != nil || !c.extending.CompareAndSwap(false, true) {
			return protocolErr("EXTEND2 on a circuit already extended or extending")
		}
		c.wg.Add(1)
		go c.extend(&m)
		return nil
	case cell.RelayTruncate:
		if out := c.out.Swap(nil); out != nil {
			out.destroy(cell.DestroyRequested)
		}
		return c.originate(&cell.Truncated{Reason: cell.DestroyRequested})
	default:
		return protocolErr("%v sent toward the exit", cmd)
	}
}

// extend handles EXTEND2: link to the named relay, CREATE2, wait for
// CREATED2, answer EXTENDED2 (or TRUNCATED with the reason it failed).
func (c *relayCircuit) extend(m *cell.Extend2) {
	defer c.wg.Done()
	defer c.extending.Store(false)
	reason, err := c.doExtend(m)
	if err == nil {
		return
	}
	if c.ctx.Err() != nil {
		return
	}
	if c.r.m != nil {
		c.r.m.extendFailures.WithLabelValues(reason.String()).Inc()
	}
	c.r.log.Debug("extend failed", zap.Uint64("circ", c.seq), zap.Stringer("reason", reason), c.r.safeErr(err))
	if err := c.originate(&cell.Truncated{Reason: reason}); err != nil {
		c.destroy(cell.DestroyChannelClosed, sidePrev)
	}
}

// safeErr logs an error only when unsafe logging is on: extend and exit
// errors name addresses.
func (r *Relay) safeErr(err error) zap.Field {
	if r.cfg.UnsafeLogging {
		return zap.Error(err)
	}
	return zap.Skip()
}

func (c *relayCircuit) doExtend(m *cell.Extend2) (cell.DestroyReason, error) {
	rawID, addrs, err := m.Target()
	if err != nil {
		return cell.DestroyProtocol, err
	}
	if m.HType != cell.HTypeNtorV3 {
		return cell.DestroyProtocol, fmt.Errorf("handshake type %d", m.HType)
	}
	id := layercrypt.RelayID(rawID)
	if id.Equal(c.r.id) {
		return cell.DestroyProtocol, errors.New("EXTEND2 to ourselves")
	}
	var target netip.AddrPort
	for _, a := range addrs {
		if c.r.cfg.AllowPrivateExtend || publicAddr(a.Addr()) {
			target = a
			break
		}
	}
	if !target.IsValid() {
		return cell.DestroyConnectFailed, errors.New("no public address to extend to")
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.r.cfg.ExtendTimeout)
	defer cancel()
	lk, err := c.r.cfg.Links.Get(ctx, id, target.String())
	if err != nil {
		if errors.Is(err, link.ErrWrongIdentity) {
			return cell.DestroyORIdentity, err
		}
		return cell.DestroyConnectFailed, err
	}
	// The next relay may extend circuits back over this link later.
	s, err := lk.OpenStream()
	if err != nil {
		return cell.DestroyConnectFailed, err
	}
	var cl cell.Cell
	if err := (&cell.Create2{HType: m.HType, HData: m.HData}).Encode(&cl); err != nil {
		s.Close()
		return cell.DestroyProtocol, err
	}
	w := newHopWriter(s)
	if err := w.writeCell(&cl); err != nil {
		s.Close()
		return cell.DestroyConnectFailed, err
	}
	deadline, _ := ctx.Deadline()
	if err := readCell(s, &cl, deadline); err != nil {
		s.Close()
		if isTimeout(err) {
			return cell.DestroyTimeout, err
		}
		return cell.DestroyConnectFailed, err
	}
	switch cl.Command() {
	case cell.CommandCreated2:
	case cell.CommandDestroy:
		s.Close()
		var d cell.Destroy
		d.Decode(&cl)
		return d.Reason, errors.New("next hop refused CREATE2")
	default:
		w.destroy(cell.DestroyProtocol)
		return cell.DestroyProtocol, fmt.Errorf("next hop answered %v", cl.Command())
	}
	var created cell.Created2
	if err := created.Decode(&cl); err != nil {
		w.destroy(cell.DestroyProtocol)
		return cell.DestroyProtocol, err
	}
	// From here the circuit owns the stream: if it was destroyed meanwhile,
	// hand the new hop a DESTROY too.
	c.out.Store(w)
	if c.ctx.Err() != nil {
		if c.out.CompareAndSwap(w, nil) {
			w.destroy(cell.DestroyDestroyed)
		}
		return cell.DestroyDestroyed, c.ctx.Err()
	}
	c.wg.Add(1)
	go c.backwardLoop(s, w)
	if err := c.originate(&cell.Extended2{HData: created.HData}); err != nil {
		c.destroy(cell.DestroyChannelClosed, sidePrev)
	}
	return 0, nil
}

// publicAddr reports whether a is a globally routable unicast address.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !isCGNAT(a)
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func isCGNAT(a netip.Addr) bool { return cgnat.Contains(a) }

// backwardLoop handles cells from the next hop: add our layer and pass them
// toward the client.
func (c *relayCircuit) backwardLoop(s *yamux.Stream, w *hopWriter) {
	defer c.wg.Done()
	err := readBatches(s, func(batch []byte) error {
		c.active.Store(true)
		n := 0
		var ferr error
		for off := 0; off < len(batch); off += cell.CellLen {
			cl := (*cell.Cell)(batch[off : off+cell.CellLen])
			switch cl.Command() {
			case cell.CommandRelay:
				if n != off {
					copy(batch[n:n+cell.CellLen], cl[:])
				}
				n += cell.CellLen
				continue
			case cell.CommandDestroy:
				var d cell.Destroy
				d.Decode(cl)
				ferr = &destroyErr{reason: d.Reason, from: sideNext, detail: "DESTROY from next hop"}
			case cell.CommandPadding:
				continue
			default:
				ferr = protocolErr("%v cell from the next hop", cl.Command())
			}
			break
		}
		if n > 0 {
			if err := c.r.waitBandwidth(c.ctx, n); err != nil {
				return err
			}
			if err := c.sendBackward(batch[:n], false); err != nil && ferr == nil {
				ferr = err
			}
		}
		return ferr
	})
	if c.out.Load() != w {
		return // truncated: the stream was closed on purpose
	}
	c.finish(err, sideNext)
}

// sendBackward adds our layer to cells and sends them toward the client.
// originate says the cells are our own messages (Originate) rather than
// cells passing through (Backward). Encryption and write (or mix push)
// happen under bwdMu so that cells leave in the order their CGO state
// advanced.
func (c *relayCircuit) sendBackward(cells []byte, originate bool) error {
	c.bwdMu.Lock()
	defer c.bwdMu.Unlock()
	if c.dead {
		return &destroyErr{reason: cell.DestroyDestroyed, detail: "circuit gone"}
	}
	for off := 0; off < len(cells); off += cell.CellLen {
		body := (*cell.Cell)(cells[off : off+cell.CellLen]).Body()
		if originate {
			c.crypt.Originate(body)
		} else {
			c.crypt.Backward(body)
		}
	}
	if c.r.m != nil {
		c.r.m.cellsForwarded.WithLabelValues("backward").Add(float64(len(cells) / cell.CellLen))
	}
	if c.bwdQ != nil {
		return c.pushMix(c.bwdQ, cells)
	}
	if err := c.in.write(cells); err != nil {
		return &destroyErr{reason: cell.DestroyChannelClosed, from: sidePrev, detail: "write to previous hop: " + err.Error()}
	}
	return nil
}

// originate sends one of our own relay messages toward the client.
func (c *relayCircuit) originate(m cell.RelayMsg) error {
	var cl cell.Cell
	cl.SetCommand(cell.CommandRelay)
	if err := m.Encode(cl.Body()); err != nil {
		return err
	}
	return c.sendBackward(cl[:], true)
}

// finish turns a loop's ending error into a destroy.
func (c *relayCircuit) finish(err error, from side) {
	var de *destroyErr
	switch {
	case errors.As(err, &de):
		if de.from != sideNone {
			from = de.from
		} else {
			from = sideNone
		}
		if de.reason == cell.DestroyProtocol {
			c.r.log.Debug("circuit protocol violation", zap.Uint64("circ", c.seq), zap.String("detail", de.detail))
		}
		c.destroy(de.reason, from)
	default:
		// The stream or its link failed: tell the other side.
		c.destroy(cell.DestroyChannelClosed, from)
	}
}

// destroy tears the circuit down once, sending DESTROY to every side except
// the one it came from.
func (c *relayCircuit) destroy(reason cell.DestroyReason, from side) {
	c.destroyOnce.Do(func() {
		if c.cancel != nil {
			c.cancel()
		}
		if from == sidePrev {
			c.in.closeQuietly()
		} else {
			c.in.destroy(reason)
		}
		if out := c.out.Swap(nil); out != nil {
			if from == sideNext {
				out.closeQuietly()
			} else {
				out.destroy(reason)
			}
		}
		if c.fwdQ != nil {
			c.fwdQ.Discard()
			c.bwdQ.Discard()
		}
		c.exitMu.Lock()
		e := c.exit
		if e != nil {
			// Its bytes stop counting before the session is out of sight,
			// so that relieveExitBuffers never sees them unattributed.
			e.bufs.closeAll()
		}
		c.exit = nil
		c.exitMu.Unlock()
		if e != nil {
			e.close()
		}
		c.bwdMu.Lock()
		c.dead = true
		c.bwdMu.Unlock()
		r := c.r
		r.mu.Lock()
		_, registered := r.circuits[c]
		delete(r.circuits, c)
		n := len(r.circuits)
		r.mu.Unlock()
		if r.m != nil && registered {
			r.m.relayCircuits.Set(float64(n))
			r.m.circuitsDestroyed.WithLabelValues(reason.String()).Inc()
		}
		r.log.Debug("circuit destroyed", zap.Uint64("circ", c.seq), zap.Stringer("reason", reason))
	})
}

// peerLimiter keeps one token bucket per peer address (IP, not port).
type peerLimiter struct {
	r     rate.Limit
	burst int

	mu       sync.Mutex // guards the following fields
	buckets  map[netip.Addr]*rate.Limiter
	lastTrim time.Time
}

func newPeerLimiter(r rate.Limit, burst int) *peerLimiter {
	return &peerLimiter{r: r, burst: burst, buckets: make(map[netip.Addr]*rate.Limiter)}
}

func (p *peerLimiter) allow(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return true
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return true
	}
	ip = ip.Unmap()
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if now.Sub(p.lastTrim) > time.Minute {
		// Forget peers whose bucket is full again: they hold no state worth keeping.
		for k, l := range p.buckets {
			if l.TokensAt(now) >= float64(p.burst) {
				delete(p.buckets, k)
			}
		}
		p.lastTrim = now
	}
	l := p.buckets[ip]
	if l == nil {
		l = rate.NewLimiter(p.r, p.burst)
		p.buckets[ip] = l
	}
	return l.AllowN(now, 1)
}
