//go:build amd64 && !purego

package layercrypt

import (
	"crypto/subtle"
	"encoding/binary"
	"math/bits"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	"golang.org/x/sys/cpu"
)

// X25519 in amd64 assembly (x25519_amd64.s): the field modulo
// p = 2^255 - 19 in four 64-bit limbs, multiplied with MULX and the two
// carry chains of ADCX/ADOX, and the whole Montgomery ladder in one
// assembly loop. It computes exactly what ntor3X25519Generic computes, in
// a little over half the time; the tests check the two against each other,
// against crypto/ecdh and against the RFC 7748 vectors.

// ntor3X25519HaveAsm reports whether this CPU can run the assembly, which
// needs BMI2 (MULX) and ADX (ADCX, ADOX).
var ntor3X25519HaveAsm = cpu.X86.HasBMI2 && cpu.X86.HasADX

// ntor3X25519UseAsm selects the assembly. Tests clear it to force the
// portable ladder on any machine.
var ntor3X25519UseAsm = ntor3X25519HaveAsm

// x25519Elem is a field element modulo p: four little-endian 64-bit limbs
// holding any value below 2^256 congruent to it (so not unique until
// x25519Freeze).
type x25519Elem [4]uint64

// x25519Ladder is the ladder's work area. x25519_amd64.s addresses its
// fields through the offsets the toolchain writes to go_asm.h.
type x25519Ladder struct {
	x1, x2, z2, x3, z3            x25519Elem
	a, b, c, d, aa, bb, e, da, cb x25519Elem // step temporaries
	k                             [4]uint64  // the clamped scalar, little-endian
	swap                          uint64     // the pending conditional swap
	mask                          uint64     // this step's swap mask: -(swap bit)
}

// x25519MulAsm sets *z = *x * *y. z may alias x or y.
//
//go:noescape
func x25519MulAsm(z, x, y *x25519Elem)

// x25519SqrNAsm squares *z n times in place: *z = *z^(2^n).
//
//go:noescape
func x25519SqrNAsm(z *x25519Elem, n int)

// x25519AddAsm, x25519SubAsm and x25519MulA24Asm expose the ladder's
// other field operations (assembly macros inside x25519LadderAsm) so that
// the tests can check them against math/big.

// x25519AddAsm sets *z = *x + *y. z may alias x or y.
//
//go:noescape
func x25519AddAsm(z, x, y *x25519Elem)

// x25519SubAsm sets *z = *x - *y. z may alias x or y.
//
//go:noescape
func x25519SubAsm(z, x, y *x25519Elem)

// x25519MulA24Asm sets *z = 121665 * *x. z may alias x.
//
//go:noescape
func x25519MulA24Asm(z, x *x25519Elem)

// x25519LadderAsm runs the ladder over l.k from l.x1, l.x2, l.z2, l.x3,
// l.z3, leaving the result in l.x2 and l.z2.
//
//go:noescape
func x25519LadderAsm(l *x25519Ladder)

// ntor3X25519 sets out = X25519(scalar, point), the Montgomery ladder of
// RFC 7748 section 5 in constant time. It reports false if out is all zero,
// which happens exactly when point is of low order.
func ntor3X25519(out, scalar, point *[32]byte) bool {
	if ntor3X25519UseAsm {
		return ntor3X25519Asm(out, scalar, point)
	}
	return ntor3X25519Generic(out, scalar, point)
}

// ntor3X25519Asm is ntor3X25519 on the assembly field and ladder.
func ntor3X25519Asm(out, scalar, point *[32]byte) bool {
	var l x25519Ladder
	x25519Load((*x25519Elem)(&l.k), scalar)
	l.k[0] &^= 7
	l.k[3] &^= 1 << 63
	l.k[3] |= 1 << 62

	// The top bit of u is ignored, as RFC 7748 requires; values from p to
	// 2^255 - 1 (non-canonical encodings) are fine as they are, since
	// elements need only be below 2^256.
	x25519Load(&l.x1, point)
	l.x1[3] &^= 1 << 63
	l.x2 = x25519Elem{1}
	l.x3 = l.x1
	l.z3 = x25519Elem{1}
	x25519LadderAsm(&l)

	// out = x2 / z2; z2 = 0 (a low-order point) gives 0 and so all zeros.
	var inv x25519Elem
	x25519Invert(&inv, &l.z2)
	x25519MulAsm(&l.x2, &l.x2, &inv)
	x25519Freeze(&l.x2)
	x25519Store(out, &l.x2)

	l = x25519Ladder{}
	inv = x25519Elem{}
	var zero [32]byte
	return subtle.ConstantTimeCompare(out[:], zero[:]) == 0
}

