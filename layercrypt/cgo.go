package layercrypt

// Counter Galois Onion (CGO) relay-cell encryption, Tor proposal 359, as
// implemented by C tor (src/core/crypto/relay_crypto_cgo.c) and arti
// (tor-proto crypto/cell/cgo.rs) with AES-128, the instance Tor uses.
//
// The names follow the proposal (which follows the paper by Degabriele,
// Melloni, Münch and Stam): ET is an LRW2 tweakable block cipher, PRF a
// POLYVAL-keyed AES-CTR stream, UIV+ the wide-block cipher built from them,
// and each direction of each hop keeps a state (K, N, T'):
//
//	K  = (J, S): the ET key J = (KB, KU) and the PRF key S = (K, B), 64 bytes
//	N  = the nonce a cell's tag must decrypt to for the cell to be recognized
//	T' = the tag of the previous cell seen in this direction (chains cells)
//
// A relay cell body is CGOBodyLen bytes: the 16-byte tag T first, then the
// 493-byte relay message C. Relays only ever *encrypt* with UIV+ and clients
// only ever *decrypt*: UIV+ encryption is non-malleable, so a cell altered
// anywhere on its way out is turned into noise that no relay recognizes.
//
// This file holds the primitives; cgo_crypt.go builds the per-hop relay
// state and the client's circuit state from them.

import "encoding/binary"

// Cell-body layout under CGO.
const (
	// CGOBodyLen is the size of a relay cell body.
	CGOBodyLen = 509
	// CGOTagLen is the size of the tag that starts the body: body[0:16].
	CGOTagLen = 16
	// CGOMessageLen is the size of the relay message after the tag:
	// body[16:509].
	CGOMessageLen = CGOBodyLen - CGOTagLen
)

// Key sizes (AES-128, as Tor uses for CGO).
const (
	cgoAESKeyLen = 16
	cgoBlockLen  = 16
	cgoETKeyLen  = cgoAESKeyLen + PolyvalKeyLen // J = KB || KU
	cgoPRFKeyLen = cgoAESKeyLen + PolyvalKeyLen // S = K || B
	cgoUIVKeyLen = cgoETKeyLen + cgoPRFKeyLen   // J || S
	cgoNonceLen  = CGOTagLen
	// cgoDirKeyLen is one direction's initial key material: J || S || N.
	cgoDirKeyLen = cgoUIVKeyLen + cgoNonceLen
	// cgoUpdateLen is what UPDATE_UIV draws from the PRF: J' || S' || N'.
	cgoUpdateLen = cgoUIVKeyLen + cgoNonceLen
)

// The PRF's counter layout. The IV has its low six bits cleared, so the
// counter can step through 64 blocks by changing only those bits; t = 0
// uses blocks 0..30 (493 bytes), t = 1 starts at block 31. Key stream is
// made in whole batches of cgoCTRBatch blocks, so a little more is made
// than is used.
const (
	cgoPRFT0Blocks  = (CGOMessageLen + cgoBlockLen - 1) / cgoBlockLen // 31
	cgoPRFT0Batches = (cgoPRFT0Blocks + cgoCTRBatch - 1) / cgoCTRBatch
	cgoPRFT1Offset  = 31
	cgoPRFT1Blocks  = (cgoUpdateLen + cgoBlockLen - 1) / cgoBlockLen // 5
	cgoPRFT1Batches = (cgoPRFT1Blocks + cgoCTRBatch - 1) / cgoCTRBatch
)

// Compile-time checks of the counter bounds: no counter, including the
// extra blocks of a batch, can leave its six free bits, so no carry ever
// reaches the rest of the IV. This is the only counter in CGO; keys and
// nonces are replaced by fresh PRF output after every originated or
// recognized cell rather than counted.
var (
	_ [64 - cgoPRFT0Batches*cgoCTRBatch]struct{}
	_ [64 - (cgoPRFT1Offset + cgoPRFT1Batches*cgoCTRBatch)]struct{}
	_ [cgoPRFT1Offset - cgoPRFT0Blocks]struct{}
)

