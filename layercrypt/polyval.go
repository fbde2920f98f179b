package layercrypt

// POLYVAL is the universal hash of RFC 8452 (AES-GCM-SIV), section 3. CGO
// uses it keyed, inside its tweakable block cipher ET and its PRF.
//
// Field elements are 16-byte strings read little-endian: bit i of byte j is
// the coefficient of x^(8j+i). The field is GF(2)[x] / P with
// P = x^128 + x^127 + x^126 + x^121 + 1, and POLYVAL multiplies with
// dot(a, b) = a * b * x^-128 mod P. For a key H and blocks X_1..X_s:
//
//	S_0 = 0, S_j = dot(S_{j-1} xor X_j, H), POLYVAL(H, X_1..X_s) = S_s.
//
// Two implementations compute the same function and are cross-checked by the
// tests: an amd64 assembly one with PCLMULQDQ that folds eight blocks per
// reduction (polyval_amd64.s), and a portable constant-time one in pure Go
// (polyval_generic.go). Neither branches on or indexes memory by secret data.

import (
	"encoding/binary"
)

// POLYVAL sizes.
const (
	PolyvalKeyLen   = 16 // the hash key H
	PolyvalBlockLen = 16 // input is processed in blocks of this size
	PolyvalSumLen   = 16 // the output S
)

// polyvalAggBlocks is how many blocks the assembly folds into one reduction;
// a key keeps that many powers of H.
const polyvalAggBlocks = 8

// polyvalElem is a field element: lo holds the coefficients of x^0..x^63,
// hi those of x^64..x^127. In memory on a little-endian machine it has the
// same 16 bytes as the RFC 8452 encoding, which the assembly relies on.
type polyvalElem struct {
	lo, hi uint64
}

func polyvalLoad(b []byte) polyvalElem {
	_ = b[15]
	return polyvalElem{lo: binary.LittleEndian.Uint64(b[0:8]), hi: binary.LittleEndian.Uint64(b[8:16])}
}

func polyvalStore(b []byte, e polyvalElem) {
	_ = b[15]
	binary.LittleEndian.PutUint64(b[0:8], e.lo)
	binary.LittleEndian.PutUint64(b[8:16], e.hi)
}

// Polyval is a keyed POLYVAL instance with its running sum. The zero value is
// keyed with H = 0 (which hashes everything to 0); call Init first. A Polyval
// holds no pointers and needs no allocation: embed it by value. It is not safe
// for concurrent use.
type Polyval struct {
	// pow[i] is H^(i+1) in the dot sense: pow[0] = H,
	// pow[i] = dot(pow[i-1], H). S after n blocks equals
	// sum_j dot(X_j, pow[n-j]), which lets the assembly multiply eight
	// blocks by independent powers and reduce once.
	pow [polyvalAggBlocks]polyvalElem
	acc polyvalElem
}

// Init keys p with H = key and clears the running sum.
func (p *Polyval) Init(key *[PolyvalKeyLen]byte) {
	p.pow[0] = polyvalLoad(key[:])
	polyvalPowers(p)
	p.acc = polyvalElem{}
}

// Reset clears the running sum and keeps the key.
func (p *Polyval) Reset() { p.acc = polyvalElem{} }

// Update absorbs whole blocks. It panics if len(blocks) is not a multiple of
// PolyvalBlockLen: POLYVAL itself is defined only on whole blocks; use
// UpdatePadded for the zero-padding convention CGO uses.
func (p *Polyval) Update(blocks []byte) {
	if len(blocks)%PolyvalBlockLen != 0 {
		panic("layercrypt: POLYVAL input is not a whole number of blocks")
	}
	if len(blocks) > 0 {
		polyvalBlocks(p, blocks)
	}
}

// UpdatePadded absorbs data, zero-padding a trailing partial block to a
// whole block.
func (p *Polyval) UpdatePadded(data []byte) {
	full := len(data) &^ (PolyvalBlockLen - 1)
	if full > 0 {
		polyvalBlocks(p, data[:full])
	}
	if rest := data[full:]; len(rest) > 0 {
		var last [PolyvalBlockLen]byte
		copy(last[:], rest)
		polyvalBlocks(p, last[:])
		clear(last[:])
	}
}

// Sum writes the current POLYVAL value S into out. It does not change the
// state: more blocks may follow.
func (p *Polyval) Sum(out *[PolyvalSumLen]byte) { polyvalStore(out[:], p.acc) }

// Wipe zeroes the key powers and the running sum.
func (p *Polyval) Wipe() {
	clear(p.pow[:])
	p.acc = polyvalElem{}
}
