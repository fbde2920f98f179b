package layercrypt

// The ntor-v3 circuit handshake, exactly as Tor's proposal 332 specifies it
// (PROTOID "ntor3-curve25519-sha3_256-1"; the symmetric primitives are in
// kdf.go). The client sends one onionskin in CREATE2/EXTEND2 (HTYPE 3); the
// relay answers with one reply in CREATED2/EXTENDED2. Each side may carry an
// encrypted, authenticated message: the client's is encrypted to the relay's
// onion key (no forward secrecy), the relay's under the final keys.
//
// Onionskin, client to relay (NtorV3OnionskinOverhead + len(CM) bytes):
//
//	NODEID     32  the relay's identity, its Ed25519 public key (RelayID)
//	KEYID      32  the relay onion key B the client used (OnionPublicKey)
//	CLIENT_PK  32  the client's ephemeral X25519 key X
//	MSG        n   ENC(ENC_K1, CM)
//	MAC        32  MAC_msgmac(MAC_K1, NODEID | KEYID | CLIENT_PK | MSG)
//
// Reply, relay to client (NtorV3ReplyOverhead + len(SM) bytes):
//
//	Y          32  the relay's ephemeral X25519 key
//	AUTH       32  H_auth(verify | ID | B | Y | X | MAC | ENCAP(MSG) | PROTOID | "Server")
//	MSG        n   ENC(ENC_KEY, SM), to the end of the reply
//
// Keys, with x,X and y,Y the ephemeral key pairs and b,B the onion key:
//
//	secret_input_phase1 = Bx | ID | X | B | PROTOID | ENCAP(VER)
//	ENC_K1 | MAC_K1     = KDF_msgkdf(secret_input_phase1)        (32 + 32 bytes)
//	secret_input        = Xy | Xb | ID | B | X | Y | PROTOID | ENCAP(VER)
//	key_seed, verify    = H_key_seed(secret_input), H_verify(secret_input)
//	ENC_KEY | KEYSTREAM = KDF_final(key_seed)                    (32 bytes, then unbounded)
//
// KEYSTREAM is returned as a KeyStream; the circuit crypto reads its keys from it.
//
// Both sides reject a peer's X25519 key that yields the all-zero shared
// secret, compare MACs in constant time and wipe every intermediate secret.

