package layercrypt

import (
	"bytes"
	crand "crypto/rand"
	"crypto/sha3"
	"errors"
	"io"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// cgoKeyStream stands in for a hop's ntor-v3 key stream: SHAKE-256 of a
// seed. Client and relay get the same bytes from the same seed.
func cgoKeyStream(seed byte) io.Reader {
	x := sha3.NewSHAKE256()
	x.Write([]byte("chive cgo test hop"))
	x.Write([]byte{seed})
	return x
}

// cgoCircuit is a client and its relays, all with matching keys.
type cgoCircuit struct {
	client *ClientCrypt
	relays []*RelayCrypt
}

func newCGOCircuit(t testing.TB, hops int, seed byte) *cgoCircuit {
	t.Helper()
	c := &cgoCircuit{client: new(ClientCrypt)}
	for i := 0; i < hops; i++ {
		if err := c.client.AddHop(cgoKeyStream(seed + byte(i))); err != nil {
			t.Fatal(err)
		}
		r, err := NewRelayCrypt(cgoKeyStream(seed + byte(i)))
		if err != nil {
			t.Fatal(err)
		}
		c.relays = append(c.relays, r)
	}
	if c.client.Hops() != hops {
		t.Fatalf("Hops() = %d, want %d", c.client.Hops(), hops)
	}
	return c
}

// clone copies every state. A copy is a full, independent clone: the only
// shared parts are the AES instances, which are immutable once keyed.
func (c *cgoCircuit) clone() *cgoCircuit {
	n := &cgoCircuit{client: new(ClientCrypt)}
	for _, h := range c.client.hops {
		hh := *h
		n.client.hops = append(n.client.hops, &hh)
	}
	for _, r := range c.relays {
		rr := *r
		n.relays = append(n.relays, &rr)
	}
	return n
}

// deliverForward runs a cell through relays from..len-1 and returns the
// hop that recognized it, or -1.
func (c *cgoCircuit) deliverForward(from int, body *[CGOBodyLen]byte) int {
	for i := from; i < len(c.relays); i++ {
		if c.relays[i].Forward(body) {
			return i
		}
	}
	return -1
}

// originateBackward has relay hop originate a message and the hops before
// it add their layers, as the cell travels to the client.
func (c *cgoCircuit) originateBackward(hop int, body *[CGOBodyLen]byte) {
	c.relays[hop].Originate(body)
	for i := hop - 1; i >= 0; i-- {
		c.relays[i].Backward(body)
	}
}

func cgoRandomMessage(rng *rand.Rand) [CGOBodyLen]byte {
	var b [CGOBodyLen]byte
	fillRand(rng, b[CGOTagLen:])
	return b
}

func TestCGOOnionThreeHops(t *testing.T) {
	cgoImpls(t, func(t *testing.T) {
		c := newCGOCircuit(t, 3, 10)
		rng := rand.New(rand.NewPCG(11, 12))
		for round := 0; round < 300; round++ {
			hop := rng.IntN(3)
			msg := cgoRandomMessage(rng)
			body := msg
			if rng.IntN(2) == 0 {
				// Client to hop.
				if err := c.client.Encrypt(hop, &body); err != nil {
					t.Fatal(err)
				}
				if bytes.Equal(body[CGOTagLen:], msg[CGOTagLen:]) {
					t.Fatalf("round %d: message left the client in the clear", round)
				}
				for i := 0; i < 3; i++ {
					forUs := c.relays[i].Forward(&body)
					if forUs != (i == hop) {
						t.Fatalf("round %d: cell for hop %d: Forward at hop %d = %v", round, hop, i, forUs)
					}
					if forUs {
						break
					}
				}
				if !bytes.Equal(body[CGOTagLen:], msg[CGOTagLen:]) {
					t.Fatalf("round %d: hop %d got a different message", round, hop)
				}
			} else {
				// Hop to client.
				c.originateBackward(hop, &body)
				if bytes.Equal(body[CGOTagLen:], msg[CGOTagLen:]) {
					t.Fatalf("round %d: message reached the client in the clear", round)
				}
				got, err := c.client.Decrypt(&body)
				if err != nil {
					t.Fatalf("round %d: from hop %d: %v", round, hop, err)
				}
				if got != hop {
					t.Fatalf("round %d: cell from hop %d attributed to hop %d", round, hop, got)
				}
				if !bytes.Equal(body[CGOTagLen:], msg[CGOTagLen:]) {
					t.Fatalf("round %d: client got a different message from hop %d", round, hop)
				}
			}
		}
	})
}

// TestCGOImplementationsAgree runs the same long conversation (many key
// updates on every hop, both directions) once per implementation pair and
// compares every cell on the wire. The portable pair (pure-Go POLYVAL and
// crypto/aes) shares no arithmetic with the assembly, so a fault in the
// assembly's key setup, which client and relay would share and so not
// notice between themselves, shows here.
func TestCGOImplementationsAgree(t *testing.T) {
	var reference [][CGOBodyLen]byte
	first := true
	cgoImpls(t, func(t *testing.T) {
		c := newCGOCircuit(t, 3, 90)
		rng := rand.New(rand.NewPCG(91, 92))
		var wire [][CGOBodyLen]byte
		for round := 0; round < 200; round++ {
			hop := rng.IntN(3)
			body := cgoRandomMessage(rng)
			want := body
			if round%2 == 0 {
				if err := c.client.Encrypt(hop, &body); err != nil {
					t.Fatal(err)
				}
				wire = append(wire, body)
				if got := c.deliverForward(0, &body); got != hop || body != cgoWithTag(want, body) {
					t.Fatalf("round %d: forward cell for %d recognized at %d", round, hop, got)
				}
			} else {
				c.originateBackward(hop, &body)
				wire = append(wire, body)
				if got, err := c.client.Decrypt(&body); err != nil || got != hop {
					t.Fatalf("round %d: backward cell from %d: %d, %v", round, hop, got, err)
				}
			}
		}
		if first {
			reference, first = wire, false
			return
		}
		for i := range wire {
			if wire[i] != reference[i] {
				t.Fatalf("cell %d differs from the first implementation's", i)
			}
		}
	})
}

// cgoWithTag returns msg with the tag of body, for comparing messages.
func cgoWithTag(msg, body [CGOBodyLen]byte) [CGOBodyLen]byte {
	copy(msg[:CGOTagLen], body[:CGOTagLen])
	return msg
}

// TestCGOBitFlipForward flips each bit of a cell, in turn, as it arrives at
// each hop on its way to its destination: the destination must not
// recognize it, and neither must any hop after it.
func TestCGOBitFlipForward(t *testing.T) {
	base := newCGOCircuit(t, 3, 20)
	rng := rand.New(rand.NewPCG(21, 22))
	// Warm the states up so that T', K and N are not the initial ones.
	for i := 0; i < 5; i++ {
		for hop := 0; hop < 3; hop++ {
			body := cgoRandomMessage(rng)
			if err := base.client.Encrypt(hop, &body); err != nil {
				t.Fatal(err)
			}
			if got := base.deliverForward(0, &body); got != hop {
				t.Fatalf("warm-up cell for hop %d recognized at %d", hop, got)
			}
		}
	}
	checked := 0
	for dest := 0; dest < 3; dest++ {
		for at := 0; at <= dest; at++ {
			msg := cgoRandomMessage(rng)
			for bit := 0; bit < CGOBodyLen*8; bit++ {
				if dest != 2 || at != 0 {
					// Every bit for the longest path; a sample elsewhere.
					if bit%7 != 0 {
						continue
					}
				}
				c := base.clone()
				body := msg
				if err := c.client.Encrypt(dest, &body); err != nil {
					t.Fatal(err)
				}
				for i := 0; i < at; i++ {
					if c.relays[i].Forward(&body) {
						t.Fatalf("hop %d recognized a cell for hop %d", i, dest)
					}
				}
				body[bit/8] ^= 1 << (bit % 8)
				if got := c.deliverForward(at, &body); got != -1 {
					t.Fatalf("cell for hop %d with bit %d flipped before hop %d was recognized by hop %d",
						dest, bit, at, got)
				}
				checked++
			}
		}
	}
	t.Logf("%d tampered cells, none recognized", checked)
}

// TestCGOBitFlipBackward flips each bit of a cell on its way back, before
// each hop it passes and before the client.
func TestCGOBitFlipBackward(t *testing.T) {
	base := newCGOCircuit(t, 3, 30)
	rng := rand.New(rand.NewPCG(31, 32))
	for origin := 0; origin < 3; origin++ {
		// "at" is the hop whose Backward receives the flipped cell; -1 is
		// the client.
		for at := origin - 1; at >= -1; at-- {
			msg := cgoRandomMessage(rng)
			for bit := 0; bit < CGOBodyLen*8; bit++ {
				if (origin != 2 || at != -1) && bit%7 != 0 {
					continue
				}
				c := base.clone()
				body := msg
				c.relays[origin].Originate(&body)
				for i := origin - 1; i > at; i-- {
					c.relays[i].Backward(&body)
				}
				body[bit/8] ^= 1 << (bit % 8)
				for i := at; i >= 0; i-- {
					c.relays[i].Backward(&body)
				}
				if hop, err := c.client.Decrypt(&body); !errors.Is(err, ErrUnrecognized) {
					t.Fatalf("cell from hop %d with bit %d flipped before hop %d: Decrypt = %d, %v",
						origin, bit, at, hop, err)
				}
			}
		}
	}
}

func TestCGOReplayDropReorderForward(t *testing.T) {
	base := newCGOCircuit(t, 3, 40)
	rng := rand.New(rand.NewPCG(41, 42))
	for dest := 0; dest < 3; dest++ {
		c := base.clone()
		a, b := cgoRandomMessage(rng), cgoRandomMessage(rng)
		if err := c.client.Encrypt(dest, &a); err != nil {
			t.Fatal(err)
		}
		if err := c.client.Encrypt(dest, &b); err != nil {
			t.Fatal(err)
		}

		// Replay: A delivered, then A again.
		r := c.clone()
		a1, a2 := a, a
		if got := r.deliverForward(0, &a1); got != dest {
			t.Fatalf("cell for %d recognized at %d", dest, got)
		}
		if got := r.deliverForward(0, &a2); got != -1 {
			t.Fatalf("replayed cell for %d recognized at %d", dest, got)
		}

		// Drop: B without A.
		r = c.clone()
		b1 := b
		if got := r.deliverForward(0, &b1); got != -1 {
			t.Fatalf("cell for %d after a dropped one recognized at %d", dest, got)
		}

		// Reorder: B, then A.
		r = c.clone()
		b1, a1 = b, a
		if got := r.deliverForward(0, &b1); got != -1 {
			t.Fatalf("early cell for %d recognized at %d", dest, got)
		}
		if got := r.deliverForward(0, &a1); got != -1 {
			t.Fatalf("late cell for %d recognized at %d", dest, got)
		}

		// In order both are accepted.
		r = c.clone()
		a1, b1 = a, b
		if r.deliverForward(0, &a1) != dest || r.deliverForward(0, &b1) != dest {
			t.Fatalf("in-order cells for %d not both recognized", dest)
		}
	}

	// A dropped cell for hop 0 spoils a later cell for hop 2: hop 0 chains
	// every cell it sees through T'.
	c := base.clone()
	a, b := cgoRandomMessage(rng), cgoRandomMessage(rng)
	if err := c.client.Encrypt(0, &a); err != nil {
		t.Fatal(err)
	}
	if err := c.client.Encrypt(2, &b); err != nil {
		t.Fatal(err)
	}
	if got := c.deliverForward(0, &b); got != -1 {
		t.Fatalf("cell for hop 2 after a dropped cell for hop 0 recognized at %d", got)
	}
}

func TestCGOReplayDropReorderBackward(t *testing.T) {
	base := newCGOCircuit(t, 3, 50)
	rng := rand.New(rand.NewPCG(51, 52))
	for origin := 0; origin < 3; origin++ {
		c := base.clone()
		a, b := cgoRandomMessage(rng), cgoRandomMessage(rng)
		c.originateBackward(origin, &a)
		c.originateBackward(origin, &b)

		decrypt := func(cl *ClientCrypt, body [CGOBodyLen]byte) (int, error) {
			return cl.Decrypt(&body)
		}
		cl := c.clone().client
		if hop, err := decrypt(cl, a); err != nil || hop != origin {
			t.Fatalf("cell from %d: %d, %v", origin, hop, err)
		}
		if _, err := decrypt(cl, a); !errors.Is(err, ErrUnrecognized) {
			t.Fatalf("replayed cell from %d: %v", origin, err)
		}

		cl = c.clone().client
		if _, err := decrypt(cl, b); !errors.Is(err, ErrUnrecognized) {
			t.Fatalf("cell from %d after a dropped one: %v", origin, err)
		}

		cl = c.clone().client
		if _, err := decrypt(cl, b); !errors.Is(err, ErrUnrecognized) {
			t.Fatalf("early cell from %d: %v", origin, err)
		}
		if _, err := decrypt(cl, a); !errors.Is(err, ErrUnrecognized) {
			t.Fatalf("late cell from %d: %v", origin, err)
		}

		cl = c.clone().client
		if hop, err := decrypt(cl, a); err != nil || hop != origin {
			t.Fatalf("in order, first: %d, %v", hop, err)
		}
		if hop, err := decrypt(cl, b); err != nil || hop != origin {
			t.Fatalf("in order, second: %d, %v", hop, err)
		}
	}

	// A cell the client never saw from hop 0 spoils a later one from hop 2.
	c := base.clone()
	a, b := cgoRandomMessage(rng), cgoRandomMessage(rng)
	c.originateBackward(0, &a)
	c.originateBackward(2, &b)
	if _, err := c.client.Decrypt(&b); !errors.Is(err, ErrUnrecognized) {
		t.Fatalf("cell from hop 2 after a dropped one from hop 0: %v", err)
	}
}

func cgoBitDistance(a, b []byte) int {
	n := 0
	for i := range a {
		n += bits.OnesCount8(a[i] ^ b[i])
	}
	return n
}

// TestCGOStateMovesForward checks the per-cell ratchet: the same message
// sent twice gives unrelated cells, the destination's K and N change on
// every cell it originates or recognizes, and the hops in between advance
// only T'.
func TestCGOStateMovesForward(t *testing.T) {
	c := newCGOCircuit(t, 3, 60)
	var msg [CGOBodyLen]byte
	copy(msg[CGOTagLen:], "the same message, twice")

	before := *c.client.hops[2]
	mid := *c.client.hops[1]
	first := msg
	if err := c.client.Encrypt(2, &first); err != nil {
		t.Fatal(err)
	}
	after := *c.client.hops[2]
	if after.fwd.uiv.keys == before.fwd.uiv.keys || after.fwd.nonce == before.fwd.nonce {
		t.Fatal("client: destination keys or nonce unchanged after originating a cell")
	}
	if c.client.hops[1].fwd.uiv.keys != mid.fwd.uiv.keys || c.client.hops[1].fwd.nonce != mid.fwd.nonce {
		t.Fatal("client: an intermediate hop's keys changed")
	}
	if c.client.hops[1].fwd.tprime == mid.fwd.tprime {
		t.Fatal("client: an intermediate hop's T' did not advance")
	}
	second := msg
	if err := c.client.Encrypt(2, &second); err != nil {
		t.Fatal(err)
	}
	if d := cgoBitDistance(first[:], second[:]); d < CGOBodyLen*8*4/10 {
		t.Fatalf("two encryptions of one message differ in only %d of %d bits", d, CGOBodyLen*8)
	}

	// Relays: the pass-through hops keep K and N but move T'; the
	// destination replaces K and N.
	r0, r2 := *c.relays[0], *c.relays[2]
	if got := c.deliverForward(0, &first); got != 2 {
		t.Fatalf("first cell recognized at %d", got)
	}
	if c.relays[0].fwd.uiv.keys != r0.fwd.uiv.keys || c.relays[0].fwd.nonce != r0.fwd.nonce {
		t.Fatal("relay 0: keys changed on a pass-through cell")
	}
	if c.relays[0].fwd.tprime == r0.fwd.tprime {
		t.Fatal("relay 0: T' did not advance on a pass-through cell")
	}
	if c.relays[2].fwd.uiv.keys == r2.fwd.uiv.keys || c.relays[2].fwd.nonce == r2.fwd.nonce {
		t.Fatal("relay 2: keys or nonce unchanged after a recognized cell")
	}
	if got := c.deliverForward(0, &second); got != 2 {
		t.Fatalf("second cell recognized at %d", got)
	}
	if !bytes.Equal(first[CGOTagLen:], second[CGOTagLen:]) || !bytes.Equal(first[CGOTagLen:], msg[CGOTagLen:]) {
		t.Fatal("the two cells did not both decrypt to the message")
	}

	// Backward: the same message originated twice.
	b1, b2 := msg, msg
	rb := *c.relays[1]
	c.originateBackward(1, &b1)
	if c.relays[1].bwd.uiv.keys == rb.bwd.uiv.keys || c.relays[1].bwd.nonce == rb.bwd.nonce {
		t.Fatal("relay 1: keys or nonce unchanged after originating")
	}
	c.originateBackward(1, &b2)
	if d := cgoBitDistance(b1[:], b2[:]); d < CGOBodyLen*8*4/10 {
		t.Fatalf("two backward encryptions of one message differ in only %d bits", d)
	}
	for _, b := range []*[CGOBodyLen]byte{&b1, &b2} {
		if hop, err := c.client.Decrypt(b); err != nil || hop != 1 {
			t.Fatalf("Decrypt = %d, %v", hop, err)
		}
	}
}

// TestCGOWithNtorV3KeyStreams builds a hop from a real ntor-v3 handshake:
// the client's and the relay's key streams must give matching CGO states
// and be left at the same point.
func TestCGOWithNtorV3KeyStreams(t *testing.T) {
	x25519Impls(t, testCGOWithNtorV3KeyStreams)
}

func testCGOWithNtorV3KeyStreams(t *testing.T) {
	idKey, err := GenerateIdentityKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	onion, err := GenerateOnionKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ver := []byte("chive cgo test")
	hs, onionskin, err := NewNtorV3Client(crand.Reader, idKey.ID(), onion.Public(), ver, nil)
	if err != nil {
		t.Fatal(err)
	}
	reply, relayKS, err := NtorV3Server(crand.Reader, idKey.ID(), []*OnionPrivateKey{onion}, ver, onionskin, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, clientKS, err := hs.Finish(reply)
	if err != nil {
		t.Fatal(err)
	}
	var c ClientCrypt
	if err := c.AddHop(clientKS); err != nil {
		t.Fatal(err)
	}
	r, err := NewRelayCrypt(relayKS)
	if err != nil {
		t.Fatal(err)
	}
	var restC, restR [20]byte
	clientKS.Read(restC[:])
	relayKS.Read(restR[:])
	if restC != restR {
		t.Fatal("client and relay key streams left at different points")
	}
	for i := 0; i < 10; i++ {
		var msg [CGOBodyLen]byte
		copy(msg[CGOTagLen:], "over a real handshake")
		msg[CGOBodyLen-1] = byte(i)
		body := msg
		if err := c.Encrypt(0, &body); err != nil {
			t.Fatal(err)
		}
		if !r.Forward(&body) || !bytes.Equal(body[CGOTagLen:], msg[CGOTagLen:]) {
			t.Fatalf("cell %d: relay did not get the client's message", i)
		}
		body = msg
		r.Originate(&body)
		if hop, err := c.Decrypt(&body); err != nil || hop != 0 || !bytes.Equal(body[CGOTagLen:], msg[CGOTagLen:]) {
			t.Fatalf("cell %d: client did not get the relay's message: %d, %v", i, hop, err)
		}
	}
}

// TestCGOKeyMaterialOrder pins how the key stream is consumed: forward
// J||S||N, then backward J||S||N, and nothing more.
func TestCGOKeyMaterialOrder(t *testing.T) {
	var m [CGOKeyMaterialLen + 20]byte
	for i := range m {
		m[i] = byte(i)
	}
	rd := bytes.NewReader(m[:])
	r, err := NewRelayCrypt(rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd.Len() != 20 {
		t.Fatalf("NewRelayCrypt left %d bytes, want 20", rd.Len())
	}
	if !bytes.Equal(r.fwd.uiv.keys[:], m[0:64]) || !bytes.Equal(r.fwd.nonce[:], m[64:80]) {
		t.Fatal("forward state not from bytes 0..79")
	}
	if !bytes.Equal(r.bwd.uiv.keys[:], m[80:144]) || !bytes.Equal(r.bwd.nonce[:], m[144:160]) {
		t.Fatal("backward state not from bytes 80..159")
	}
	if r.fwd.tprime != ([16]byte{}) || r.bwd.tprime != ([16]byte{}) {
		t.Fatal("T' does not start at zero")
	}
	var c ClientCrypt
	rd = bytes.NewReader(m[:])
	if err := c.AddHop(rd); err != nil {
		t.Fatal(err)
	}
	if c.hops[0].fwd.uiv.keys != r.fwd.uiv.keys || c.hops[0].bwd.nonce != r.bwd.nonce || rd.Len() != 20 {
		t.Fatal("client and relay read the key stream differently")
	}
}

func TestCGOErrors(t *testing.T) {
	if _, err := NewRelayCrypt(bytes.NewReader(make([]byte, CGOKeyMaterialLen-1))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short key stream: %v", err)
	}
	var c ClientCrypt
	if err := c.AddHop(bytes.NewReader(nil)); !errors.Is(err, io.EOF) {
		t.Fatalf("empty key stream: %v", err)
	}
	if c.Hops() != 0 {
		t.Fatal("failed AddHop added a hop")
	}
	var body [CGOBodyLen]byte
	if _, err := c.Decrypt(&body); !errors.Is(err, ErrNoSuchHop) {
		t.Fatalf("Decrypt without hops: %v", err)
	}
	for i := 0; i < CGOMaxHops; i++ {
		if err := c.AddHop(cgoKeyStream(byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AddHop(cgoKeyStream(99)); !errors.Is(err, ErrTooManyHops) {
		t.Fatalf("hop %d: %v", CGOMaxHops+1, err)
	}
	for _, hop := range []int{-1, CGOMaxHops} {
		if err := c.Encrypt(hop, &body); !errors.Is(err, ErrNoSuchHop) {
			t.Fatalf("Encrypt(%d): %v", hop, err)
		}
	}
	if err := c.Encrypt(CGOMaxHops-1, &body); err != nil {
		t.Fatal(err)
	}
}

func TestCGOWipe(t *testing.T) {
	c := newCGOCircuit(t, 3, 70)
	hops := append([]*cgoHop(nil), c.client.hops...)
	c.client.Wipe()
	c.client.Wipe() // idempotent
	for i, h := range hops {
		for _, d := range []*cgoDir{&h.fwd, &h.bwd} {
			if d.uiv.keys != ([64]byte{}) || d.nonce != ([16]byte{}) || d.tprime != ([16]byte{}) ||
				d.uiv.j.ku != (Polyval{}) || d.uiv.s.b != (Polyval{}) || d.uiv.j.kb != (cgoAES{}) || d.uiv.s.k != (cgoAES{}) {
				t.Fatalf("client hop %d not wiped", i)
			}
		}
	}
	var body [CGOBodyLen]byte
	if err := c.client.Encrypt(0, &body); !errors.Is(err, ErrCryptWiped) {
		t.Fatalf("Encrypt after Wipe: %v", err)
	}
	if _, err := c.client.Decrypt(&body); !errors.Is(err, ErrCryptWiped) {
		t.Fatalf("Decrypt after Wipe: %v", err)
	}
	if err := c.client.AddHop(cgoKeyStream(1)); !errors.Is(err, ErrCryptWiped) {
		t.Fatalf("AddHop after Wipe: %v", err)
	}

	r := c.relays[0]
	r.Wipe()
	if r.fwd.uiv.keys != ([64]byte{}) || r.bwd.nonce != ([16]byte{}) || r.bwd.uiv.j.kb != (cgoAES{}) || r.fwd.uiv.s.k != (cgoAES{}) {
		t.Fatal("relay state not wiped")
	}
	for name, f := range map[string]func(){
		"Forward":   func() { r.Forward(&body) },
		"Backward":  func() { r.Backward(&body) },
		"Originate": func() { r.Originate(&body) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s after Wipe did not panic", name)
				}
			}()
			f()
		}()
	}
}

// FuzzCGOTamper sends a fuzzed message through a 3-hop circuit in either
// direction, optionally flipping one bit on the way: untouched cells must
// arrive intact at the right hop, touched ones must be rejected.
func FuzzCGOTamper(f *testing.F) {
	f.Add([]byte("hello"), byte(2), false, uint16(0), byte(0), false)
	f.Add([]byte("hello"), byte(2), false, uint16(4071), byte(1), true)
	f.Add(bytes.Repeat([]byte{0xff}, CGOMessageLen), byte(0), true, uint16(128), byte(0), true)
	f.Add([]byte{}, byte(1), true, uint16(7), byte(2), true)
	f.Fuzz(func(t *testing.T, msg []byte, hop byte, backward bool, bit uint16, at byte, flip bool) {
		c := newCGOCircuit(t, 3, 80)
		dest := int(hop % 3)
		var body [CGOBodyLen]byte
		copy(body[CGOTagLen:], msg)
		want := body
		pos := int(bit) % (CGOBodyLen * 8)
		if !backward {
			stage := int(at) % (dest + 1) // flip before relay "stage"
			if err := c.client.Encrypt(dest, &body); err != nil {
				t.Fatal(err)
			}
			got := -1
			for i := 0; i < 3; i++ {
				if flip && i == stage {
					body[pos/8] ^= 1 << (pos % 8)
				}
				if c.relays[i].Forward(&body) {
					got = i
					break
				}
			}
			if flip {
				if got != -1 {
					t.Fatalf("tampered cell for hop %d recognized at %d", dest, got)
				}
				return
			}
			if got != dest || !bytes.Equal(body[CGOTagLen:], want[CGOTagLen:]) {
				t.Fatalf("cell for hop %d: recognized at %d, message intact %v", dest, got,
					bytes.Equal(body[CGOTagLen:], want[CGOTagLen:]))
			}
			return
		}
		stage := int(at)%(dest+1) - 1 // flip before relay "stage"'s Backward; -1 = client
		c.relays[dest].Originate(&body)
		for i := dest - 1; i >= -1; i-- {
			if flip && i == stage {
				body[pos/8] ^= 1 << (pos % 8)
			}
			if i >= 0 {
				c.relays[i].Backward(&body)
			}
		}
		got, err := c.client.Decrypt(&body)
		if flip {
			if !errors.Is(err, ErrUnrecognized) {
				t.Fatalf("tampered cell from hop %d: %d, %v", dest, got, err)
			}
			return
		}
		if err != nil || got != dest || !bytes.Equal(body[CGOTagLen:], want[CGOTagLen:]) {
			t.Fatalf("cell from hop %d: %d, %v", dest, got, err)
		}
	})
}
