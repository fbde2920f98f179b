// Package mix is a relay's mixing scheduler: it holds the cells a relay
// forwards on delayed circuits and releases each at a random departure time,
// so that timing does not link a cell leaving the relay to the one that
// entered it (DESIGN.md section 6). It never parses cells and does no I/O;
// items are opaque values of any type.
//
// # Semantics
//
// Each circuit-direction has a Queue. A cell pushed at time a on a queue of
// delay class spec departs at
//
//	d = max(d_prev, a + min(Exp(spec.Mean), spec.Cap))
//
// where d_prev is the departure of the queue's previous cell. Cells of one
// circuit-direction therefore leave in order; cells of different circuits
// interleave at random. The delay distribution is an exponential truncated
// at Cap (default 10 x Mean, clamping about 0.005% of draws, which then
// depart Cap after arrival); the relay's configured ClassSpec, not the
// client, sets Mean and Cap. With Config.Resolution > 0 a cell may leave up
// to Resolution after d, batched with others that came due meanwhile. Class 0
// (interactive) has mean 0: circuit code bypasses the scheduler for it, and
// a Push on such a queue releases the cell at once without touching the
// scheduler's heap.
//
// # Structure and cost
//
// A relay has one Scheduler, with one min-heap, one timer and one goroutine
// (Run). The heap holds at most one entry per queue: the departure time of
// the queue's first waiting cell. Cells behind it are in departure order
// already, so only the head needs a heap entry: the heap grows with the
// number of active circuits, not of cells. When the entry comes due, Run
// releases every due cell of that queue, signals the queue's Ready channel
// and puts the queue back with its next cell's departure time. Push touches
// the heap only when a queue goes from no waiting cells to one; it wakes Run
// only when that entry becomes the earliest.
//
// The writer goroutine of each circuit-direction (owned by the circuit code)
// waits on Ready, calls PopReady and writes the batch; or, for value items
// such as whole cells, PeekReady, writes straight from the queue's storage and
// calls Consume, so a cell is copied once into the queue and once out to
// the link. The circuit's reader hands each read's cells over with one
// PushBatch (one lock, one clock read and one draw per cell under one RNG
// lock). A queue holds at most its limit of cells; Push then blocks
// (backpressure, never a drop), which in turn stops the circuit's reader and
// lets the link's per-stream flow control push back on the previous hop.
// A queue keeps its items in 32-item chunks (16 KiB of cells) and their
// times in a small ring: it holds memory in proportion to the cells it
// holds, allocates nothing until its first cell, recycles chunks while
// cells flow, and gives everything back when it drains, so idle circuits
// cost little. With Config.Budget set, queues share the mix: past the
// budget, a queue holding at least Budget/FairShareDivisor cells takes no
// more until its own cells leave, so end-to-end windows larger than a
// path needs cannot park their excess in one relay.
//
// Locks: each queue has a mutex, the scheduler one for the heap and one for
// the random generator; a queue's mutex is always taken before the heap's.
//
// # Measurements
//
// See Metrics for what is exported and how to read the anonymity estimate.
//
// # Cover traffic
//
// NextPaddingDelay and IdleTimer implement the link-padding decision
// (PADDING on idle links after a random timeout). DROP cells along circuits
// and constant-rate circuits are circuit-level features built from the same
// pieces by the circuit code.
package mix