import (
	"bytes"
	"crypto/sha3"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"sync"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Handshake identifiers.
const (
	// NtorV3HandshakeType is the HTYPE of ntor-v3 in CREATE2 and EXTEND2.
	NtorV3HandshakeType = 3
	// NtorV3Protoid is the PROTOID of proposal 332 section A.2.
	NtorV3Protoid = "ntor3-curve25519-sha3_256-1"
)

// Sizes of the handshake messages.
const (
	ntor3PubKeyLen = onionPublicKeyLen // PUB_KEY_LEN: X25519 public keys
	ntor3IDLen     = RelayIDLen        // ID_LEN: an Ed25519 identity

	// NtorV3OnionskinOverhead is the size of an onionskin without the client
	// message: NODEID, KEYID, CLIENT_PK and MAC.
	NtorV3OnionskinOverhead = ntor3IDLen + 2*ntor3PubKeyLen + ntor3MACLen // 128
	// NtorV3ReplyOverhead is the size of a reply without the relay message:
	// Y and AUTH.
	NtorV3ReplyOverhead = ntor3PubKeyLen + ntor3DigestLen // 64
)

// ErrHandshakeFailed is returned (wrapped, with the reason) for every
// handshake that the peer's data makes fail: a MAC or AUTH mismatch, an
// onionskin for another relay, an unknown KEYID, a low-order X25519 key, a
// message too short to parse.
var ErrHandshakeFailed = errors.New("layercrypt: ntor-v3 handshake failed")

var errNtor3ClientUsed = errors.New("layercrypt: ntor-v3 client state already finished or wiped")

// ntor3Fail wraps ErrHandshakeFailed with the side and the reason.
func ntor3Fail(side, format string, args ...any) error {
	return fmt.Errorf("ntor-v3 %s: %w: %s", side, ErrHandshakeFailed, fmt.Sprintf(format, args...))
}

// ntor3LowOrder is the error for a peer X25519 key of low order.
func ntor3LowOrder(side, what string) error {
	return fmt.Errorf("ntor-v3 %s: %s: %w: %w", side, what, ErrHandshakeFailed, ErrLowOrderPoint)
}

// KeyStream is the handshake's output key-derivation stream: the SHAKE-256
// output of KDF_final after its first ENC_KEY_LEN bytes (the spec's
// KEYSTREAM). Both sides read the same bytes in the same order. Only a
// handshake makes one; it is not safe for concurrent use.
type KeyStream struct {
	xof  sha3.SHAKE // the zero value is SHAKE-256
	live bool       // set by the handshake, cleared by Wipe
}

// Read fills p with the next len(p) bytes of the stream. It never fails.
// Reading a wiped (or zero-value) KeyStream is a programming error and
// panics, so that such a stream can never hand out predictable key material.
func (k *KeyStream) Read(p []byte) (int, error) {
	if !k.live {
		panic("layercrypt: read of a wiped or unset KeyStream")
	}
	return k.xof.Read(p)
}

// Wipe zeroes the stream's state. It is safe to call more than once and on nil.
func (k *KeyStream) Wipe() {
	if k == nil {
		return
	}
	k.xof.Reset()
	k.live = false
}

// NtorV3Client is the client's state between sending the onionskin and
// receiving the reply. It holds the ephemeral secret: call Finish or Wipe.
type NtorV3Client struct {
	id     RelayID
	onion  OnionPublicKey
	ver    []byte               // our copy of the verification string
	x      [OnionKeyLen]byte    // ephemeral secret x
	pubX   [ntor3PubKeyLen]byte // X
	bx     [32]byte             // EXP(B, x)
	msgMAC [ntor3MACLen]byte    // the MAC we sent, bound into AUTH
	used   bool
}

// NewNtorV3Client begins a handshake with the relay (id, onion).
// verification is the spec's "verification" string, which the relay must
// use too (chive passes []byte("chive-circuit-v1")); msg is the client's
// message (CM), sent encrypted to the onion key. It returns the client state
// and the onionskin to put in CREATE2/EXTEND2 HDATA.
//
// An onion key of low order is refused with ErrHandshakeFailed and
// ErrLowOrderPoint.
func NewNtorV3Client(rand io.Reader, id RelayID, onion OnionPublicKey, verification, msg []byte) (*NtorV3Client, []byte, error) {
	var x [OnionKeyLen]byte
	defer clear(x[:])
	if _, err := io.ReadFull(rand, x[:]); err != nil {
		return nil, nil, fmt.Errorf("ntor-v3 client: ephemeral key: %w", err)
	}
	return ntor3NewClient(&x, id, onion, verification, msg)
}

// ntor3NewClient is NewNtorV3Client with the ephemeral secret x given (the
// test vectors fix it). x is copied; the caller wipes its own copy.
func ntor3NewClient(x *[OnionKeyLen]byte, id RelayID, onion OnionPublicKey, verification, msg []byte) (*NtorV3Client, []byte, error) {
	c := &NtorV3Client{id: id, onion: onion, ver: bytes.Clone(verification), x: *x}
	ntor3X25519Base(&c.pubX, &c.x)
	if !ntor3X25519(&c.bx, &c.x, (*[32]byte)(&c.onion)) {
		c.Wipe()
		return nil, nil, ntor3LowOrder("client", "relay onion key")
	}

	var encK1 [ntor3EncKeyLen]byte
	var macK1 [ntor3MACKeyLen]byte
	defer clear(encK1[:])
	defer clear(macK1[:])
	ntor3Phase1Keys(&encK1, &macK1, &c.bx, &c.id, &c.onion, &c.pubX, c.ver)

	onionskin := make([]byte, NtorV3OnionskinOverhead+len(msg))
	off := copy(onionskin, c.id[:])
	off += copy(onionskin[off:], c.onion[:])
	off += copy(onionskin[off:], c.pubX[:])
	encMsg := onionskin[off : off+len(msg)]
	ntor3Crypt(&encK1, encMsg, msg)
	ntor3MsgMAC(&c.msgMAC, &macK1, &c.id, &c.onion, &c.pubX, encMsg)
	copy(onionskin[off+len(msg):], c.msgMAC[:])
	return c, onionskin, nil
}

// Finish checks the relay's reply and returns the relay's decrypted message
// (SM) and the key stream. Any reply that does not authenticate fails with
// ErrHandshakeFailed. Finish wipes c whatever the outcome; a second call is
// an error.
func (c *NtorV3Client) Finish(reply []byte) (serverMsg []byte, keys *KeyStream, err error) {
	if c == nil || c.used {
		return nil, nil, errNtor3ClientUsed
	}
	defer c.Wipe()
	if len(reply) < NtorV3ReplyOverhead {
		return nil, nil, ntor3Fail("client", "reply is %d bytes, shorter than the %d-byte minimum",
			len(reply), NtorV3ReplyOverhead)
	}
	var pubY [ntor3PubKeyLen]byte
	copy(pubY[:], reply[:ntor3PubKeyLen])
	auth := reply[ntor3PubKeyLen:NtorV3ReplyOverhead]
	encMsg := reply[NtorV3ReplyOverhead:]

	var yx, seed, verify, wantAuth [32]byte
	var encKey [ntor3EncKeyLen]byte
	defer func() {
		clear(yx[:])
		clear(seed[:])
		clear(verify[:])
		clear(encKey[:])
	}()
	if !ntor3X25519(&yx, &c.x, &pubY) {
		return nil, nil, ntor3LowOrder("client", "relay ephemeral key Y")
	}
	ntor3KeySeedVerify(&seed, &verify, &yx, &c.bx, &c.id, &c.onion, &c.pubX, &pubY, c.ver)
	ntor3Auth(&wantAuth, &verify, &c.id, &c.onion, &pubY, &c.pubX, &c.msgMAC, encMsg)
	if subtle.ConstantTimeCompare(wantAuth[:], auth) != 1 {
		return nil, nil, ntor3Fail("client", "AUTH mismatch")
	}

	keys = ntor3FinalKeys(&encKey, &seed)
	serverMsg = make([]byte, len(encMsg))
	ntor3Crypt(&encKey, serverMsg, encMsg)
	return serverMsg, keys, nil
}

// Wipe zeroes the client's secrets. It is safe to call more than once and
// on nil; Finish calls it.
func (c *NtorV3Client) Wipe() {
	if c == nil {
		return
	}
	clear(c.x[:])
	clear(c.bx[:])
	clear(c.msgMAC[:])
	clear(c.ver)
	c.used = true
}

// NtorV3Server runs the relay side of the handshake on a client's onionskin.
// id is the relay's identity; keys are its current and previous onion keys
// (nil entries are skipped), of which the one whose public key is the
// onionskin's KEYID is used. An onionskin for another relay ID, with an
// unknown KEYID, a low-order client key, a bad MAC or too short to parse fails
// with ErrHandshakeFailed, before respond is called.
//
// respond is called once, with the client's decrypted message, which it may
// keep; it returns the relay's message, sent encrypted in the reply. An error
// from respond aborts the handshake and is returned wrapped (it is not
// ErrHandshakeFailed unless respond made it so). A nil respond replies with an
// empty message.
//
// It returns the reply to put in CREATED2/EXTENDED2 HDATA and the key stream.
func NtorV3Server(rand io.Reader, id RelayID, keys []*OnionPrivateKey, verification, onionskin []byte,
	respond func(clientMsg []byte) ([]byte, error)) (reply []byte, ks *KeyStream, err error) {
	var y [OnionKeyLen]byte
	defer clear(y[:])
	if _, err := io.ReadFull(rand, y[:]); err != nil {
		return nil, nil, fmt.Errorf("ntor-v3 server: ephemeral key: %w", err)
	}
	return ntor3Server(&y, nil, id, keys, verification, onionskin, respond)
}

// NtorV3Ephemerals holds server ephemeral key pairs (y, Y = y·G) computed
// ahead of the handshakes that use them, so that a handshake does not wait
// for the fixed-base multiplication. Each pair is handed out once and wiped
// after its handshake. A pair waits in memory until it is used, so a relay
// keeps only a few (a memory compromise would reveal the keys of the next
// few handshakes, never of past ones). Safe for concurrent use.
type NtorV3Ephemerals struct {
	rand io.Reader
	max  int

	mu    sync.Mutex // guards pairs
	pairs []*ntor3Pair
}

type ntor3Pair struct{ y, pubY [32]byte }

func (p *ntor3Pair) wipe() {
	clear(p.y[:])
	clear(p.pubY[:])
}

// NewNtorV3Ephemerals returns an empty store of at most max pairs drawing
// secrets from rand. Fill it with Refill.
func NewNtorV3Ephemerals(rand io.Reader, max int) *NtorV3Ephemerals {
	return &NtorV3Ephemerals{rand: rand, max: max}
}

// Refill computes pairs until the store holds max or n have been added.
// Call it where the time does not count: after a handshake's reply has
// been sent.
func (e *NtorV3Ephemerals) Refill(n int) error {
	for range n {
		e.mu.Lock()
		full := len(e.pairs) >= e.max // max is 0 once wiped
		e.mu.Unlock()
		if full {
			return nil
		}
		p := new(ntor3Pair)
		if _, err := io.ReadFull(e.rand, p.y[:]); err != nil {
			return fmt.Errorf("ntor-v3 ephemerals: %w", err)
		}
		ntor3X25519Base(&p.pubY, &p.y)
		e.mu.Lock()
		if len(e.pairs) < e.max {
			e.pairs = append(e.pairs, p)
			p = nil
		}
		e.mu.Unlock()
		if p != nil {
			p.wipe()
		}
	}
	return nil
}

// Len returns how many pairs are ready.
func (e *NtorV3Ephemerals) Len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.pairs)
}