// cgoET is ET, an LRW2 tweakable block cipher on one 16-byte block:
//
//	ENC_ET((KB,KU), T, M) = UH(KU,T) ^ AES(KB, M ^ UH(KU,T))
//
// with UH = POLYVAL and the tweak T = H || AD || X_R, where H is the
// previous tag T', AD the one-byte cell command and X_R the 493-byte relay
// message. T is hashed as the blocks H, AD || X_R[0:15] and X_R[15:493]
// zero-padded to whole blocks.
type cgoET struct {
	kb cgoAES
	ku Polyval
	// tweak is where the portable POLYVAL lays out the tweak as 32
	// whole blocks; the assembly reads it from the cell body in place.
	tweak [polyvalCGOTweakLen]byte
}

// init keys ET. Relays only encrypt with ET and clients only decrypt;
// withDecrypt prepares decryption.
func (e *cgoET) init(key *[cgoETKeyLen]byte, withDecrypt bool) {
	e.kb.init((*[cgoAESKeyLen]byte)(key[:cgoAESKeyLen]), withDecrypt)
	e.ku.Init((*[PolyvalKeyLen]byte)(key[cgoAESKeyLen:]))
}

// mask computes UH(KU, h || ad || X_R) with X_R = body[16:509].
func (e *cgoET) mask(out *[cgoBlockLen]byte, h *[CGOTagLen]byte, ad byte, body *[CGOBodyLen]byte) {
	polyvalCGOTweak(&e.ku, out, h, ad, body, &e.tweak)
}

// encrypt encrypts the block body[0:16] with the tweak h || ad ||
// body[16:509].
func (e *cgoET) encrypt(h *[CGOTagLen]byte, ad byte, body *[CGOBodyLen]byte) {
	block := (*[cgoBlockLen]byte)(body[:cgoBlockLen])
	var m [cgoBlockLen]byte
	e.mask(&m, h, ad, body)
	cgoXorBlock(block, &m)
	e.kb.encryptBlock(block)
	cgoXorBlock(block, &m)
	clear(m[:])
}

// decrypt decrypts the block body[0:16] with the tweak h || ad ||
// body[16:509].
func (e *cgoET) decrypt(h *[CGOTagLen]byte, ad byte, body *[CGOBodyLen]byte) {
	block := (*[cgoBlockLen]byte)(body[:cgoBlockLen])
	var m [cgoBlockLen]byte
	e.mask(&m, h, ad, body)
	cgoXorBlock(block, &m)
	e.kb.decryptBlock(block)
	cgoXorBlock(block, &m)
	clear(m[:])
}

func (e *cgoET) wipe() {
	e.kb.wipe()
	e.ku.Wipe()
	clear(e.tweak[:])
}

// cgoPRF is the tweakable PRF
//
//	PRF((K,B), T, t) = CTR(AES_K, IV = (UH(B, T) with its low 6 bits
//	                   cleared) + 31*t)
//
// with T one 16-byte block and t in {0, 1}. Counter blocks are big-endian,
// but since only the low six bits of the last IV byte ever change, block i
// is the IV with i added to its last byte.
type cgoPRF struct {
	k cgoAES
	b Polyval
}

func (p *cgoPRF) init(key *[cgoPRFKeyLen]byte) {
	p.k.init((*[cgoAESKeyLen]byte)(key[:cgoAESKeyLen]), false)
	p.b.Init((*[PolyvalKeyLen]byte)(key[cgoAESKeyLen:]))
}

// xorStream XORs PRF(S, tweak, t) into data, with the counter starting at
// block offset = 31*t.
func (p *cgoPRF) xorStream(tweak *[cgoBlockLen]byte, offset byte, data []byte) {
	// UH(B, T) for a one-block T is the single product dot(T, B).
	var iv [cgoBlockLen]byte
	polyvalStore(iv[:], polyvalMul(polyvalLoad(tweak[:]), p.b.pow[0]))
	iv[cgoBlockLen-1] &= 0xc0
	iv[cgoBlockLen-1] += offset
	p.k.xorKeyStream(&iv, data)
	clear(iv[:])
}

// xorT0 XORs the first 493 bytes of PRF(S, tweak, 0) into data.
func (p *cgoPRF) xorT0(tweak *[cgoBlockLen]byte, data *[CGOMessageLen]byte) {
	p.xorStream(tweak, 0, data[:])
}