// ntor3BytesMontgomery sets out to the Montgomery u-coordinate of p,
// u = (Z + Y) / (Z - Y) from p's extended coordinates, as
// p.BytesMontgomery does, but inverting with the assembly, which is about
// 40% faster than the inversion of filippo.io/edwards25519/field.
func ntor3BytesMontgomery(out *[32]byte, p *edwards25519.Point) {
	if !ntor3X25519UseAsm {
		copy(out[:], p.BytesMontgomery())
		return
	}
	_, y, z, _ := p.ExtendedCoordinates()
	var n, d field.Element
	n.Add(z, y)
	d.Subtract(z, y)
	var en, ed x25519Elem
	x25519Load(&en, (*[32]byte)(n.Bytes()))
	x25519Load(&ed, (*[32]byte)(d.Bytes()))
	x25519Invert(&ed, &ed) // Z = Y (never for a clamped scalar) gives 0, as BytesMontgomery does
	x25519MulAsm(&en, &en, &ed)
	x25519Freeze(&en)
	x25519Store(out, &en)
	y.Zero()
	z.Zero()
	n.Zero()
	d.Zero()
	en, ed = x25519Elem{}, x25519Elem{}
}

// x25519Load sets *z to the little-endian 256-bit value in b.
func x25519Load(z *x25519Elem, b *[32]byte) {
	for i := range z {
		z[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
}

// x25519Store writes *z to b, little-endian.
func x25519Store(b *[32]byte, z *x25519Elem) {
	for i, w := range z {
		binary.LittleEndian.PutUint64(b[8*i:], w)
	}
}

// x25519Invert sets *z = *x^(p-2), which is 1 / *x for x != 0 and 0 for
// x = 0, with the addition chain of curve25519-donna: 254 squarings and
// 11 multiplications. z may alias x.
func x25519Invert(z, x *x25519Elem) {
	var t0, t1, t2, t3 x25519Elem
	t0 = *x
	x25519SqrNAsm(&t0, 1) // x^2
	t1 = t0
	x25519SqrNAsm(&t1, 2)       // x^8
	x25519MulAsm(&t1, x, &t1)   // x^9
	x25519MulAsm(&t0, &t0, &t1) // x^11
	t2 = t0
	x25519SqrNAsm(&t2, 1)       // x^22
	x25519MulAsm(&t1, &t1, &t2) // x^(2^5 - 1)
	t2 = t1
	x25519SqrNAsm(&t2, 5)       //
	x25519MulAsm(&t1, &t2, &t1) // x^(2^10 - 1)
	t2 = t1
	x25519SqrNAsm(&t2, 10)      //
	x25519MulAsm(&t2, &t2, &t1) // x^(2^20 - 1)
	t3 = t2
	x25519SqrNAsm(&t3, 20)      //
	x25519MulAsm(&t2, &t3, &t2) // x^(2^40 - 1)
	x25519SqrNAsm(&t2, 10)      //
	x25519MulAsm(&t1, &t2, &t1) // x^(2^50 - 1)
	t2 = t1
	x25519SqrNAsm(&t2, 50)      //
	x25519MulAsm(&t2, &t2, &t1) // x^(2^100 - 1)
	t3 = t2
	x25519SqrNAsm(&t3, 100)     //
	x25519MulAsm(&t2, &t3, &t2) // x^(2^200 - 1)
	x25519SqrNAsm(&t2, 50)      //
	x25519MulAsm(&t1, &t2, &t1) // x^(2^250 - 1)
	x25519SqrNAsm(&t1, 5)       // x^(2^255 - 2^5)
	x25519MulAsm(z, &t1, &t0)   // x^(2^255 - 21) = x^(p-2)
	t0, t1, t2, t3 = x25519Elem{}, x25519Elem{}, x25519Elem{}, x25519Elem{}
}

// x25519Freeze reduces *z, any value below 2^256, to its unique
// representative below p, in constant time.
func x25519Freeze(z *x25519Elem) {
	// Fold bit 255 as 19 (2^255 = 19 mod p): now z < 2^255 + 19 < 2p.
	top := z[3] >> 63
	z[3] &^= 1 << 63
	var c uint64
	z[0], c = bits.Add64(z[0], 19*top, 0)
	z[1], c = bits.Add64(z[1], 0, c)
	z[2], c = bits.Add64(z[2], 0, c)
	z[3], _ = bits.Add64(z[3], 0, c)

	// Subtract p if z >= p: compute z - p and keep it unless it borrowed.
	var t x25519Elem
	var b uint64
	t[0], b = bits.Sub64(z[0], 0xffffffffffffffed, 0)
	t[1], b = bits.Sub64(z[1], 0xffffffffffffffff, b)
	t[2], b = bits.Sub64(z[2], 0xffffffffffffffff, b)
	t[3], b = bits.Sub64(z[3], 0x7fffffffffffffff, b)
	keep := -b // all ones: z < p, keep z
	for i := range z {
		z[i] = z[i]&keep | t[i]&^keep
	}
	t = x25519Elem{}
}