// take hands out one pair, or nil when none is ready.
func (e *NtorV3Ephemerals) take() *ntor3Pair {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := len(e.pairs)
	if n == 0 {
		return nil
	}
	p := e.pairs[n-1]
	e.pairs[n-1] = nil
	e.pairs = e.pairs[:n-1]
	return p
}

// Wipe destroys every pair held; the store takes no more after it.
func (e *NtorV3Ephemerals) Wipe() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.pairs {
		p.wipe()
	}
	e.pairs = nil
	e.max = 0
}

// NtorV3ServerWith is NtorV3Server taking its ephemeral key pair from e
// when one is ready (and making one from rand, as NtorV3Server does, when
// none is).
func NtorV3ServerWith(e *NtorV3Ephemerals, rand io.Reader, id RelayID, keys []*OnionPrivateKey, verification, onionskin []byte,
	respond func(clientMsg []byte) ([]byte, error)) (reply []byte, ks *KeyStream, err error) {
	p := e.take()
	if p == nil {
		return NtorV3Server(rand, id, keys, verification, onionskin, respond)
	}
	defer p.wipe()
	return ntor3Server(&p.y, &p.pubY, id, keys, verification, onionskin, respond)
}

// ntor3Server is NtorV3Server with the ephemeral secret y given (the test
// vectors fix it) and, if not nil, its public key Y = y·G. The caller wipes
// y.
func ntor3Server(y, givenY *[OnionKeyLen]byte, id RelayID, keys []*OnionPrivateKey, verification, onionskin []byte,
	respond func(clientMsg []byte) ([]byte, error)) ([]byte, *KeyStream, error) {
	if len(onionskin) < NtorV3OnionskinOverhead {
		return nil, nil, ntor3Fail("server", "onionskin is %d bytes, shorter than the %d-byte minimum",
			len(onionskin), NtorV3OnionskinOverhead)
	}
	// Parse. The fixed fields are copied, so that nothing respond does to
	// the caller's buffer can change what is authenticated.
	var (
		nodeID    RelayID
		keyID     OnionPublicKey
		pubX      [ntor3PubKeyLen]byte
		clientMAC [ntor3MACLen]byte
	)
	off := copy(nodeID[:], onionskin)
	off += copy(keyID[:], onionskin[off:])
	off += copy(pubX[:], onionskin[off:])
	macOff := len(onionskin) - ntor3MACLen
	encMsg := onionskin[off:macOff]
	copy(clientMAC[:], onionskin[macOff:])

	if !id.Equal(nodeID) {
		return nil, nil, ntor3Fail("server", "onionskin is for another relay ID")
	}
	var key *OnionPrivateKey
	for _, k := range keys {
		if k != nil && key == nil && k.public.Equal(keyID) {
			key = k
		}
	}
	if key == nil {
		return nil, nil, ntor3Fail("server", "unknown KEYID (not one of our onion keys)")
	}

	var xb, xy, seed, verify, wantMAC, auth [32]byte
	var encK1, encKey [ntor3EncKeyLen]byte
	var macK1 [ntor3MACKeyLen]byte
	var pubY [ntor3PubKeyLen]byte
	defer func() {
		clear(xb[:])
		clear(xy[:])
		clear(seed[:])
		clear(verify[:])
		clear(encK1[:])
		clear(encKey[:])
		clear(macK1[:])
	}()

	if !ntor3X25519(&xb, &key.secret, &pubX) {
		return nil, nil, ntor3LowOrder("server", "client ephemeral key X")
	}
	ntor3Phase1Keys(&encK1, &macK1, &xb, &id, &key.public, &pubX, verification)
	ntor3MsgMAC(&wantMAC, &macK1, &id, &key.public, &pubX, encMsg)
	if subtle.ConstantTimeCompare(wantMAC[:], clientMAC[:]) != 1 {
		return nil, nil, ntor3Fail("server", "client MAC mismatch")
	}
	clientMsg := make([]byte, len(encMsg))
	ntor3Crypt(&encK1, clientMsg, encMsg)

	var serverMsg []byte
	if respond != nil {
		var err error
		if serverMsg, err = respond(clientMsg); err != nil {
			return nil, nil, fmt.Errorf("ntor-v3 server: respond: %w", err)
		}
	}

	if givenY != nil {
		pubY = *givenY
	} else {
		ntor3X25519Base(&pubY, y)
	}
	if !ntor3X25519(&xy, y, &pubX) {
		// Unreachable once Xb passed (both scalars are clamped multiples
		// of the cofactor), but checked as the spec asks.
		return nil, nil, ntor3LowOrder("server", "client ephemeral key X")
	}
	ntor3KeySeedVerify(&seed, &verify, &xy, &xb, &id, &key.public, &pubX, &pubY, verification)
	ks := ntor3FinalKeys(&encKey, &seed)

	reply := make([]byte, NtorV3ReplyOverhead+len(serverMsg))
	copy(reply, pubY[:])
	encReply := reply[NtorV3ReplyOverhead:]
	ntor3Crypt(&encKey, encReply, serverMsg)
	ntor3Auth(&auth, &verify, &id, &key.public, &pubY, &pubX, &clientMAC, encReply)
	copy(reply[ntor3PubKeyLen:], auth[:])
	return reply, ks, nil
}

