package layercrypt

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// cgoCPUMeter adds a "cpu-ns/op" metric to a benchmark: the CPU time of
// the benchmark's own thread per operation. On a shared machine wall time
// also counts time the thread waited for a core; this does not.
type cgoCPUMeter struct {
	b            *testing.B
	start, total time.Duration
	ok           bool
}

func newCGOCPUMeter(b *testing.B) *cgoCPUMeter {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	m := &cgoCPUMeter{b: b}
	m.resume()
	return m
}

func (m *cgoCPUMeter) resume() { m.start, m.ok = cgoThreadCPU() }

func (m *cgoCPUMeter) pause() {
	if now, ok := cgoThreadCPU(); ok && m.ok {
		m.total += now - m.start
	} else {
		m.ok = false
	}
}

// report stops the meter and reports the metric.
func (m *cgoCPUMeter) report() {
	m.pause()
	if m.ok && m.b.N > 0 {
		m.b.ReportMetric(float64(m.total.Nanoseconds())/float64(m.b.N), "cpu-ns/op")
	}
}

// BenchmarkCGOForwardPassThrough is a relay forwarding a cell that is not
// for it: one UIV+ encryption, no key update.
func BenchmarkCGOForwardPassThrough(b *testing.B) {
	r, err := NewRelayCrypt(cgoKeyStream(1))
	if err != nil {
		b.Fatal(err)
	}
	var body [CGOBodyLen]byte
	fillRand(rand.New(rand.NewPCG(1, 1)), body[:])
	b.ReportAllocs()
	b.SetBytes(CGOBodyLen)
	b.ResetTimer()
	m := newCGOCPUMeter(b)
	for range b.N {
		if r.Forward(&body) {
			b.Fatal("random cell recognized")
		}
	}
	m.report()
}

// BenchmarkCGOBackwardPassThrough is a relay adding its layer to a cell
// from a later hop.
func BenchmarkCGOBackwardPassThrough(b *testing.B) {
	r, err := NewRelayCrypt(cgoKeyStream(1))
	if err != nil {
		b.Fatal(err)
	}
	var body [CGOBodyLen]byte
	b.ReportAllocs()
	b.SetBytes(CGOBodyLen)
	b.ResetTimer()
	m := newCGOCPUMeter(b)
	for range b.N {
		r.Backward(&body)
	}
	m.report()
}

// BenchmarkCGORelayOriginate is a relay (e.g. the exit) sending a message
// toward the client: one UIV+ encryption and a key update.
func BenchmarkCGORelayOriginate(b *testing.B) {
	r, err := NewRelayCrypt(cgoKeyStream(1))
	if err != nil {
		b.Fatal(err)
	}
	var body [CGOBodyLen]byte
	b.ReportAllocs()
	b.SetBytes(CGOBodyLen)
	b.ResetTimer()
	m := newCGOCPUMeter(b)
	for range b.N {
		r.Originate(&body)
	}
	m.report()
}

// BenchmarkCGORelayForwardForUs is the exit receiving a cell addressed to
// it: one UIV+ encryption and a key update. Cells are prepared in batches
// with the timer stopped.
func BenchmarkCGORelayForwardForUs(b *testing.B) {
	c := newCGOCircuit(b, 1, 1)
	const batch = 1024
	cells := make([][CGOBodyLen]byte, batch)
	b.ReportAllocs()
	b.SetBytes(CGOBodyLen)
	b.ResetTimer()
	m := newCGOCPUMeter(b)
	for done := 0; done < b.N; done += batch {
		n := min(batch, b.N-done)
		m.pause()
		b.StopTimer()
		for i := range n {
			if err := c.client.Encrypt(0, &cells[i]); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		m.resume()
		for i := range n {
			if !c.relays[0].Forward(&cells[i]) {
				b.Fatal("cell not recognized")
			}
		}
	}
	m.report()
}

// BenchmarkCGOClientEncrypt3Hops is the client sending to the third hop:
// one UIV+ decryption per hop and one key update.
func BenchmarkCGOClientEncrypt3Hops(b *testing.B) {
	c := newCGOCircuit(b, 3, 1)
	var body [CGOBodyLen]byte
	b.ReportAllocs()
	b.SetBytes(CGOBodyLen)
	b.ResetTimer()
	m := newCGOCPUMeter(b)
	for range b.N {
		if err := c.client.Encrypt(2, &body); err != nil {
			b.Fatal(err)
		}
	}
	m.report()
}

// BenchmarkCGOClientDecrypt3Hops is the client receiving from the third
// hop: three UIV+ decryptions and one key update. Cells are prepared by
// the relays in batches with the timer stopped.
func BenchmarkCGOClientDecrypt3Hops(b *testing.B) {
	c := newCGOCircuit(b, 3, 1)
	const batch = 1024
	cells := make([][CGOBodyLen]byte, batch)
	b.ReportAllocs()
	b.SetBytes(CGOBodyLen)
	b.ResetTimer()
	m := newCGOCPUMeter(b)
	for done := 0; done < b.N; done += batch {
		n := min(batch, b.N-done)
		m.pause()
		b.StopTimer()
		for i := range n {
			c.originateBackward(2, &cells[i])
		}
		b.StartTimer()
		m.resume()
		for i := range n {
			if hop, err := c.client.Decrypt(&cells[i]); err != nil || hop != 2 {
				b.Fatal(hop, err)
			}
		}
	}
	m.report()
}

// BenchmarkCGOUIVUpdate is the per-cell key ratchet alone.
func BenchmarkCGOUIVUpdate(b *testing.B) {
	var keys [cgoUIVKeyLen]byte
	var nonce [cgoNonceLen]byte
	var u cgoUIV
	u.init(&keys, false)
	b.ReportAllocs()
	b.ResetTimer()
	m := newCGOCPUMeter(b)
	for range b.N {
		u.update(&nonce)
	}
	m.report()
}

// BenchmarkCGOETMask is ET's POLYVAL over the 510-byte tweak.
func BenchmarkCGOETMask(b *testing.B) {
	var key [cgoETKeyLen]byte
	var et cgoET
	et.init(&key, false)
	var h [CGOTagLen]byte
	var body [CGOBodyLen]byte
	var out [cgoBlockLen]byte
	b.ReportAllocs()
	b.SetBytes(CGOTagLen + 1 + CGOMessageLen)
	b.ResetTimer()
	m := newCGOCPUMeter(b)
	for range b.N {
		et.mask(&out, &h, 3, &body)
	}
	m.report()
}

// BenchmarkCGOPRFT0 is the PRF's 493-byte key stream XOR.
func BenchmarkCGOPRFT0(b *testing.B) {
	var key [cgoPRFKeyLen]byte
	var prf cgoPRF
	prf.init(&key)
	var tweak [cgoBlockLen]byte
	var data [CGOMessageLen]byte
	b.ReportAllocs()
	b.SetBytes(CGOMessageLen)
	b.ResetTimer()
	m := newCGOCPUMeter(b)
	for range b.N {
		prf.xorT0(&tweak, &data)
	}
	m.report()
}
