package layercrypt

import (
	"errors"
	"fmt"
	"io"
)

// CGOKeyMaterialLen is how many bytes NewRelayCrypt and ClientCrypt.AddHop
// read from a hop's key stream (the ntor-v3 KDF output): 80 bytes for the
// forward direction (away from the client) then 80 for the backward one,
// each J (32) || S (32) || N (16) — the order of C tor's cgo_pair_init and
// arti's CryptStatePair. Tor's key stream continues with a 20-byte circuit
// binding (KH), which these constructors leave unread.
const CGOKeyMaterialLen = 2 * cgoDirKeyLen

// CGOMaxHops bounds a client circuit. It matches Tor, where the limit of 8
// RELAY_EARLY cells bounds how often a circuit can be extended.
const CGOMaxHops = 8

// cgoRelayAD is the associated-data byte CGO binds every cell to: the cell
// command. Tor uses RELAY (3) or RELAY_EARLY (9); chive has only RELAY,
// with Tor's number, so it is fixed here.
const cgoRelayAD = 3

// Errors from the CGO relay-cell crypto.
var (
	// ErrUnrecognized means that no hop's layer recognized a cell arriving
	// at the client. The cell was forged, altered, replayed, reordered or
	// follows a dropped one; the states it passed through have advanced,
	// so the circuit must be destroyed.
	ErrUnrecognized = errors.New("layercrypt: cell not recognized by any hop")
	// ErrNoSuchHop means that a hop index is outside the circuit.
	ErrNoSuchHop = errors.New("layercrypt: no such hop on the circuit")
	// ErrTooManyHops means AddHop would exceed CGOMaxHops.
	ErrTooManyHops = errors.New("layercrypt: circuit already has the maximum number of hops")
	// ErrCryptWiped means a ClientCrypt was used after Wipe.
	ErrCryptWiped = errors.New("layercrypt: circuit crypto used after Wipe")
)

// cgoReadHop reads one hop's key material and sets up both directions.
func cgoReadHop(keys io.Reader, fwd, bwd *cgoDir, client bool) error {
	var m [CGOKeyMaterialLen]byte
	defer clear(m[:])
	if _, err := io.ReadFull(keys, m[:]); err != nil {
		return fmt.Errorf("read CGO key material: %w", err)
	}
	fwd.init((*[cgoDirKeyLen]byte)(m[:cgoDirKeyLen]), client)
	bwd.init((*[cgoDirKeyLen]byte)(m[cgoDirKeyLen:]), client)
	return nil
}

// RelayCrypt is one relay's CGO state for one circuit hop (both
// directions).
//
// Forward touches only the forward state and Backward/Originate only the
// backward one, so a reader goroutine may call Forward while a writer
// goroutine calls Backward and Originate. Each method on its own is not
// safe for concurrent use, and Wipe must not race with any of them.
type RelayCrypt struct {
	fwd, bwd cgoDir
	wiped    bool
}

// NewRelayCrypt reads CGOKeyMaterialLen bytes of key material from keys
// (the ntor-v3 key stream) and returns the relay's state for the hop.
func NewRelayCrypt(keys io.Reader) (*RelayCrypt, error) {
	r := new(RelayCrypt)
	if err := cgoReadHop(keys, &r.fwd, &r.bwd, false); err != nil {
		r.Wipe()
		return nil, fmt.Errorf("layercrypt: relay CGO state: %w", err)
	}
	return r, nil
}

func (r *RelayCrypt) check() {
	if r.wiped {
		// Carrying on would encrypt under wiped (all-zero) keys.
		panic("layercrypt: RelayCrypt used after Wipe")
	}
}

// Forward removes this relay's layer from a cell travelling away from the
// client and reports whether the cell is addressed to this relay
// (recognized). If so, body[16:] holds the plaintext relay message;
// body[0:16] is not part of the message. If not, the cell is forwarded to
// the next hop unchanged in size; if there is no next hop, the circuit must
// be destroyed.
//
// Every cell advances the chaining tag, and a recognized cell also replaces
// the keys and nonce, so a replayed, reordered or altered cell is noise to
// this relay and to every hop after it.
func (r *RelayCrypt) Forward(body *[CGOBodyLen]byte) (forUs bool) {
	r.check()
	return r.fwd.relayForward(cgoRelayAD, body)
}

// Backward adds this relay's layer to a cell travelling toward the client
// (from later hops).
func (r *RelayCrypt) Backward(body *[CGOBodyLen]byte) {
	r.check()
	r.bwd.relayBackward(cgoRelayAD, body)
}