// genT1 sets out to the first len(out) <= 80 bytes of PRF(S, tweak, 1).
func (p *cgoPRF) genT1(tweak *[cgoBlockLen]byte, out []byte) {
	if len(out) > cgoPRFT1Blocks*cgoBlockLen {
		panic("layercrypt: CGO PRF t=1 output too long")
	}
	clear(out)
	p.xorStream(tweak, cgoPRFT1Offset, out)
}

func (p *cgoPRF) wipe() {
	p.k.wipe()
	p.b.Wipe()
}

// cgoUIV is UIV+, the tweakable wide-block cipher on a whole cell body
// (X_L = the 16-byte tag, X_R = the 493-byte message) with the tweak
// (H, AD):
//
//	ENC_UIV((J,S), H, (X_L,X_R)):  Y_L = ENC_ET(J, H||AD||X_R, X_L)
//	                               Y_R = X_R ^ PRF(S, Y_L, 0)
//	DEC_UIV((J,S), H, (Y_L,Y_R)):  X_R = Y_R ^ PRF(S, Y_L, 0)
//	                               X_L = DEC_ET(J, H||AD||X_R, Y_L)
//	UPDATE_UIV((J,S), N):          (J', S', N') = PRF(S, N, 1)[0:80]
type cgoUIV struct {
	// keys is the current J || S. The running ciphers are derived from it;
	// it is kept so that state can be compared with the published
	// vectors.
	keys [cgoUIVKeyLen]byte
	j    cgoET
	s    cgoPRF
	// client is set for a client's UIV, which decrypts; a relay's
	// encrypts. It decides which AES key schedule ET needs.
	client bool
}

func (u *cgoUIV) init(keys *[cgoUIVKeyLen]byte, client bool) {
	u.keys = *keys
	u.client = client
	// ET's and the PRF's keys are set up together, which lets the
	// assembly overlap the two independent computations: this is
	// CGO's per-cell cost on every originated or recognized cell.
	kb := (*[cgoAESKeyLen]byte)(u.keys[0:16])
	ku := (*[PolyvalKeyLen]byte)(u.keys[16:32])
	k := (*[cgoAESKeyLen]byte)(u.keys[32:48])
	b := (*[PolyvalKeyLen]byte)(u.keys[48:64])
	cgoAESInitPair(&u.j.kb, &u.s.k, kb, k, client)
	polyvalInitPair(&u.j.ku, &u.s.b, ku, b)
}

// cgoXorBlock sets *dst ^= *src.
func cgoXorBlock(dst, src *[cgoBlockLen]byte) {
	binary.LittleEndian.PutUint64(dst[0:8], binary.LittleEndian.Uint64(dst[0:8])^binary.LittleEndian.Uint64(src[0:8]))
	binary.LittleEndian.PutUint64(dst[8:16], binary.LittleEndian.Uint64(dst[8:16])^binary.LittleEndian.Uint64(src[8:16]))
}

// cgoTagEqual reports whether two tags are equal, in constant time: it
// reads and combines all 16 bytes of both before the one comparison whose
// result (recognized or not) the caller acts on.
func cgoTagEqual(a, b *[CGOTagLen]byte) bool {
	d := (binary.LittleEndian.Uint64(a[0:8]) ^ binary.LittleEndian.Uint64(b[0:8])) |
		(binary.LittleEndian.Uint64(a[8:16]) ^ binary.LittleEndian.Uint64(b[8:16]))
	return d == 0
}

func cgoSplit(body *[CGOBodyLen]byte) (*[CGOTagLen]byte, *[CGOMessageLen]byte) {
	return (*[CGOTagLen]byte)(body[:CGOTagLen]), (*[CGOMessageLen]byte)(body[CGOTagLen:])
}

func (u *cgoUIV) encrypt(h *[CGOTagLen]byte, ad byte, body *[CGOBodyLen]byte) {
	left, right := cgoSplit(body)
	u.j.encrypt(h, ad, body)
	u.s.xorT0(left, right)
}

func (u *cgoUIV) decrypt(h *[CGOTagLen]byte, ad byte, body *[CGOBodyLen]byte) {
	left, right := cgoSplit(body)
	u.s.xorT0(left, right)
	u.j.decrypt(h, ad, body)
}

