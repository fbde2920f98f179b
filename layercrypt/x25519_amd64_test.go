//go:build amd64 && !purego

package layercrypt

import (
	"math/big"
	"math/rand/v2"
	"testing"
)

var (
	x25519P      = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	x25519Two256 = new(big.Int).Lsh(big.NewInt(1), 256)
)

func x25519ElemBig(z *x25519Elem) *big.Int {
	v := new(big.Int)
	for i := 3; i >= 0; i-- {
		v.Lsh(v, 64)
		v.Or(v, new(big.Int).SetUint64(z[i]))
	}
	return v
}

func x25519BigElem(v *big.Int) x25519Elem {
	var z x25519Elem
	w := new(big.Int).Set(v)
	mask := new(big.Int).SetUint64(^uint64(0))
	for i := range z {
		z[i] = new(big.Int).And(w, mask).Uint64()
		w.Rsh(w, 64)
	}
	return z
}

// x25519FieldEdges are field-element representations at the edges: small
// values, values around p, 2p and 2^255, values just below 2^256 (which
// the lazy representation allows), all-ones limbs and single full limbs.
func x25519FieldEdges() []x25519Elem {
	var out []x25519Elem
	big2 := func(e uint) *big.Int { return new(big.Int).Lsh(big.NewInt(1), e) }
	for _, base := range []*big.Int{
		big.NewInt(0), x25519P, new(big.Int).Lsh(x25519P, 1), big2(255), x25519Two256, big2(128), big2(64),
	} {
		for _, d := range []int64{-39, -38, -37, -20, -19, -18, -2, -1, 0, 1, 2, 18, 19, 20, 37, 38, 39} {
			v := new(big.Int).Add(base, big.NewInt(d))
			if v.Sign() < 0 || v.Cmp(x25519Two256) >= 0 {
				continue
			}
			out = append(out, x25519BigElem(v))
		}
	}
	const ones = ^uint64(0)
	for m := 1; m < 16; m++ {
		var z, h x25519Elem
		for i := range z {
			if m>>i&1 == 1 {
				z[i] = ones
				h[i] = 1 << 63
			}
		}
		out = append(out, z, h)
	}
	return out
}

// x25519CheckOp checks that got (any value below 2^256) is congruent to
// want modulo p.
func x25519CheckOp(t *testing.T, op string, got *x25519Elem, want *big.Int, args ...x25519Elem) {
	t.Helper()
	g := x25519ElemBig(got)
	if new(big.Int).Mod(g, x25519P).Cmp(new(big.Int).Mod(want, x25519P)) != 0 {
		t.Fatalf("%s of %v: got %x, want %x mod p", op, args, g, new(big.Int).Mod(want, x25519P))
	}
}

// TestX25519FieldOps checks every assembly field operation against
// math/big on all pairs of edge values and on random values, chaining the
// lazy (not fully reduced) outputs back in as inputs.
func TestX25519FieldOps(t *testing.T) {
	if !ntor3X25519HaveAsm {
		t.Skip("no BMI2/ADX on this CPU")
	}
	vals := x25519FieldEdges()
	rng := rand.New(rand.NewPCG(255, 19))
	for i := 0; i < 100; i++ {
		vals = append(vals, x25519Elem{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()})
	}
	for i := range vals {
		x := vals[i]
		bx := x25519ElemBig(&x)

		var z x25519Elem
		x25519MulA24Asm(&z, &x)
		x25519CheckOp(t, "121665*x", &z, new(big.Int).Mul(bx, big.NewInt(121665)), x)

		for _, n := range []int{0, 1, 2, 5} {
			z = x
			x25519SqrNAsm(&z, n)
			e := new(big.Int).Lsh(big.NewInt(1), uint(n))
			x25519CheckOp(t, "x^(2^n)", &z, new(big.Int).Exp(bx, e, x25519P), x)
		}

		z = x
		x25519Invert(&z, &z)
		want := new(big.Int).Exp(bx, new(big.Int).Sub(x25519P, big.NewInt(2)), x25519P)
		x25519CheckOp(t, "x^(p-2)", &z, want, x)

		z = x
		x25519Freeze(&z)
		if g := x25519ElemBig(&z); g.Cmp(new(big.Int).Mod(bx, x25519P)) != 0 {
			t.Fatalf("freeze %x = %x, want %x", x, g, new(big.Int).Mod(bx, x25519P))
		}

		for j := range vals {
			y := vals[j]
			by := x25519ElemBig(&y)
			x25519MulAsm(&z, &x, &y)
			x25519CheckOp(t, "x*y", &z, new(big.Int).Mul(bx, by), x, y)
			x25519MulAsm(&z, &z, &y) // aliasing, and a lazy input
			x25519CheckOp(t, "x*y*y", &z, new(big.Int).Mul(new(big.Int).Mul(bx, by), by), x, y)
			x25519AddAsm(&z, &x, &y)
			x25519CheckOp(t, "x+y", &z, new(big.Int).Add(bx, by), x, y)
			x25519SubAsm(&z, &x, &y)
			x25519CheckOp(t, "x-y", &z, new(big.Int).Sub(bx, by), x, y)
			x25519SubAsm(&z, &z, &x)
			x25519CheckOp(t, "x-y-x", &z, new(big.Int).Neg(by), x, y)
		}
		// Squaring agrees with multiplication by itself.
		var m x25519Elem
		x25519MulAsm(&m, &x, &x)
		x25519CheckOp(t, "x*x", &m, new(big.Int).Mul(bx, bx), x)
		x25519Freeze(&m)
		z = x
		x25519SqrNAsm(&z, 1)
		x25519Freeze(&z)
		if z != m {
			t.Fatalf("x^2 of %x: squaring %x, multiplication %x", x, z, m)
		}
	}
}

// TestX25519FreezeCanonical checks that the output encoding is canonical
// (below p) around every value congruent to 0, 1 and -1 that fits in 256
// bits.
func TestX25519FreezeCanonical(t *testing.T) {
	if !ntor3X25519HaveAsm {
		t.Skip("no BMI2/ADX on this CPU")
	}
	for k := int64(0); k <= 3; k++ {
		for d := int64(-2); d <= 2; d++ {
			v := new(big.Int).Add(new(big.Int).Mul(x25519P, big.NewInt(k)), big.NewInt(d))
			if v.Sign() < 0 || v.Cmp(x25519Two256) >= 0 {
				continue
			}
			z := x25519BigElem(v)
			x25519Freeze(&z)
			want := new(big.Int).Mod(v, x25519P)
			if g := x25519ElemBig(&z); g.Cmp(want) != 0 {
				t.Fatalf("freeze %x = %x, want %x", v, g, want)
			}
		}
	}
}