// ntor3Phase1Keys derives (ENC_K1, MAC_K1) = KDF_msgkdf(secret_input_phase1)
// with secret_input_phase1 = Bx | ID | X | B | PROTOID | ENCAP(VER).
func ntor3Phase1Keys(encK1 *[ntor3EncKeyLen]byte, macK1 *[ntor3MACKeyLen]byte,
	bx *[32]byte, id *RelayID, b *OnionPublicKey, x *[ntor3PubKeyLen]byte, ver []byte) {
	var kdf sha3.SHAKE
	kdf.Write(ntor3TweakMsgKDF)
	kdf.Write(bx[:])
	kdf.Write(id[:])
	kdf.Write(x[:])
	kdf.Write(b[:])
	kdf.Write(ntor3Protoid)
	p := ntor3EncapPrefix(len(ver))
	kdf.Write(p[:])
	kdf.Write(ver)
	kdf.Read(encK1[:])
	kdf.Read(macK1[:])
	kdf.Reset()
}

// ntor3MsgMAC computes msg_mac = MAC_msgmac(MAC_K1, ID | B | X | encrypted_msg).
func ntor3MsgMAC(out *[ntor3MACLen]byte, macK1 *[ntor3MACKeyLen]byte,
	id *RelayID, b *OnionPublicKey, x *[ntor3PubKeyLen]byte, encMsg []byte) {
	var h ntor3Hash
	h.init(ntor3TweakMsgMAC)
	h.writeEncap(macK1[:])
	h.write(id[:])
	h.write(b[:])
	h.write(x[:])
	h.write(encMsg)
	h.sum(out)
}