// update replaces J and S with fresh PRF output keyed by the old S and
// tweaked by *nonce, and replaces *nonce too. The old keys cannot be
// recovered from the new ones: this is CGO's per-cell forward secrecy.
func (u *cgoUIV) update(nonce *[cgoNonceLen]byte) {
	var fresh [cgoUpdateLen]byte
	u.s.genT1(nonce, fresh[:])
	u.init((*[cgoUIVKeyLen]byte)(fresh[:cgoUIVKeyLen]), u.client)
	copy(nonce[:], fresh[cgoUIVKeyLen:])
	clear(fresh[:])
}

func (u *cgoUIV) wipe() {
	clear(u.keys[:])
	u.j.wipe()
	u.s.wipe()
}

// cgoDir is one direction of one hop's CGO state, (K, N, T'), at the client
// or at the relay. The six operations below are the proposal's; relays use
// the relay* ones, clients the client* ones. ad is the cell command byte.
type cgoDir struct {
	uiv    cgoUIV
	nonce  [cgoNonceLen]byte
	tprime [CGOTagLen]byte
}

// init sets K and N from 80 bytes of key material (J || S || N); T' starts
// as zero. client selects the client's side of the direction.
func (d *cgoDir) init(material *[cgoDirKeyLen]byte, client bool) {
	d.uiv.init((*[cgoUIVKeyLen]byte)(material[:cgoUIVKeyLen]), client)
	copy(d.nonce[:], material[cgoUIVKeyLen:])
	clear(d.tprime[:])
}

// relayForward processes a cell travelling away from the client and
// reports whether this hop is its destination (its tag decrypted to N).
// T' always advances; K and N advance only when the cell is recognized.
func (d *cgoDir) relayForward(ad byte, body *[CGOBodyLen]byte) bool {
	d.uiv.encrypt(&d.tprime, ad, body)
	copy(d.tprime[:], body[:CGOTagLen])
	if !cgoTagEqual(&d.tprime, &d.nonce) {
		return false
	}
	d.uiv.update(&d.nonce)
	return true
}

// relayBackward adds this hop's layer to a cell travelling toward the
// client.
func (d *cgoDir) relayBackward(ad byte, body *[CGOBodyLen]byte) {
	d.uiv.encrypt(&d.tprime, ad, body)
	copy(d.tprime[:], body[:CGOTagLen])
}

// relayOriginate encrypts a message that this hop sends toward the client:
// the tag slot is set to N, the body encrypted, and the resulting tag
// becomes both T' and the tweak for the key update.
func (d *cgoDir) relayOriginate(ad byte, body *[CGOBodyLen]byte) {
	copy(body[:CGOTagLen], d.nonce[:])
	d.uiv.encrypt(&d.tprime, ad, body)
	copy(d.tprime[:], body[:CGOTagLen])
	copy(d.nonce[:], body[:CGOTagLen])
	d.uiv.update(&d.nonce)
}

// clientForward adds the client's layer for a hop that the cell passes
// through (the hop will remove it with relayForward).
func (d *cgoDir) clientForward(ad byte, body *[CGOBodyLen]byte) {
	var next [CGOTagLen]byte
	copy(next[:], body[:CGOTagLen])
	d.uiv.decrypt(&d.tprime, ad, body)
	d.tprime = next
}

// clientOriginate prepares a cell for the hop this state is shared with:
// the tag slot is set to N, which is what the hop's relayForward will find.
func (d *cgoDir) clientOriginate(ad byte, body *[CGOBodyLen]byte) {
	copy(body[:CGOTagLen], d.nonce[:])
	d.clientForward(ad, body)
	d.uiv.update(&d.nonce)
}

// clientBackward removes one hop's layer from a cell arriving at the client
// and reports whether that hop originated it. T' always advances; K and N
// advance only when the cell is recognized.
func (d *cgoDir) clientBackward(ad byte, body *[CGOBodyLen]byte) bool {
	var orig [CGOTagLen]byte
	copy(orig[:], body[:CGOTagLen])
	d.uiv.decrypt(&d.tprime, ad, body)
	d.tprime = orig
	if !cgoTagEqual((*[CGOTagLen]byte)(body[:CGOTagLen]), &d.nonce) {
		return false
	}
	d.nonce = orig
	d.uiv.update(&d.nonce)
	return true
}

func (d *cgoDir) wipe() {
	d.uiv.wipe()
	clear(d.nonce[:])
	clear(d.tprime[:])
}
