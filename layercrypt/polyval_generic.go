package layercrypt

// Portable constant-time POLYVAL. It is the fallback on CPUs without
// PCLMULQDQ and the reference the assembly is checked against.
//
// Carry-less 64x64-bit products come from ordinary integer multiplication of
// "holey" operands (the technique of BearSSL's ghash_ctmul64): each operand
// is split into four parts that keep every fourth bit, so partial sums in an
// integer product cannot carry into a bit that is kept. Integer multiply is
// constant time on the CPUs Go supports, and nothing here branches on or
// indexes by data.

import "math/bits"

const (
	polyvalM0 = 0x1111111111111111
	polyvalM1 = 0x2222222222222222
	polyvalM2 = 0x4444444444444444
	polyvalM3 = 0x8888888888888888
)

// polyvalBmul64 returns the low 64 bits of the carry-less product x*y.
//
// Within one integer product of two holey parts, a kept output bit k
// collects k/4+1 <= 16 one-bit terms. Up to 15 fit in the 4 bits from k to
// the next kept bit; 16 terms occur only at k = 60, whose carry leaves the
// 64-bit word. So every kept bit is the exact parity of its terms.
func polyvalBmul64(x, y uint64) uint64 {
	x0, x1, x2, x3 := x&polyvalM0, x&polyvalM1, x&polyvalM2, x&polyvalM3
	y0, y1, y2, y3 := y&polyvalM0, y&polyvalM1, y&polyvalM2, y&polyvalM3
	z0 := (x0 * y0) ^ (x1 * y3) ^ (x2 * y2) ^ (x3 * y1)
	z1 := (x0 * y1) ^ (x1 * y0) ^ (x2 * y3) ^ (x3 * y2)
	z2 := (x0 * y2) ^ (x1 * y1) ^ (x2 * y0) ^ (x3 * y3)
	z3 := (x0 * y3) ^ (x1 * y2) ^ (x2 * y1) ^ (x3 * y0)
	return (z0 & polyvalM0) | (z1 & polyvalM1) | (z2 & polyvalM2) | (z3 & polyvalM3)
}

// polyvalClmul64 returns the 127-bit carry-less product x*y as (lo, hi).
// xr and yr are bits.Reverse64 of x and y. The high half comes from the
// product of the reversed operands: reversing a 64-bit product of degree
// <= 126 maps its coefficient k to 126-k, so the low word of rev(x)*rev(y)
// holds coefficients 126..63 of x*y in reverse order.
func polyvalClmul64(x, y, xr, yr uint64) (lo, hi uint64) {
	lo = polyvalBmul64(x, y)
	hi = bits.Reverse64(polyvalBmul64(xr, yr)) >> 1
	return lo, hi
}

// polyvalClmul128 returns the 255-bit carry-less product a*b as four words,
// lowest degree first, with one level of Karatsuba.
func polyvalClmul128(a, b polyvalElem) (z0, z1, z2, z3 uint64) {
	a0, a1, b0, b1 := a.lo, a.hi, b.lo, b.hi
	a0r, a1r := bits.Reverse64(a0), bits.Reverse64(a1)
	b0r, b1r := bits.Reverse64(b0), bits.Reverse64(b1)

	l0, l1 := polyvalClmul64(a0, b0, a0r, b0r)
	h0, h1 := polyvalClmul64(a1, b1, a1r, b1r)
	m0, m1 := polyvalClmul64(a0^a1, b0^b1, a0r^a1r, b0r^b1r)
	m0 ^= l0 ^ h0
	m1 ^= l1 ^ h1
	return l0, l1 ^ m0, h0 ^ m1, h1
}

// polyvalReduce returns z * x^-128 mod P for the 256-bit z = (z0..z3).
//
// This is Montgomery reduction by P, whose low coefficient is 1: adding
// z0*P clears word 0, then adding z1'*P*x^64 clears word 1, and the result
// is what is left in words 2 and 3. Multiplying a word w by
// P - 1 - x^128 = x^121 + x^126 + x^127 shifts it left by 57, 62 and 63
// within the next word and right by 7, 2 and 1 into the one after.
func polyvalReduce(z0, z1, z2, z3 uint64) polyvalElem {
	z1 ^= z0<<63 ^ z0<<62 ^ z0<<57
	z2 ^= z0 ^ z0>>1 ^ z0>>2 ^ z0>>7
	z2 ^= z1<<63 ^ z1<<62 ^ z1<<57
	z3 ^= z1 ^ z1>>1 ^ z1>>2 ^ z1>>7
	return polyvalElem{lo: z2, hi: z3}
}

// polyvalMulGeneric returns dot(a, b) = a * b * x^-128 mod P.
func polyvalMulGeneric(a, b polyvalElem) polyvalElem {
	return polyvalReduce(polyvalClmul128(a, b))
}

// polyvalPowersGeneric sets p.pow[i] = H^(i+1) from p.pow[0] = H.
func polyvalPowersGeneric(p *Polyval) {
	for i := 1; i < polyvalAggBlocks; i++ {
		p.pow[i] = polyvalMulGeneric(p.pow[i-1], p.pow[0])
	}
}

// polyvalCGOTweakLen is CGO's ET tweak, H (16) || AD (1) || X_R (493),
// zero-padded to whole POLYVAL blocks.
const polyvalCGOTweakLen = (PolyvalBlockLen + 1 + CGOBodyLen - CGOTagLen + PolyvalBlockLen - 1) /
	PolyvalBlockLen * PolyvalBlockLen

// polyvalCGOTweakGeneric is polyvalCGOTweak in portable code: it copies the
// tweak into scratch and hashes it from a zero sum.
func polyvalCGOTweakGeneric(p *Polyval, out *[PolyvalSumLen]byte, h *[PolyvalBlockLen]byte, ad byte,
	body *[CGOBodyLen]byte, scratch *[polyvalCGOTweakLen]byte) {
	copy(scratch[:PolyvalBlockLen], h[:])
	scratch[PolyvalBlockLen] = ad
	n := copy(scratch[PolyvalBlockLen+1:], body[CGOTagLen:])
	clear(scratch[PolyvalBlockLen+1+n:])
	q := Polyval{pow: [polyvalAggBlocks]polyvalElem{p.pow[0]}}
	polyvalBlocksGeneric(&q, scratch[:])
	q.Sum(out)
	q.Wipe()
}

// polyvalBlocksGeneric absorbs whole blocks one at a time (Horner's rule).
func polyvalBlocksGeneric(p *Polyval, blocks []byte) {
	h := p.pow[0]
	acc := p.acc
	for len(blocks) >= PolyvalBlockLen {
		x := polyvalLoad(blocks)
		acc.lo ^= x.lo
		acc.hi ^= x.hi
		acc = polyvalMulGeneric(acc, h)
		blocks = blocks[PolyvalBlockLen:]
	}
	p.acc = acc
}