// ntor3KeySeedVerify computes key_seed = H_key_seed(secret_input) and
// verify = H_verify(secret_input), with
// secret_input = Xy | Xb | ID | B | X | Y | PROTOID | ENCAP(VER).
func ntor3KeySeedVerify(seed, verify *[ntor3DigestLen]byte, xy, xb *[32]byte,
	id *RelayID, b *OnionPublicKey, x, y *[ntor3PubKeyLen]byte, ver []byte) {
	var hs, hv ntor3Hash
	hs.init(ntor3TweakKeySeed)
	hv.init(ntor3TweakVerify)
	for _, h := range [...]*ntor3Hash{&hs, &hv} {
		h.write(xy[:])
		h.write(xb[:])
		h.write(id[:])
		h.write(b[:])
		h.write(x[:])
		h.write(y[:])
		h.write(ntor3Protoid)
		h.writeEncap(ver)
	}
	hs.sum(seed)
	hv.sum(verify)
}

// ntor3FinalKeys starts KDF_final(key_seed), takes ENC_KEY from its first
// bytes and returns the rest as the KeyStream.
func ntor3FinalKeys(encKey *[ntor3EncKeyLen]byte, seed *[ntor3DigestLen]byte) *KeyStream {
	ks := &KeyStream{live: true}
	ks.xof.Write(ntor3TweakFinal)
	ks.xof.Write(seed[:])
	ks.xof.Read(encKey[:])
	return ks
}