// Originate encrypts a relay message this relay sends toward the client;
// body[16:] holds the plaintext, and body[0:16] is overwritten. The keys
// and nonce are replaced afterwards.
func (r *RelayCrypt) Originate(body *[CGOBodyLen]byte) {
	r.check()
	r.bwd.relayOriginate(cgoRelayAD, body)
}

// Wipe zeroes the hop's keys, AES round keys, POLYVAL powers, nonces and
// tags. (Without AES-NI the AES key schedules live inside crypto/aes, which
// cannot zero them; they are dropped.) Any later use panics. Wipe is
// idempotent.
func (r *RelayCrypt) Wipe() {
	r.fwd.wipe()
	r.bwd.wipe()
	r.wiped = true
}

// cgoHop is the client's state shared with one hop.
type cgoHop struct {
	fwd, bwd cgoDir
}

// ClientCrypt is the client's CGO state for a whole circuit: one layer per
// hop, hop 0 being the guard. The zero value is an empty circuit, ready for
// AddHop.
//
// Encrypt touches only forward states and Decrypt only backward ones, so
// one goroutine may send while another receives. Neither is safe for
// concurrent use with itself, and AddHop and Wipe must not race with
// anything.
type ClientCrypt struct {
	hops  []*cgoHop // each hop separately allocated: growing the slice never copies secrets
	wiped bool
}

// AddHop reads CGOKeyMaterialLen bytes of key material for the next hop
// from keys (that hop's ntor-v3 key stream) and appends the hop.
func (c *ClientCrypt) AddHop(keys io.Reader) error {
	if c.wiped {
		return ErrCryptWiped
	}
	if len(c.hops) >= CGOMaxHops {
		return fmt.Errorf("layercrypt: add hop %d: %w", len(c.hops), ErrTooManyHops)
	}
	h := new(cgoHop)
	if err := cgoReadHop(keys, &h.fwd, &h.bwd, true); err != nil {
		h.fwd.wipe()
		h.bwd.wipe()
		return fmt.Errorf("layercrypt: add hop %d: %w", len(c.hops), err)
	}
	c.hops = append(c.hops, h)
	return nil
}

// Hops returns the number of hops added.
func (c *ClientCrypt) Hops() int { return len(c.hops) }

// Encrypt originates a cell to hop (0-based: 0 = guard); body[16:] holds
// the plaintext message and body[0:16] is overwritten. On return the whole
// body is ready to send to the guard. The destination hop's keys and nonce
// are replaced, so encrypting the same message twice gives unrelated cells.
func (c *ClientCrypt) Encrypt(hop int, body *[CGOBodyLen]byte) error {
	if c.wiped {
		return ErrCryptWiped
	}
	if hop < 0 || hop >= len(c.hops) {
		return fmt.Errorf("layercrypt: encrypt for hop %d of %d: %w", hop, len(c.hops), ErrNoSuchHop)
	}
	c.hops[hop].fwd.clientOriginate(cgoRelayAD, body)
	for i := hop - 1; i >= 0; i-- {
		c.hops[i].fwd.clientForward(cgoRelayAD, body)
	}
	return nil
}

// Decrypt removes layers from a cell arriving from the circuit, hop 0
// first, and returns the hop (0-based) that originated it; body[16:] then
// holds its plaintext message. If no hop recognizes the cell it returns
// ErrUnrecognized, and the circuit must be destroyed: the backward states
// have advanced past a cell the relays never sent.
func (c *ClientCrypt) Decrypt(body *[CGOBodyLen]byte) (hop int, err error) {
	if c.wiped {
		return -1, ErrCryptWiped
	}
	if len(c.hops) == 0 {
		return -1, fmt.Errorf("layercrypt: decrypt on a circuit without hops: %w", ErrNoSuchHop)
	}
	for i, h := range c.hops {
		if h.bwd.clientBackward(cgoRelayAD, body) {
			return i, nil
		}
	}
	return -1, ErrUnrecognized
}

// Wipe zeroes every hop's keys, nonces and tags (see RelayCrypt.Wipe for
// the AES key schedules) and empties the circuit. Later calls fail with
// ErrCryptWiped. Wipe is idempotent.
func (c *ClientCrypt) Wipe() {
	for _, h := range c.hops {
		h.fwd.wipe()
		h.bwd.wipe()
	}
	clear(c.hops)
	c.hops = nil
	c.wiped = true
}