// ntor3Auth computes
// AUTH = H_auth(verify | ID | B | Y | X | MAC | ENCAP(encrypted_msg) | PROTOID | "Server").
func ntor3Auth(out, verify *[ntor3DigestLen]byte, id *RelayID, b *OnionPublicKey,
	y, x *[ntor3PubKeyLen]byte, msgMAC *[ntor3MACLen]byte, encMsg []byte) {
	var h ntor3Hash
	h.init(ntor3TweakAuth)
	h.write(verify[:])
	h.write(id[:])
	h.write(b[:])
	h.write(y[:])
	h.write(x[:])
	h.write(msgMAC[:])
	h.writeEncap(encMsg)
	h.write(ntor3Protoid)
	h.write(ntor3ServerLiteral)
	h.sum(out)
}

// X25519, for the handshake's own use. crypto/ecdh (and x/crypto/curve25519,
// which wraps it) recomputes the public key on every private-key construction
// and keeps copies of the secret that cannot be wiped; the handshake does
// three scalar multiplications per side and must wipe its ephemeral secrets,
// so it computes X25519 here over the field and group arithmetic of
// filippo.io/edwards25519 (the upstream of Go's own implementation). On
// amd64 CPUs with BMI2 and ADX the variable-base ladder runs in assembly
// instead (x25519_amd64.s), about 1.8x as fast; the portable ladder below
// is the fallback and the tests' reference alongside crypto/ecdh.

// ntor3A24 is (486662 - 2) / 4, the ladder constant of RFC 7748 section 5.
const ntor3A24 = 121665

// ntor3X25519Generic is ntor3X25519 in portable Go: the Montgomery ladder
// of RFC 7748 section 5 in constant time, reporting false if out is all
// zero. ntor3X25519 (x25519_amd64.go, x25519_noasm.go) runs it where the
// amd64 assembly is not available or is switched off.
func ntor3X25519Generic(out, scalar, point *[32]byte) bool {
	var k [32]byte
	copy(k[:], scalar[:])
	k[0] &= 248
	k[31] &= 127
	k[31] |= 64

	// SetBytes ignores the top bit of u, as RFC 7748 requires, and accepts
	// non-canonical values.
	var x1, x2, z2, x3, z3 field.Element
	var a, aa, b, bb, e, c, d, da, cb field.Element
	x1.SetBytes(point[:])
	x2.One()
	z2.Zero()
	x3.Set(&x1)
	z3.One()
	swap := 0
	for t := 254; t >= 0; t-- {
		bit := int(k[t>>3]>>uint(t&7)) & 1
		swap ^= bit
		x2.Swap(&x3, swap)
		z2.Swap(&z3, swap)
		swap = bit

		a.Add(&x2, &z2)
		aa.Square(&a)
		b.Subtract(&x2, &z2)
		bb.Square(&b)
		e.Subtract(&aa, &bb)
		c.Add(&x3, &z3)
		d.Subtract(&x3, &z3)
		da.Multiply(&d, &a)
		cb.Multiply(&c, &b)
		x3.Add(&da, &cb)
		x3.Square(&x3)
		z3.Subtract(&da, &cb)
		z3.Square(&z3)
		z3.Multiply(&x1, &z3)
		x2.Multiply(&aa, &bb)
		z2.Mult32(&e, ntor3A24)
		z2.Add(&aa, &z2)
		z2.Multiply(&e, &z2)
	}
	x2.Swap(&x3, swap)
	z2.Swap(&z3, swap)
	z2.Invert(&z2) // 0 stays 0, giving the all-zero output for low-order points
	x2.Multiply(&x2, &z2)
	copy(out[:], x2.Bytes())

	clear(k[:])
	for _, v := range [...]*field.Element{&x1, &x2, &z2, &x3, &z3, &a, &aa, &b, &bb, &e, &c, &d, &da, &cb} {
		v.Zero()
	}
	var zero [32]byte
	return subtle.ConstantTimeCompare(out[:], zero[:]) == 0
}

// ntor3X25519Base sets out = X25519(scalar, 9), the public key of scalar,
// through the fixed-base tables of edwards25519: the clamped scalar times
// the Ed25519 base point, mapped to its Montgomery u-coordinate. (The
// Edwards base point maps to u = 9, and reducing the scalar modulo the group
// order does not change a multiple of the base point.)
func ntor3X25519Base(out, scalar *[32]byte) {
	var s edwards25519.Scalar
	if _, err := s.SetBytesWithClamping(scalar[:]); err != nil {
		panic("layercrypt: X25519 scalar: " + err.Error()) // unreachable: 32 bytes
	}
	var p edwards25519.Point
	p.ScalarBaseMult(&s)
	ntor3BytesMontgomery(out, &p)
	s = edwards25519.Scalar{}
	p = edwards25519.Point{}
}
